"""The durable results store: SQLite, one JSON row per trial keyed by its content address."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .errors import DataError, WorkbenchError
from .trial import TrialRecord

SCHEMA_VERSION = 2  # 2: the outputs table (what later trials are compared with)
RETRIED_STATUSES = ("failed",)  # a failed trial may have been transient (timeout, crash): run it again


class ResultsStore:
    """Results in SQLite, one row per trial, keyed by the trial's content address (`trial_id`).

    Every write is its own transaction (WAL journal, synchronous=FULL): a sweep killed at any moment keeps
    every trial it finished, and several studies may write one store at once (writers wait their turn).
    A connection is opened per operation, so a store is safe to share between threads and processes.
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float = 60.0):
        """`timeout_s`: how long a write waits for another writer's transaction before it gives up with an error."""
        import sqlite3

        from .executors import _check_timeout

        self.timeout_s = _check_timeout(timeout_s, "ResultsStore") or 60.0
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
                if tables and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise sqlite3.DatabaseError("database disk image is malformed")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS trials (trial_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, "
                             "status TEXT NOT NULL, row TEXT NOT NULL, written_at TEXT NOT NULL)")
                conn.execute("CREATE TABLE IF NOT EXISTS outputs (trial_id TEXT PRIMARY KEY, npy BLOB NOT NULL)")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{str(self.path)!r} is not a workbench results store ({exc}); "
                            "give a new file name or an existing store") from None
        except OSError as exc:
            raise WorkbenchError(f"cannot open the results store {str(self.path)!r}: {exc.strerror or exc}; "
                                 "choose a folder you can write to") from None

    def _connect(self):
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA synchronous = FULL")
        return _Closing(conn, self.path, self.timeout_s)

    def get_record(self, trial_id: str) -> TrialRecord | None:
        """The stored record of a trial (with its outputs, where kept), unless it failed (failed trials are
        run again)."""
        with self._connect() as conn:
            found = conn.execute("SELECT row, status FROM trials WHERE trial_id = ?", (trial_id,)).fetchone()
            if found is None or found[1] in RETRIED_STATUSES:
                return None
            blob = conn.execute("SELECT npy FROM outputs WHERE trial_id = ?", (trial_id,)).fetchone()
        outputs = np.load(io.BytesIO(blob[0]), allow_pickle=False) if blob else None
        return TrialRecord.from_json(found[0], outputs)

    def put_record(self, record: TrialRecord) -> None:
        """Write a record in one transaction. A failed record never replaces a good one (a racing study's
        crash does not undo another's measurement)."""
        import datetime as dt

        blob = None
        if record.outputs is not None:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(record.outputs), allow_pickle=False)
            blob = buffer.getvalue()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?) ON CONFLICT(trial_id) DO UPDATE SET "
                         "pipeline = excluded.pipeline, status = excluded.status, row = excluded.row, "
                         "written_at = excluded.written_at WHERE excluded.status != 'failed' OR trials.status = 'failed'",
                         (record.trial_id, record.pipeline, record.status, record.to_json(),
                          dt.datetime.now(dt.timezone.utc).isoformat()))
            if blob is not None:
                conn.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?)", (record.trial_id, blob))
            conn.execute("COMMIT")

    def get(self, trial_id: str) -> dict | None:
        """The stored row of a trial, unless it failed."""
        record = self.get_record(trial_id)
        return None if record is None else record.to_row()

    def put(self, row: dict) -> None:
        self.put_record(TrialRecord(row))

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
    """`with` for an sqlite3 connection that closes it (sqlite3's own context manager only commits) and turns
    SQLite's errors into ones that name the store and what to do."""

    def __init__(self, conn, path: Path, timeout_s: float = 60.0):
        self.conn, self.path, self.timeout_s = conn, path, timeout_s

    def __enter__(self):
        return self.conn

    def __exit__(self, kind, exc, tb) -> None:
        import sqlite3

        self.conn.close()
        if exc is None or not isinstance(exc, sqlite3.DatabaseError):
            return
        where = str(self.path)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise WorkbenchError(
                f"the results store {where!r} stayed locked by another writer for {self.timeout_s:g} s ({exc}): wait for the "
                "other sweep to finish, or give this one a store of its own") from None
        if isinstance(exc, sqlite3.OperationalError) and ("readonly" in str(exc) or "read-only" in str(exc)):
            raise WorkbenchError(f"the results store {where!r} is read-only ({exc}): make it writable, or give "
                                 "another file") from None
        raise DataError(
            f"the results store {where!r} is damaged ({exc}); nothing more was written to it. Move the "
            f"file aside and run again with a new --store (finished trials are measured again), or recover what "
            f"it holds with `sqlite3 {where} .recover | sqlite3 recovered.db`") from None
