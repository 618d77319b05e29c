"""Writing files that are never left half-written: atomic byte / text writes, CSV / Parquet results tables."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from .errors import DataError, MissingDependencyError, WorkbenchError

TABLE_FORMATS = (".csv", ".parquet")


def _fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path` (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_checksummed(path: str | os.PathLike, data: bytes) -> Path:
    """A cache file and its SHA-256 beside it (`<name>.sha256`), both written atomically, the data first."""
    import hashlib

    path = atomic_write_bytes(path, data)
    atomic_write_text(f"{path}.sha256", hashlib.sha256(data).hexdigest() + "\n")
    return path


def read_checksummed(path: str | os.PathLike) -> bytes | None:
    """A cache file's bytes if its checksum matches; None (and both files removed) when it is missing, has no
    checksum or does not match (a torn copy, a disk fault, an edit): the caller builds it again."""
    import hashlib

    path = Path(path)
    digest = Path(f"{path}.sha256")
    try:
        data, expected = path.read_bytes(), digest.read_text().strip()
    except OSError:
        data = expected = None
    if data is not None and hashlib.sha256(data).hexdigest() == expected:
        return data
    for stale in (path, digest):
        try:
            stale.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _check_table_path(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise WorkbenchError(f"cannot save results as {path.name!r}: use a {' or '.join(TABLE_FORMATS)} file name")
    return suffix


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before a sweep runs, when its output could not be written: a known table type in a
    folder that can be created and written to."""
    path = Path(path)
    _check_table_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".check")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WorkbenchError(f"cannot write results to {str(path)!r}: {exc.strerror or exc}; "
                             "choose a folder you can write to") from None
    return path


def _parquet_engine() -> None:
    """pyarrow is a core dependency; an environment that lost it is told how to mend it (or to use .csv)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "", "reading or writing a .parquet results file",
                                     "pip install pyarrow -c constraints.txt (or save as .csv)") from exc


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save a results frame as CSV or Parquet (by suffix), atomically: written to a temporary file in the
    same folder, fsynced, then renamed over `path` (never half a file)."""
    path = Path(path)
    suffix = _check_table_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise WorkbenchError(f"cannot write results to {str(path)!r}: {exc.strerror or exc}; "
                             "choose a folder you can write to") from None
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            _parquet_engine()
            frame.to_parquet(tmp, index=False)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota, a file size limit: nothing half-written is left
        raise WorkbenchError(f"cannot write results to {str(path)!r}: {exc.strerror or exc}; free some space or "
                             "choose another folder (the previous file, if any, is unchanged)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    suffix = _check_table_path(path)
    if not path.is_file():
        raise DataError(f"no results file at {str(path)!r}")
    if suffix == ".parquet":
        _parquet_engine()
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # a corrupt or foreign file
        raise DataError(f"cannot read results from {str(path)!r}: {type(exc).__name__}: {exc}") from None
