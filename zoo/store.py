"""Run history: every `zoo adapt` run, `zoo bench` result, `zoo push` and `zoo fetch` in one SQLite file.

The engine writes a run record as ``zoo_run.json`` in the run directory and hands the same dict to
:meth:`RunStore.record_run`, once when the run starts and again when it ends; the run directory is the key, so the
second call updates the first. The main fields live in columns (for filtering and ordering) and the whole record
as JSON (so nothing the engine adds later is lost).

The database is ``$ZOO_STORE``, else ``$XDG_CACHE_HOME/zoo/runs.sqlite`` (``~/.cache/zoo/runs.sqlite``). Every
write is one short ``BEGIN IMMEDIATE`` transaction on a fresh connection with a generous busy timeout, in WAL mode,
so several processes (two adapt runs, a `zoo runs` while one trains) can use the same file. ``PRAGMA
user_version`` holds the schema version; :data:`_MIGRATIONS` is where later versions upgrade older files.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo import checks, jsonio
from zoo.errors import InvalidInputError, ZooError
from zoo.runs.record import STATUSES as RUN_STATUSES

DEFAULT_ENV = "ZOO_STORE"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0
_HEADLINE_METRICS = ("accuracy", "micro_f1", "macro_f1")  # listed first in a comparison

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
_SUMMARY_COLUMNS = "id, run_dir, status, task, backbone, strategy, started_at, finished_at, wall_s, " \
                   "best_metric_json, record_json"


# --- Errors -----------------------------------------------------------------------------------------------------


class UnknownRunError(ZooError, LookupError):
    """No run with that id is recorded in the store."""

    def __init__(self, run_id: int, path: Path | str | None = None) -> None:
        self.run_id, self.path = run_id, path
        where = f" in {path}" if path else ""
        super().__init__(f"no run with id {run_id}{where}. Run 'zoo runs' to list the recorded runs "
                         f"(or pass --store / set {DEFAULT_ENV} to read another run history).")


class StoreError(ZooError, OSError):
    """The run history database cannot be opened, read or written."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path, self.detail = path, detail
        super().__init__(f"cannot use run history {path}: {detail}. Point --store or {DEFAULT_ENV} at another "
                         "file, or move this one aside to start a new history.")


