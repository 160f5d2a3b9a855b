"""The Slurm backend: ``sbatch`` arrays, one ``sacct`` per poll."""
