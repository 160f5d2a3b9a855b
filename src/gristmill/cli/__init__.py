"""The ``gristmill`` command: the click group (:mod:`.main`) and one module per command family."""
