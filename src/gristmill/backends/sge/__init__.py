"""The Grid Engine backend: ``qsub -t`` arrays, one ``qstat -xml`` per poll."""
