"""What every stage entrypoint shares: one clear line and an exit code instead of a traceback, and signals.

Kept free of typer so the library stays importable without the CLI; stages wrap their body in
`with user_errors():`.

Signals: schedulers, spot instances, CI cancellation, `timeout` and `docker stop` send SIGTERM; people press
Ctrl-C (SIGINT). Both end a stage the same way: a KeyboardInterrupt, one line on stderr, exit 128 + signal
(130 for SIGINT, 143 for SIGTERM). Training asks for more (`graceful_stop`): the loop finishes its step and
checkpoints it first.
"""

from __future__ import annotations

import contextlib
import signal
import sys

from ganforge.errors import GanforgeError


class Interrupted(KeyboardInterrupt):
    """A stage was stopped by a signal; `signum` decides the exit code."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def user_errors():
    """Print GanforgeError as `error: ...` on stderr and exit with its code; SIGINT/SIGTERM exit 130/143
    with one line (outputs are written atomically, so nothing half-written is left)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)  # default SIGTERM would skip all cleanup
    try:
        yield
    except GanforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(str(e) or f"interrupted ({signal.Signals(signum).name}): outputs left as they were "
              "(checkpoints, if any, are kept)", file=sys.stderr)
        raise SystemExit(128 + signum) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class GracefulStop:
    """While active, the first SIGINT or SIGTERM only records itself (`requested` names it), so the training
    loop can finish its step and write a checkpoint; a second one raises Interrupted at once (the atomic
    checkpoint write then leaves the previous checkpoint in place)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise Interrupted(signum, f"second {signal.Signals(signum).name}: stopped at once; the last "
                                      "checkpoint written is kept")
        self.signum = signum

    def __enter__(self) -> GracefulStop:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
