"""The jobmon backend: the DAG as jobmon tasks, run by jobmon's distributor."""
