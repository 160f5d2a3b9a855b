"""Where attempts run: the protocol (:mod:`.base`), the registry, and one package per backend.

:mod:`.batch` holds what the batch schedulers (Slurm, Grid Engine) share; a backend
package never imports another backend.
"""
