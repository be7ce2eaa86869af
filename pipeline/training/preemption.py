"""Stopping a training within one step: what a cluster's warning signal, Ctrl-C or `kill` asks for.

Inside `StopSignals()`, SIGTERM, SIGINT and SIGUSR1 (SLURM's warning before a time limit, with
`--signal=USR1@...`) only record the request: the training loop finishes the step it is in, writes
a checkpoint from which the run resumes exactly, closes its MLflow run KILLED with its energy and
exits with 128 + the signal's number. A second signal exits at once, as an impatient user or the
scheduler means it (the run is then closed by the next execution, see `tracking.close_lost`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopSignals:
    """Records the first stop signal; `requested` is its number (0 while none came)."""

    def __init__(self):
        self.requested = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # only the main thread gets signals
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> bool:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    def _on_signal(self, signum, frame) -> None:
        if self.requested:
            print(f"train: {signal.Signals(signum).name} again: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.requested = signum
        print(f"train: {signal.Signals(signum).name}: stopping after this step (send it again to exit now)",
              file=sys.stderr, flush=True)
