"""What Slurm and Grid Engine share: array packing and manifests, the array-element runner,
the abstract batch backend and the retrying scheduler-command runner."""
