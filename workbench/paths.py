"""Where the workbench keeps its caches (trained zoo models, device peaks)."""

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
