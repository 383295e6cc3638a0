"""Run history: every `zoo adapt` run, `zoo bench` result, `zoo push` and `zoo fetch` in one SQLite file.

The engine writes a run record as ``zoo_run.json`` in the run directory and hands the same dict to
:meth:`RunStore.record_run`, once when the run starts and again when it ends; the run directory is the key, so the
second call updates the first. The main fields live in columns (for filtering and ordering) and the whole record
as JSON (so nothing the engine adds later is lost).

The database is ``$ZOO_STORE``, else ``$XDG_CACHE_HOME/zoo/runs.sqlite`` (``~/.cache/zoo/runs.sqlite``). Every
write is one short ``BEGIN IMMEDIATE`` transaction on a fresh connection with a generous busy timeout, in WAL mode,
so several processes (two adapt runs, a `zoo runs` while one trains) can use the same file. ``PRAGMA
user_version`` holds the schema version; :data:`_MIGRATIONS` is where later versions upgrade older files.

Storage only: what a run is judged by, its `zoo runs` line and comparisons are pure functions of the records, in
:mod:`zoo.compare`; the errors are :class:`zoo.errors.StoreError` and :class:`zoo.errors.UnknownRunError`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo import checks, jsonio
from zoo.compare import Comparison, RunDetail, RunSummary, backbone_name, compare_runs, get, run_detail, summarize
from zoo.errors import STORE_ENV, InvalidInputError, StoreError, UnknownRunError
from zoo.runs.record import STATUSES as RUN_STATUSES
from zoo.tasks import get_task

DEFAULT_ENV = STORE_ENV
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_dir          TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL,
    task             TEXT,
    backbone         TEXT,
    strategy         TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    wall_s           REAL,
    best_metric_json TEXT,
    record_json      TEXT NOT NULL,
    recorded_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_task ON runs (task);
CREATE INDEX IF NOT EXISTS runs_backbone ON runs (backbone);
CREATE TABLE IF NOT EXISTS benches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_dir     TEXT,
    target      TEXT,
    created_at  TEXT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS benches_run_dir ON benches (run_dir);
"""

# Version 2: what was published (`zoo push`) and what was downloaded ahead of time (`zoo fetch`).
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS pushes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_dir     TEXT NOT NULL,
    repo_id     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pushes_run_dir ON pushes (run_dir);
