"""What runs beside each attempt: the wrapper, its result file, the monitor, ``/proc``.

Modules here import only the standard library and each other, so a wrapper starts fast
and no backend, engine or store code is loaded in a job.
"""
