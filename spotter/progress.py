"""Progress of long steps: a tqdm bar on a terminal, one log line at the start and end otherwise.

Every long step of the library (training epochs, the neighbourhood build, unlearning epochs, the
evaluation, each audit check) reports through `task`, so a CPU run that takes minutes is never
silent, and logs and CI output stay one line per step. Imports nothing from spotter (any layer
may use it) and tqdm only when a terminal shows the bar.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("spotter")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def bar(total: int, desc: str) -> Any:
    """A tqdm bar of `total` steps on a terminal (closed by the caller), else None."""
    if not on_terminal():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


class Task:
    """What `task` yields: advance it with `update(n)`; a no-op without a terminal."""

    def __init__(self, shown: Any) -> None:
        self._bar = shown

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)


@contextlib.contextmanager
def task(desc: str, total: int | None = None, quiet: bool = False) -> Iterator[Task]:
    """One long step: a bar of `total` updates on a terminal; without one, a log line when it starts
    and one with its wall time when it ends (`quiet`: only the end line, for steps that repeat)."""
    t0 = time.time()
    shown = bar(total, desc) if total else None
    if shown is None and not quiet:
        log.info("%s ...", desc)
    try:
        yield Task(shown)
    finally:
        if shown is not None:
            shown.close()
        log.info("%s: done in %.0fs", desc, time.time() - t0)
