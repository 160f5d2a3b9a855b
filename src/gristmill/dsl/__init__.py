"""What a user writes: ``@gm.task``, ``@gm.workflow``, and the lazy calls that record a DAG.

Nothing here runs a task or touches a run directory; :mod:`gristmill.engine` does.
"""
