"""One line and exit status 2 for every refusal of the reference's training-side commands.

The commands raise ``SystemExit("message")`` (tests call their ``main`` and match the
message); run as programs, ``cli`` turns that, and the expected input errors, into
``PROG: error: message`` on stderr and status 2, with no traceback.
"""
from __future__ import annotations

import sys
from typing import Callable


def cli(prog: str, main: Callable[[], int | None]) -> int:
    from .checkpoint import CheckpointError

    try:
        return main() or 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(f"{prog}: error: {e.code}", file=sys.stderr)
            return 2
        raise
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