# --- Results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One line of `zoo runs`: the columns of a run plus its main metrics."""

    id: int
    run_dir: str
    status: str
    task: str | None
    backbone: str | None
    strategy: str | None
    started_at: str | None
    finished_at: str | None
    wall_s: float | None
    main_metric: str                     # "accuracy", or "micro_f1" for multi-label data
    main_value: float | None
    macro_f1: float | None
    best_epoch: int | None
    data_fingerprint: str | None
    best: dict[str, Any] = field(default_factory=dict)   # metrics.best of the record

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Runs side by side.

    ``metrics`` (best, i.e. validation, metrics) and ``test_metrics`` map each metric name found in any of the runs
    to one value per run, in the order of ``run_ids`` (``None`` where a run lacks it); ``best`` and ``test_best``
    name, per metric, the ids of the runs with the best value (highest, or lowest for losses and errors).
    ``facts`` holds what identifies each run (backbone, strategy, data fingerprint, ...) and ``config`` the
    flattened configuration keys whose values differ between the runs.
    """

    run_ids: list[int]
    runs: list[RunSummary]
    metrics: dict[str, list[float | None]]
    best: dict[str, list[int]]
    test_metrics: dict[str, list[float | None]]
    test_best: dict[str, list[int]]
    facts: dict[str, list[Any]]
    config: dict[str, list[Any]]
    same_data: bool                      # every run has the same, known data fingerprint

    @property
    def differing_facts(self) -> list[str]:
        return [key for key, values in self.facts.items() if len({_hashable(v) for v in values}) > 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_ids": self.run_ids, "runs": [run.to_dict() for run in self.runs],
            "metrics": self.metrics, "best": self.best,
            "test_metrics": self.test_metrics, "test_best": self.test_best,
            "facts": self.facts, "differing_facts": self.differing_facts,
            "config": self.config, "same_data": self.same_data,
        }


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
                  limit: int | None = 50) -> list[RunSummary]:
        """Recorded runs, newest first (by start time, then id).

        ``backbone`` is an exact name or a shell wildcard (``convnext*``); ``limit`` ``None`` or 0 means all.
        """
        if limit is not None and limit < 0:
            raise InvalidInputError(f"limit must be 0 (all) or a positive number, not {limit}.")
        if status is not None:
            checks.choice("--status", status, RUN_STATUSES)
        if task is not None:
            from zoo.tasks import get_task

            get_task(task)
        where, params = [], []
        for column, value in (("task", task), ("status", status)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if backbone:
            where.append("backbone GLOB ?" if any(ch in backbone for ch in "*?[") else "backbone = ?")
            params.append(backbone)
        rows = self._select(f"SELECT {_SUMMARY_COLUMNS} FROM runs", where, params,
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
            row = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id = ?", (_run_id(run_id),)).fetchone()
        if row is None:
            raise UnknownRunError(run_id, self.path)
        return _summary(row)

    def compare(self, run_ids: list[int]) -> Comparison:
        """Metrics of two or more runs side by side, with the facts and configuration that differ.

        Raises:
            InvalidInputError: with fewer than two distinct ids.
            UnknownRunError: when an id is not recorded.
        """
        ids = list(dict.fromkeys(_run_id(i) for i in run_ids))
        if len(ids) < 2:
            raise InvalidInputError("compare needs at least two different run ids, e.g. 'zoo runs compare 3 7'.")
        records = [self.get_run(i) for i in ids]
        summaries = [_summary_from_record(i, rec) for i, rec in zip(ids, records, strict=True)]

        def side_by_side(part: str) -> tuple[dict[str, list[float | None]], dict[str, list[int]]]:
            per_run = [_scalar_metrics(((rec.get("metrics") or {}).get(part)) or {}) for rec in records]
            seen = list(dict.fromkeys(name for metrics in per_run for name in metrics))
            names = sorted(seen, key=lambda n: (n not in _HEADLINE_METRICS, seen.index(n)))
            table = {name: [metrics.get(name) for metrics in per_run] for name in names}
            return table, {name: _best_ids(name, values, ids) for name, values in table.items()}

        metrics, best = side_by_side("best")
        test_metrics, test_best = side_by_side("test")
        facts = {
            "status": [s.status for s in summaries],
            "task": [s.task for s in summaries],
            "backbone": [s.backbone for s in summaries],
            "family": [_get(rec, "backbone", "family") for rec in records],
            "strategy": [s.strategy for s in summaries],
            "data source": [_get(rec, "data", "source") for rec in records],
            "data fingerprint": [s.data_fingerprint for s in summaries],
            "train/val/test": [_sizes(rec) for rec in records],
            "best epoch": [s.best_epoch for s in summaries],
            "wall_s": [s.wall_s for s in summaries],
        }
        configs = [flatten_config(rec.get("config") or {}) for rec in records]
        keys = sorted({key for cfg in configs for key in cfg})
        missing = object()
        config = {}
        for key in keys:
            values = [cfg.get(key, missing) for cfg in configs]
            if len({_hashable(v) for v in values}) > 1:
                config[key] = [None if v is missing else v for v in values]
        fingerprints = {s.data_fingerprint for s in summaries}
        return Comparison(run_ids=ids, runs=summaries, metrics=metrics, best=best, test_metrics=test_metrics,
                          test_best=test_best, facts=facts, config=config,
                          same_data=len(fingerprints) == 1 and None not in fingerprints and "" not in fingerprints)

    # --- benches ---

    def record_bench(self, record: Mapping[str, Any]) -> int:
        """Add one `zoo bench` result (``run_dir`` and ``target`` optional, ``created_at`` defaults to now)."""
        if not isinstance(record, Mapping):
            raise InvalidInputError(f"a bench record is a dict, not {type(record).__name__}.")
        record = dict(record)
        run_dir = record.get("run_dir")
        if run_dir:
            record["run_dir"] = run_dir = os.path.abspath(os.fspath(run_dir))
        record.setdefault("created_at", _now())
        target = record.get("target")
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO benches (run_dir, target, created_at, record_json) VALUES (?, ?, ?, ?)",
                (run_dir or None, None if target is None else str(target), str(record["created_at"]),
                 _dumps(record)))
            return int(cursor.lastrowid)

    def list_benches(self, *, run_dir: str | os.PathLike | None = None, target: str | None = None,
                     limit: int | None = 50) -> list[dict[str, Any]]:
        """Recorded bench results, newest first, each its record with its ``id`` first."""
        where, params = [], []
        if run_dir:
            where.append("run_dir = ?")
            params.append(os.path.abspath(os.fspath(run_dir)))
        if target:
            where.append("target = ?")
            params.append(target)
        rows = self._select("SELECT id, record_json FROM benches", where, params, "created_at DESC, id DESC", limit)
        return [{"id": row["id"], **json.loads(row["record_json"])} for row in rows]

    # --- pushes and fetches ---

    def record_push(self, record: Mapping[str, Any]) -> int:
        """Add one completed `zoo push` (needs ``run_dir`` and ``repo_id``; never a token)."""
        record = {**record, "run_dir": os.path.abspath(os.fspath(record["run_dir"]))}
        record.setdefault("created_at", _now())
        with self._transaction() as conn:
            cursor = conn.execute("INSERT INTO pushes (run_dir, repo_id, created_at, record_json) VALUES (?, ?, ?, ?)",
                                  (record["run_dir"], record["repo_id"], record["created_at"], _dumps(record)))
            return int(cursor.lastrowid)

    def list_pushes(self, *, run_dir: str | os.PathLike | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
        """Recorded pushes, newest first."""
        where, params = ([], []) if not run_dir else (["run_dir = ?"], [os.path.abspath(os.fspath(run_dir))])
        rows = self._select("SELECT id, record_json FROM pushes", where, params, "created_at DESC, id DESC", limit)
        return [{"id": row["id"], **json.loads(row["record_json"])} for row in rows]

    def record_fetch(self, record: Mapping[str, Any]) -> int:
        """Add one backbone downloaded by `zoo fetch` (needs ``backbone``)."""
        record = dict(record)
        record.setdefault("created_at", _now())
        with self._transaction() as conn:
            cursor = conn.execute("INSERT INTO fetches (backbone, created_at, record_json) VALUES (?, ?, ?)",
                                  (record["backbone"], record["created_at"], _dumps(record)))
            return int(cursor.lastrowid)

    def list_fetches(self, *, backbone: str | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
        """Recorded fetches, newest first."""
        where, params = ([], []) if not backbone else (["backbone = ?"], [backbone])
        rows = self._select("SELECT id, record_json FROM fetches", where, params, "created_at DESC, id DESC", limit)
        return [{"id": row["id"], **json.loads(row["record_json"])} for row in rows]

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

_LOWER_IS_BETTER = {"loss", "error", "err", "ece", "brier", "perplexity", "ppl", "wer", "cer", "latency",
                    "seconds", "sec", "s", "ms", "time"}


def lower_is_better(metric: str) -> bool:
    """Losses, errors, calibration errors and times are better when lower; everything else (rates too) higher."""
    tokens = set(re.split(r"[\W_]+", metric.lower()))
    return bool(tokens & _LOWER_IS_BETTER) and "per" not in tokens


def main_metric(record: Mapping[str, Any]) -> str:
    """The metric a run is judged by: ``micro_f1`` for multi-label data, else ``accuracy``."""
    best = _get(record, "metrics", "best") or {}
    multi_label = bool(record.get("multi_label") or _get(record, "data", "multi_label"))
    if multi_label or ("accuracy" not in best and "micro_f1" in best):
        return "micro_f1"
    return "accuracy"


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
    record["run_dir"] = os.path.abspath(os.fspath(run_dir))
    return record


def _run_row(record: dict[str, Any]) -> dict[str, Any]:
    best = _get(record, "metrics", "best")
    wall = record.get("wall_s")
    return {
        "run_dir": record["run_dir"],
        "status": record["status"],
        "task": _text(record.get("task")),
        "backbone": _backbone_name(record),
        "strategy": _text(record.get("strategy")),
        "started_at": _text(record.get("started_at")),
        "finished_at": _text(record.get("finished_at")),
        "wall_s": float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) else None,
        "best_metric_json": None if best is None else _dumps(best),
        "record_json": _dumps(record),
        "recorded_at": _now(),
    }


def _summary(row: sqlite3.Row) -> RunSummary:
    record = json.loads(row["record_json"])
    best = json.loads(row["best_metric_json"]) if row["best_metric_json"] else {}
    name = main_metric(record)
    return RunSummary(
        id=row["id"], run_dir=row["run_dir"], status=row["status"], task=row["task"], backbone=row["backbone"],
        strategy=row["strategy"], started_at=row["started_at"], finished_at=row["finished_at"], wall_s=row["wall_s"],
        main_metric=name, main_value=_number(best.get(name)), macro_f1=_number(best.get("macro_f1")),
        best_epoch=record.get("best_epoch"), data_fingerprint=_get(record, "data", "fingerprint"),
        best=best if isinstance(best, dict) else {},
    )


def _summary_from_record(run_id: int, record: dict[str, Any]) -> RunSummary:
    row = _run_row(record)
    row.update(id=run_id)
    return _summary(row)  # a dict indexes like the sqlite3.Row _summary expects


def _scalar_metrics(metrics: Any) -> dict[str, float]:
    """The top-level numeric metrics (per-class tables, confusion matrices and the like are left out)."""
    if not isinstance(metrics, Mapping):
        return {}
    return {str(k): float(v) for k, v in metrics.items() if _number(v) is not None}


def _best_ids(metric: str, values: list[float | None], ids: list[int]) -> list[int]:
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return []
    target = min(present) if lower_is_better(metric) else max(present)
    return [run_id for run_id, v in zip(ids, values, strict=True) if v == target]


def flatten_config(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten_config(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else "s:" + value


def _sizes(record: Mapping[str, Any]) -> str | None:
    sizes = _get(record, "data", "sizes")
    if not isinstance(sizes, Mapping):
        return None
    return "/".join(str(sizes.get(split, 0)) for split in ("train", "val", "test"))


def _backbone_name(record: Mapping[str, Any]) -> str | None:
    backbone = record.get("backbone")
    if isinstance(backbone, Mapping):
        return _text(backbone.get("name"))
    return _text(backbone)


def _get(record: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


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
