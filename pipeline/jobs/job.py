"""What one job runs: a run's training and evaluation, then `dvc commit` of both stages.

Each step is a `sepcost` command in a child process, in the study folder the job shares with the
submitter, so a job is exactly what `dvc repro train@<run> evaluate@<run>` would run, and DVC
records it afterwards (`dvc --wait-for-lock commit`: jobs that end together take turns for
dvc.lock, none fails for finding it busy). A job that reaches its time limit or is preempted gets
submitit's signal: the running command is stopped with SIGTERM (the training closes its MLflow run
KILLED with its energy; last.pt holds its last epoch) and the job is requeued with the same
steps; the training resumes from last.pt, a finished step is not run again. Imports submitit and
`pipeline.names`.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field

import submitit

from pipeline.names import run_key, stage_name


class JobFailed(RuntimeError):
    """A step of a job exited non-zero; the message is the step and its last error line."""


@dataclass
class RunJob(submitit.helpers.Checkpointable):
    """Train and evaluate one (variant, seed) of the study in `folder`, then record both stages."""

    folder: str
    params: str
    variant: str
    seed: int
    done: list[str] = field(default_factory=list)  # steps finished, kept across a requeue

    @property
    def run(self) -> str:
        return run_key(self.variant, self.seed)

    def steps(self) -> dict[str, list[str]]:
        """Each step's command line, by name."""
        sepcost = [sys.executable, "-m", "pipeline.cli"]
        which = ["--params", self.params, "--variant", self.variant, "--seed", str(self.seed)]
        return {
            "train": [*sepcost, "train", *which],
            "evaluate": [*sepcost, "evaluate", *which],
            "dvc commit": [sys.executable, "-m", "dvc", "--wait-for-lock", "commit", "--force", "--quiet",
                           stage_name("train", self.run), stage_name("evaluate", self.run)],
        }

    def __call__(self) -> str:
        for name, argv in self.steps().items():
            if name in self.done:
                continue
            self._child = subprocess.Popen(argv, cwd=self.folder, stderr=subprocess.PIPE, text=True)
            last = "no message"
            for line in self._child.stderr:  # copied into the job's log as it comes
                sys.stderr.write(line)
                last = line.strip() or last
            if self._child.wait() != 0:
                raise JobFailed(f"{self.run}: {name} exited {self._child.returncode}: {last}")
            self.done.append(name)
        return self.run

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on its timeout or preemption signal: stop the running step cleanly
        and requeue this job, which skips the steps already done."""
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=300)
            except subprocess.TimeoutExpired:
                child.kill()
        return submitit.helpers.DelayedSubmission(RunJob(self.folder, self.params, self.variant, self.seed,
                                                         list(self.done)))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_child"}  # a process does not pickle
