"""Where an analysis script writes: shared by the scripts in this folder.

A full run writes to its committed results folder; a ``--quick`` run writes to a new
temporary folder unless ``--out`` says otherwise, so a quick check never overwrites the
committed results.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def output_folder(out: str | Path | None, quick: bool, results: Path, name: str) -> Path:
    """``--out`` if given, else a temporary folder in quick mode, else ``results`` (created)."""
    if out is not None:
        folder = Path(out)
    elif quick:
        folder = Path(tempfile.mkdtemp(prefix=f"gradscope-{name}-"))
    else:
        folder = results
    folder.mkdir(parents=True, exist_ok=True)
    print(f"writing to {folder}")
    return folder
