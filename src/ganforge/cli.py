"""What every stage entrypoint shares: turning library errors into one clear line and an exit code.

Kept free of typer so the library stays importable without the CLI; stages wrap their body in
`with user_errors():`.
"""

from __future__ import annotations

import contextlib
import sys

from ganforge.errors import GanforgeError


@contextlib.contextmanager
def user_errors():
    """Print GanforgeError as `error: ...` on stderr and exit with its code; Ctrl-C exits 130 quietly."""
    try:
        yield
    except GanforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted: outputs left as they were (checkpoints, if any, are kept)", file=sys.stderr)
        raise SystemExit(130) from None