CREATE TABLE IF NOT EXISTS fetches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    backbone    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fetches_backbone ON fetches (backbone);
"""

# from_version -> SQL that brings a database from that version to the next one. Version 0 is an empty file.
_MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1, 1: _SCHEMA_V2}

_RUN_COLUMNS = ("run_dir", "status", "task", "backbone", "strategy", "started_at", "finished_at", "wall_s",
                "best_metric_json", "record_json", "recorded_at")


@dataclass(frozen=True)
class EventTable:
    """A table of events (benches, pushes, fetches): the record as JSON, its time, and the columns it is listed by."""

    what: str                            # how a message names one record
    columns: tuple[str, ...]             # taken from the record, to filter on
    required: tuple[str, ...] = ()       # columns a record must fill


EVENT_TABLES = {
    "benches": EventTable("bench record", ("run_dir", "target")),
    "pushes": EventTable("push record", ("run_dir", "repo_id"), required=("run_dir", "repo_id")),
    "fetches": EventTable("fetch record", ("backbone",), required=("backbone",)),
}


@dataclass(frozen=True)
class RunListing:
    """What `zoo runs` lists: the runs that match, and where they were read from."""

    store: str                           # the database file
    runs: list[RunSummary]
    filtered: bool                       # whether any filter (task, backbone, status) was given


# --- The store --------------------------------------------------------------------------------------------------


def default_store_path() -> Path:
    """``$ZOO_STORE``, else ``$XDG_CACHE_HOME/zoo/runs.sqlite``, else ``~/.cache/zoo/runs.sqlite``."""
    explicit = os.environ.get(DEFAULT_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home).expanduser() / "zoo" / "runs.sqlite"


class RunStore:
    """The run history in one SQLite file; cheap to create, opens a connection per operation."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None and str(path) else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(self.path, f"cannot create folder {self.path.parent} ({exc.strerror or exc})") from exc
        if self.path.is_dir():
            raise StoreError(self.path, "it is a folder, not a database file")
        self._ready = False

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def check(self) -> None:
        """Open the database (creating or upgrading it) now, so a history that cannot be used is reported before
        work starts rather than after it.

        Raises:
            StoreError: naming the file and what is wrong with it.
        """
        with self._connection():
            pass
        for path in (self.path, self.path.parent):   # sqlite writes journal files beside the database
            if not os.access(path, os.W_OK):
                raise StoreError(self.path, f"{path} is read-only")

    # --- runs ---

    def record_run(self, record: Mapping[str, Any]) -> int:
        """Insert the run, or update it when its ``run_dir`` is already recorded; return its id.

        Raises:
            InvalidInputError: when the record has no ``run_dir`` or no ``status``.
        """
        record = _check_record(record)
        row = _run_row(record)
        placeholders = ", ".join("?" for _ in _RUN_COLUMNS)
        updates = ", ".join(f"{column} = excluded.{column}" for column in _RUN_COLUMNS if column != "run_dir")
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({placeholders}) "
                         f"ON CONFLICT (run_dir) DO UPDATE SET {updates}", [row[c] for c in _RUN_COLUMNS])
            (run_id,) = conn.execute("SELECT id FROM runs WHERE run_dir = ?", (row["run_dir"],)).fetchone()
        return int(run_id)

    def list_runs(self, *, task: str | None = None, backbone: str | None = None, status: str | None = None,
                  study: str | None = None, limit: int | None = 50) -> list[RunSummary]:
        """Recorded runs, newest first (by start time, then id).

        ``backbone`` is an exact name or a shell wildcard (``convnext*``); ``study`` keeps the trials of one
        `zoo tune` study (by its name); ``limit`` ``None`` or 0 means all.
        """
        if limit is not None and limit < 0:
            raise InvalidInputError(f"limit must be 0 (all) or a positive number, not {limit}.")
        if status is not None:
            checks.choice("--status", status, RUN_STATUSES)
        if task is not None:
            get_task(task)
        where, params = [], []
        for column, value in (("task", task), ("status", status)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if backbone:
            where.append("backbone GLOB ?" if any(ch in backbone for ch in "*?[") else "backbone = ?")
            params.append(backbone)
        if study:   # the record's tune section names the study of a trial
            where.append("json_extract(record_json, '$.tune.study') = ?")
            params.append(study)
        rows = self._select("SELECT id, record_json FROM runs", where, params,
                            "started_at IS NULL, started_at DESC, id DESC", limit)
        return [_summary(row) for row in rows]

    def get_run(self, run_id: int) -> dict[str, Any]:
        """The full record of run ``run_id``, with its ``id`` first.

        Raises:
            UnknownRunError: when no run has that id.
        """
        with self._connection() as conn:
            row = conn.execute("SELECT id, record_json FROM runs WHERE id = ?", (_run_id(run_id),)).fetchone()
        if row is None:
            raise UnknownRunError(run_id, self.path)
        return {"id": row["id"], **{k: v for k, v in json.loads(row["record_json"]).items() if k != "id"}}

    def summary(self, run_id: int) -> RunSummary:
        """The `zoo runs` line of run ``run_id``; raises :class:`UnknownRunError` when unknown."""
        with self._connection() as conn:
            row = conn.execute("SELECT id, record_json FROM runs WHERE id = ?", (_run_id(run_id),)).fetchone()
        if row is None:
            raise UnknownRunError(run_id, self.path)
        return _summary(row)

    def listing(self, *, task: str | None = None, backbone: str | None = None, status: str | None = None,
                study: str | None = None, limit: int | None = 50) -> RunListing:
        """:meth:`list_runs` with the database it read and whether it was filtered."""
        runs = self.list_runs(task=task, backbone=backbone, status=status, study=study, limit=limit)
        return RunListing(str(self.path), runs, filtered=bool(task or backbone or status or study))

    def detail(self, run_id: int) -> RunDetail:
        """Run ``run_id`` with its pushes, as :class:`RunDetail`.

        Raises:
            UnknownRunError: when no run has that id.
        """
        record = self.get_run(run_id)
        pushes = self.list_pushes(run_dir=record["run_dir"]) if record.get("run_dir") else []
        if record.get("run_dir"):
            record["pushes"] = pushes
        return run_detail(record, pushes)

    def compare(self, run_ids: list[int]) -> Comparison:
        """Metrics of two or more recorded runs side by side (:func:`zoo.compare.compare_runs`).

        Raises:
            InvalidInputError: with fewer than two distinct ids.
            UnknownRunError: when an id is not recorded.
        """
        ids = list(dict.fromkeys(_run_id(i) for i in run_ids))
        if len(ids) < 2:
            raise InvalidInputError("compare needs at least two different run ids, e.g. 'zoo runs compare 3 7'.")
        return compare_runs(ids, [self.get_run(i) for i in ids])

    # --- events: benches, pushes, fetches ---

    def append(self, table: str, record: Mapping[str, Any]) -> int:
        """Add one record to an event table of :data:`EVENT_TABLES` (``created_at`` defaults to now); its id.

        Raises:
            InvalidInputError: the record is not a dict, or lacks a column the table needs.
        """
        kind = EVENT_TABLES[table]
        if not isinstance(record, Mapping):
            raise InvalidInputError(f"a {kind.what} is a dict, not {type(record).__name__}.")
        record = dict(record)
        for column in kind.required:
            if not record.get(column):
                raise InvalidInputError(f"a {kind.what} needs {column!r}.")
        if record.get("run_dir"):
            record["run_dir"] = _absolute(record["run_dir"])
        record.setdefault("created_at", _now())
        values = [None if record.get(column) in (None, "") else str(record[column]) for column in kind.columns]
        columns = ", ".join((*kind.columns, "created_at", "record_json"))
        placeholders = ", ".join("?" for _ in range(len(kind.columns) + 2))
        with self._transaction() as conn:
            cursor = conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
                                  (*values, str(record["created_at"]), _dumps(record)))
            return int(cursor.lastrowid)

    def events(self, table: str, *, limit: int | None = 50, **filters: Any) -> list[dict[str, Any]]:
        """Records of an event table, newest first, each with its ``id`` first; ``filters`` are exact values of
        the table's columns (a run directory matches however it is written)."""
        kind = EVENT_TABLES[table]
        where, params = [], []
        for column, value in filters.items():
            if column not in kind.columns:
                raise InvalidInputError(f"{table} are listed by {', '.join(kind.columns)}, not {column!r}.")
            if value:
                where.append(f"{column} = ?")
                params.append(_absolute(value) if column == "run_dir" else str(value))
        rows = self._select(f"SELECT id, record_json FROM {table}", where, params, "created_at DESC, id DESC", limit)
        return [{"id": row["id"], **json.loads(row["record_json"])} for row in rows]

    def record_bench(self, record: Mapping[str, Any]) -> int:
        """Add one `zoo bench` result (``run_dir`` and ``target`` optional)."""
        return self.append("benches", record)

    def list_benches(self, *, run_dir: str | os.PathLike | None = None, target: str | None = None,
                     limit: int | None = 50) -> list[dict[str, Any]]:
        """Recorded bench results, newest first."""
        return self.events("benches", run_dir=run_dir, target=target, limit=limit)

    def record_push(self, record: Mapping[str, Any]) -> int:
        """Add one completed `zoo push` (needs ``run_dir`` and ``repo_id``; never a token)."""
        return self.append("pushes", record)

    def list_pushes(self, *, run_dir: str | os.PathLike | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
        """Recorded pushes, newest first."""
        return self.events("pushes", run_dir=run_dir, limit=limit)

    def record_fetch(self, record: Mapping[str, Any]) -> int:
        """Add one backbone downloaded by `zoo fetch` (needs ``backbone``)."""
        return self.append("fetches", record)

    def list_fetches(self, *, backbone: str | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
        """Recorded fetches, newest first."""
        return self.events("fetches", backbone=backbone, limit=limit)

    def _select(self, select: str, where: list[str], params: list[Any], order: str, limit: int | None) -> list:
        """Run ``select`` with the AND of ``where``, ``order`` and an optional ``limit``."""
        sql = select + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {order}"
        if limit:
            sql += " LIMIT ?"
            params = [*params, int(limit)]
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    # --- connections ---

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode with the schema in place; sqlite errors become :class:`StoreError`."""
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            if not self._ready:
                self._ensure_schema(conn)
                self._ready = True
            yield conn
        except sqlite3.Error as exc:
            raise StoreError(self.path, _describe(exc)) from exc
        finally:
            if conn is not None:
                conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock up front (``BEGIN IMMEDIATE``)."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            with conn:          # commits on success, rolls back on an exception
                yield conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(self.path, f"it was written by a newer zoo (schema version {version}, this zoo "
                                        f"reads up to {SCHEMA_VERSION}); upgrade zoo")
        try:  # WAL lets readers run while one process writes; not every filesystem supports it
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            pass
        conn.execute("BEGIN IMMEDIATE")
        with conn:
            # another process may have migrated while this one waited for the lock
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")


# --- Helpers ----------------------------------------------------------------------------------------------------

def _check_record(record: Any) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise InvalidInputError(f"a run record is a dict, not {type(record).__name__}.")
    record = dict(record)
    run_dir = record.get("run_dir")
    if not run_dir or not isinstance(run_dir, (str, os.PathLike)):
        raise InvalidInputError("a run record needs 'run_dir', the run's folder.")
    status = record.get("status")
    if not status or not isinstance(status, str):
        raise InvalidInputError(f"a run record needs 'status' (one of {', '.join(RUN_STATUSES)}).")
    record["run_dir"] = _absolute(run_dir)
    return record


def _run_row(record: dict[str, Any]) -> dict[str, Any]:
    best = get(record, "metrics", "best")
    wall = record.get("wall_s")
    return {
        "run_dir": record["run_dir"],
        "status": record["status"],
        "task": _text(record.get("task")),
        "backbone": backbone_name(record),
        "strategy": _text(record.get("strategy")),
        "started_at": _text(record.get("started_at")),
        "finished_at": _text(record.get("finished_at")),
        "wall_s": float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) else None,
        "best_metric_json": None if best is None else _dumps(best),
        "record_json": _dumps(record),
        "recorded_at": _now(),
    }


def _summary(row: sqlite3.Row) -> RunSummary:
    return summarize(json.loads(row["record_json"]), run_id=row["id"])


def _absolute(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _run_id(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"a run id is a whole number (see 'zoo runs'), not {value!r}.") from None


def _dumps(value: Any) -> str:
    return jsonio.dumps(value, ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _describe(exc: sqlite3.Error) -> str:
    detail = str(exc) or type(exc).__name__
    if "not a database" in detail or "malformed" in detail:
        return f"{detail} (the file is not a zoo run history, or it is damaged)"
    if "locked" in detail or "busy" in detail:
        return f"{detail} (another process held it for more than {BUSY_TIMEOUT_S:g} s)"
    return detail
