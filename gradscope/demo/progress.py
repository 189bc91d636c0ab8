"""The demo's progress display: a tqdm bar, or a plain line every 10 % without tqdm."""

from __future__ import annotations

import sys
import time

__all__ = ["PlainProgress", "progress"]


class PlainProgress:
    """The fallback without tqdm: one line on stderr every 10 % of the steps."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.postfix: dict[str, str] = {}
        self.start = time.perf_counter()

    def set_postfix(self, **values: str) -> None:
        """Values shown after the count (``loss=...``), as tqdm's ``set_postfix``."""
        self.postfix = values

    def update(self, n: int) -> None:
        """Count ``n`` more steps; print a line when a new tenth is reached."""
        before = 10 * self.done // self.total
        self.done += n
        if 10 * self.done // self.total > before or self.done == self.total:
            extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
            elapsed = time.perf_counter() - self.start
            print(
                f"training: {self.done}/{self.total} steps ({elapsed:.0f} s) {extra}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        """Nothing to close."""


def progress(total: int, quiet: bool, use_tqdm: bool = True):
    """A tqdm bar when tqdm is installed and wanted; otherwise a plain line every 10 %."""
    if quiet:
        return None
    if use_tqdm:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is in the logging and test extras
            pass
        else:
            return tqdm(total=total, desc="training", unit="step", file=sys.stderr)
    return PlainProgress(total)
