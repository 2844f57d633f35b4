"""A progress display for long CLI steps (dlq replay, backfills): one line redrawn in place on
a terminal, a line per 10% otherwise (CI logs), always on stderr so stdout stays parseable.
No dependency: this is all the CLI needs, and it must work in a bare CI log.

Example::

    with Progress("replaying dead letters", total=len(letters)) as progress:
        for letter in letters:
            send(letter)
            progress.advance()
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class Progress:
    def __init__(self, what: str, total: int | None = None, *, out: TextIO | None = None) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self._out = out or sys.stderr
        self._tty = self._out.isatty()
        self._started = time.monotonic()
        self._shown_step = -1
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._draw(final=True)

    def advance(self, count: int = 1, *, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.done += count
        self._draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        if self.total:
            return f"{self.what}: {self.done}/{self.total} ({100 * self.done // self.total}%, {elapsed:.1f}s)"
        return f"{self.what}: {self.done} ({elapsed:.1f}s)"

    def _draw(self, final: bool = False) -> None:
        now = time.monotonic()
        if self._tty:
            if final or now - self._last_draw >= 0.1:
                self._out.write("\r" + self.line() + ("\n" if final else ""))
                self._out.flush()
                self._last_draw = now
            return
        step = 10 * self.done // self.total if self.total else self.done // 1000
        if final or step > self._shown_step:
            self._shown_step = step
            self._out.write(self.line() + "\n")
            self._out.flush()
