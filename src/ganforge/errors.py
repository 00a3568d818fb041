"""Errors a user can act on. Stages turn these into one clear message and an exit code, never a traceback."""

from __future__ import annotations


class GanforgeError(Exception):
    """A failure with a message meant for the user. exit_code follows the CLI convention: 2 = bad input."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(GanforgeError):
    """Invalid params or arguments: nothing was done."""

    exit_code = 2
