"""The study's trainings as jobs on a scheduler, through submitit: `job` is what a job runs (one
run's training and evaluation, then its DVC record), `executors` makes submitit's executor for
this machine (local, debug) or a cluster (SLURM, OAR) and the scripts a dry run prints.
`pipeline.stages.launch` submits and watches them. Imports submitit, the config schema and
`pipeline.errors`.
"""
