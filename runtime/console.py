"""The process around a command of ``python -m runtime``: its name in messages, what it
prints, and SIGTERM as an exception (shared by ``cli.py`` and ``commands.py``)."""
from __future__ import annotations

import errno
import os
import sys

PROG = "python -m runtime"


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally``/cleanup runs."""


def on_sigterm(signum, frame):
    raise Terminated()


def say(text: str, stream=None) -> None:
    """Print to stdout (or ``stream``); a reader that went away (BrokenPipe) or a full device
    (ENOSPC) is ignored: this output is informative, the work is done.  The stream is then
    pointed at /dev/null so that Python's final flush does not fail either."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except OSError as e:
        if not isinstance(e, BrokenPipeError) and e.errno not in (errno.ENOSPC, errno.EPIPE, errno.EIO):
            raise
        _silence(stream)


def _silence(stream) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
