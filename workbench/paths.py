"""Where the workbench keeps its caches (trained zoo models, device peaks) and finds the data it ships."""

from __future__ import annotations

import functools
import os
import tempfile
import warnings
from pathlib import Path


def cache_dir() -> Path:
    """`$WORKBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/efficiency-workbench`, else ~/.cache/efficiency-workbench.
    A folder that cannot be written (read-only, not a folder) is replaced by one in the system's temporary folder,
    with a warning that names both: caches are worth having, not worth failing for."""
    root = os.environ.get("WORKBENCH_CACHE_DIR")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "efficiency-workbench"
    return _writable(str(path))


@functools.lru_cache(maxsize=8)
def _writable(path: str) -> Path:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
        return Path(path)
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"efficiency-workbench-{os.getuid() if hasattr(os, 'getuid') else 0}"
        fallback.mkdir(mode=0o700, exist_ok=True)
        if hasattr(os, "getuid") and fallback.stat().st_uid != os.getuid():  # someone else's: never trust it
            fallback = Path(tempfile.mkdtemp(prefix="efficiency-workbench-"))
        warnings.warn(f"the cache folder {path!r} cannot be written ({exc.strerror or exc}): using {str(fallback)!r} "
                      "instead; set WORKBENCH_CACHE_DIR to a folder you can write to", stacklevel=3)
        return fallback


def data_dir() -> Path:
    """The data shipped with the workbench (the repository's data/, package data in a wheel): the STS Benchmark."""
    return Path(__file__).resolve().parent / "data"
