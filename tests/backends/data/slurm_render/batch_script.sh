#!/bin/bash
# gristmill array: each element runs one attempt from the manifest
exec '/opt/py 3/bin/python' -m gristmill.backends.batch.element '/runs/my run/logs/fit/array-x.1.json' "${SLURM_ARRAY_TASK_ID}"
