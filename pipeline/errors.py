"""Errors a user can cause: the CLI prints their message as one line and exits with `exit_code`;
and `Terminated`, a stage stopped by a signal."""
import signal


class UserError(Exception):
    """Bad input (a file, a folder, an argument); the message names it and what was expected."""

    exit_code = 1


class ConfigError(UserError):
    """A params file that does not match the schema; the message names the key path."""

    exit_code = 2


class Terminated(SystemExit):
    """A stage stopped by a signal (`pipeline.tracking.run`'s SIGTERM handler, a training's stop
    after its current step): exits with 128 + the signal number if uncaught."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + int(signum))
        self.signum = int(signum)
