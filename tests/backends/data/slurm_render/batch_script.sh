#!/bin/bash
# gristmill array: each element runs one attempt from the manifest
exec '/opt/py 3/bin/python' -I -c 'import sys, types; sys.path.append('"'"'{GRISTMILL_PARENT}'"'"'); pkg = types.ModuleType('"'"'gristmill'"'"'); pkg.__path__ = ['"'"'{GRISTMILL_PARENT}/gristmill'"'"']; sys.modules['"'"'gristmill'"'"'] = pkg; from gristmill.backends.batch.element import main; sys.exit(main())' '/runs/my run/logs/fit/array-x.1.json' "${SLURM_ARRAY_TASK_ID}"
