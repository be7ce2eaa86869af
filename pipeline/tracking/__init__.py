"""MLflow tracking: one experiment per study, one run per execution of a stage, failed ones included.

`store` decides where runs go (URI, artifacts, experiment), `provenance` what a run records about
its origin, `run` the life cycle of a run (params, epochs, final metrics, energy, status), and
`metered` the run with its energy meter that every stage runs inside. Reading
the store back for the whole-study ledger is the report's (`pipeline.report.ledger`). Imports the
config schema, `pipeline.names`, `pipeline.paths` and the energy package's hardware detection.
"""
from pipeline.tracking.metered import metered
from pipeline.tracking.run import TrackedRun, close_lost, log_to, run
from pipeline.tracking.store import configure, resolved

__all__ = ["TrackedRun", "close_lost", "configure", "log_to", "metered", "resolved", "run"]
