"""Errors a user can cause: the CLI prints their message as one line and exits with `exit_code`."""


class UserError(Exception):
    """Bad input (a file, a folder, an argument); the message names it and what was expected."""

    exit_code = 1


class ConfigError(UserError):
    """A params file that does not match the schema; the message names the key path."""

    exit_code = 2
