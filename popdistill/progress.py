"""Progress of long steps: a tqdm bar with rate and ETA on a terminal, and a line every few
seconds (with the same counts) when the output is a file or a pipe (logs, CI, ``ray job``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress"]


class Progress:
    """``Progress(total, label, unit)``; ``update(n, **postfix)``, ``close()``.

    On a terminal (``sys.stderr`` is a TTY) a tqdm bar; elsewhere ``log`` gets a line at most
    every ``every`` seconds: ``<label>: 3/20 videos, frames 144 (0.6 videos/s, about 28 s left)``."""

    def __init__(self, total: int, label: str, unit: str = "it",
                 log: Callable[[str], None] = print, every: float = 5.0,
                 tty: bool | None = None):
        self.total, self.label, self.unit, self.log, self.every = total, label, unit, log, every
        self.done = 0
        self.postfix: dict[str, Any] = {}
        self.t0 = self.last = time.perf_counter()
        tty = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=f" {unit}", leave=False,
                            dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.done += n
        self.postfix.update(postfix)
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(self.postfix, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            rate = self.done / max(now - self.t0, 1e-9)
            self.log(f"{self.label}: {self.done}/{self.total} {self.unit}{extra} "
                     f"({rate:.1f} {self.unit}/s, about {(self.total - self.done) / max(rate, 1e-9):.0f} s left)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
