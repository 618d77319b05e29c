"""Persisting results and caches: atomic writes, CSV / Parquet tables."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from .errors import DataError, WorkbenchError

TABLE_FORMATS = (".csv", ".parquet")


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


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save a results frame as CSV or Parquet (by suffix), atomically."""
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
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    suffix = _check_table_path(path)
    if not path.is_file():
        raise DataError(f"no results file at {str(path)!r}")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # a corrupt or foreign file
        raise DataError(f"cannot read results from {str(path)!r}: {type(exc).__name__}: {exc}") from None


# -- the durable results store -------------------------------------------------------------------------

SCHEMA_VERSION = 1
RETRIED_STATUSES = ("failed",)  # a failed trial may have been transient (timeout, crash): run it again


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a results row")


class ResultsStore:
    """Results in SQLite, one row per trial, keyed by the trial's content address (`trial_id`).

    Every write is its own transaction (WAL journal, synchronous=FULL): a sweep killed at any moment keeps
    every trial it finished, and several studies may write one store at once (writers wait their turn).
    A connection is opened per operation, so a store is safe to share between threads and processes.
    """

    def __init__(self, path: str | os.PathLike):
        import sqlite3

        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise WorkbenchError(f"results store {str(self.path)!r} is a folder; give a file path such as results.db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if tables and "trials" not in tables:
                    raise DataError(f"{str(self.path)!r} is an SQLite file but not a workbench results store")
                if version > SCHEMA_VERSION:
                    raise DataError(f"results store {str(self.path)!r} was written by a newer workbench "
                                    f"(schema {version}); upgrade efficiency-workbench to read it")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS trials (trial_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, "
                             "status TEXT NOT NULL, row TEXT NOT NULL, written_at TEXT NOT NULL)")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{str(self.path)!r} is not a workbench results store ({exc}); "
                            "give a new file name or an existing store") from None
        except OSError as exc:
            raise WorkbenchError(f"cannot open the results store {str(self.path)!r}: {exc.strerror or exc}; "
                                 "choose a folder you can write to") from None

    def _connect(self):
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA synchronous = FULL")
        return _Closing(conn)

    def get(self, trial_id: str) -> dict | None:
        """The stored row of a trial, unless it failed (failed trials are run again)."""
        import json

        with self._connect() as conn:
            found = conn.execute("SELECT row, status FROM trials WHERE trial_id = ?", (trial_id,)).fetchone()
        if found is None or found[1] in RETRIED_STATUSES:
            return None
        return json.loads(found[0])

    def put(self, row: dict) -> None:
        import datetime as dt
        import json

        text = json.dumps(row, default=_json_default)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?)",
                         (row["trial_id"], row["pipeline"], row["status"], text,
                          dt.datetime.now(dt.timezone.utc).isoformat()))
            conn.execute("COMMIT")

    def rows(self) -> list[dict]:
        import json

        with self._connect() as conn:
            return [json.loads(r[0]) for r in conn.execute("SELECT row FROM trials ORDER BY written_at, trial_id")]

    def check(self) -> str:
        """SQLite's own integrity check ("ok" when the file is sound)."""
        with self._connect() as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0]

    def __len__(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]

    def __repr__(self) -> str:
        return f"<ResultsStore {str(self.path)!r}: {len(self)} trial(s)>"


class _Closing:
    """`with` for an sqlite3 connection that closes it (sqlite3's own context manager only commits)."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc) -> None:
        self.conn.close()
