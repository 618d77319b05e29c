"""Where the workbench keeps its caches (trained zoo models, device peaks) and finds the data it ships."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$WORKBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/efficiency-workbench`, else ~/.cache/efficiency-workbench."""
    root = os.environ.get("WORKBENCH_CACHE_DIR")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "efficiency-workbench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """The data shipped with the workbench (the repository's data/, package data in a wheel): the STS Benchmark."""
    return Path(__file__).resolve().parent / "data"
