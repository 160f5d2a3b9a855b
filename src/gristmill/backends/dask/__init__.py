"""The Dask backend: attempts under the worker wrapper on a ``dask.distributed`` cluster."""
