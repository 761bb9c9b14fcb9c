"""Plain-stderr progress bars (no tqdm needed).

On a terminal one line per stage is redrawn in place; when stderr is a file or a pipe
only the start and the end of each stage are written, so logs stay readable.
"""
from __future__ import annotations

import sys
import threading
import time

from ldmind_ref.core.contract import STAGE_DENOISE

from .console import pause_point


class Progress:
    def __init__(self, stream=None, width: int = 30, quiet: bool = False, header: str | None = None):
        self.stream = stream or sys.stderr
        # printed when work starts, not before: a request refused up front prints its one
        # error line and nothing else
        self.header = header
        self.width = width
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._stage = None
        self._t0 = 0.0
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, stage: str, done: int, total: int) -> None:
        pause_point("progress")
        if self.quiet:
            return
        with self._lock:
            if self.header:
                self._write(self.header + "\n")
                self.header = None
            now = time.perf_counter()
            if stage != self._stage:
                self._stage, self._t0, self._last = stage, now, 0.0
                if not self.tty:
                    self._write(f"{stage}: {total} {'steps' if stage == STAGE_DENOISE else 'tiles'}\n")
            finished = done >= total
            if self.tty and (finished or now - self._last > 0.1):
                self._last = now
                filled = int(self.width * done / max(total, 1))
                bar = "#" * filled + "." * (self.width - filled)
                self._write(f"\r{stage:<22} [{bar}] {done}/{total} {now - self._t0:6.1f} s"
                            + ("\n" if finished else ""))
            elif finished and not self.tty:
                self._write(f"{stage}: done in {now - self._t0:.1f} s\n")

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # stderr closed or full: progress is informative, the job goes on silently
            self.quiet = True
