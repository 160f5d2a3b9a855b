"""Console scripts declared at build time: a hatchling metadata hook and its source scanner.

``scan`` reads a package's tasks from its source with ``ast`` (pure, no
hatchling); ``hooks`` is the hatchling plugin that turns them into
``[project.scripts]``. Only ``hooks`` imports hatchling, and nothing in the
runtime imports ``hooks``: hatchling finds it through the ``hatch`` entry-point
group.
"""
