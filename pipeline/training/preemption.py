"""Stopping a training within one step: what a cluster's warning signal, Ctrl-C or `kill` asks for.

Inside `StopSignals()`, SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 only record the request: the training
loop finishes the step it is in, writes a checkpoint from which the run resumes exactly, closes
its MLflow run KILLED with its energy and exits with 128 + the first signal's number. A scheduler
signals a job more than once for one stop: SLURM sends `--signal`'s warning (submitit asks for
USR2) or, on preemption, SIGTERM to every process of the job, and the job's own process (submitit,
torchrun's agent) forwards one more; so repeated signals only repeat the request, and the
training checkpoints once (a scheduler that loses patience sends SIGKILL). A second SIGINT, a
user's second Ctrl-C, exits at once (the run is then closed by the next execution, see
`tracking.close_lost`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
# How long torchrun's agent, stopped by one of them, waits for its ranks to end (the rest of a
# step, the checkpoint write, the run's close) before it kills them; torch's default is 30 s, less
# than a paper-size checkpoint may take. A scheduler's own kill comes first where it is sooner.
TORCHRUN_SHUTDOWN_S = 600


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
        if self.requested and signum == signal.SIGINT:
            print("train: SIGINT again: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        if self.requested:
            print(f"train: {signal.Signals(signum).name}: already stopping after this step", file=sys.stderr, flush=True)
            return
        self.requested = signum
        print(f"train: {signal.Signals(signum).name}: stopping after this step (a second Ctrl-C exits now)",
              file=sys.stderr, flush=True)
