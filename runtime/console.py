"""The process around a command of ``python -m runtime``: its name in messages, what it
prints, and SIGTERM as an exception (shared by ``cli.py`` and ``commands.py``)."""
from __future__ import annotations

import errno
import os
import sys
import time

PROG = "python -m runtime"


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally``/cleanup runs."""


def on_sigterm(signum, frame):
    raise Terminated()


# A test hook, unset in normal use: LDMIND_PAUSE_AT="POINT:FLAG" makes the process, on
# reaching POINT, create the file FLAG and wait there while FLAG exists, so that a test signals
# or kills it at a point it controls, whatever the CPU's speed.  POINTs: "file-done" (a folder
# run, after each file), "progress" (each progress report of a pipeline), "write" (an output
# half written, in its temporary).
PAUSE_ENV = "LDMIND_PAUSE_AT"


def pause_point(point: str) -> None:
    """Wait here if ``PAUSE_ENV`` names ``point`` (see above); return at once otherwise."""
    name, _, flag = os.environ.get(PAUSE_ENV, "").partition(":")
    if name != point or not flag:
        return
    with open(flag, "a"):
        pass
    while os.path.exists(flag):
        time.sleep(0.02)


def one_line(text: str) -> str:
    """``text`` with each character that is not printable (a newline, a tab, an escape, an
    undecodable byte of a file name) written as Python writes it in a string literal: \\n,
    \\x1b, \\udcff.  Every line that names a file goes through here, so a name cannot split
    an error (or a folder run's ``failed:`` line, or the list of outputs) in two."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
