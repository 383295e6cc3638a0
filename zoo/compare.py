"""Judging runs from their records: the metric a run is judged by, a run's one-line summary, and several runs side
by side (`zoo runs compare`).

Pure functions of run records (the dicts the engine writes as ``zoo_run.json`` and :mod:`zoo.store` keeps): nothing
here reads a file or a database, so the rules can be tested and reused without a run history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zoo.errors import InvalidInputError
from zoo.tasks import MULTI_LABEL_METRICS, SINGLE_LABEL_METRICS, lower_is_better, reported_metrics

# Listed first in a comparison: the main metrics of single- and multi-label runs, then macro-F1.
_HEADLINE_METRICS = (SINGLE_LABEL_METRICS[0], MULTI_LABEL_METRICS[0], "macro_f1")


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
    main_metric: str                     # the task's main metric (Task.main_metric): accuracy, or micro_f1
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

    def highlighted(self, metric: str, *, test: bool = False) -> list[int]:
        """The ids of the runs to mark as best for ``metric``: none when fewer than two runs report it or every run
        that does ties, since there is nothing to choose between them."""
        values = (self.test_metrics if test else self.metrics).get(metric, [])
        winners = (self.test_best if test else self.best).get(metric, [])
        present = [v for v in values if v is not None]
        return [] if len(present) < 2 or len(winners) == len(present) else list(winners)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_ids": self.run_ids, "runs": [run.to_dict() for run in self.runs],
            "metrics": self.metrics, "best": self.best,
            "test_metrics": self.test_metrics, "test_best": self.test_best,
            "facts": self.facts, "differing_facts": self.differing_facts,
            "config": self.config, "same_data": self.same_data,
        }


@dataclass(frozen=True)
class RunDetail:
    """One run as `zoo runs show` presents it, read from its record once, whatever the record's version lacks.

    ``record`` is the stored record itself, with the run's ``pushes`` when it has a run directory (the ``--json``
    output); the other fields are that record's parts with their types checked.
    """

    id: int
    status: str | None
    run_dir: str | None
    task: str | None
    backbone: str | None
    family: str | None
    source: str | None                   # where the weights came from, when that is not the backbone's name
    strategy: str | None
    started_at: str | None
    finished_at: str | None
    wall_s: float | None
    data_source: str | None
    sizes: dict[str, int]                # examples per split: train, val, test
    num_labels: int | None
    multi_label: bool
    data_fingerprint: str | None
    best_epoch: int | None
    error: str | None
    pushes: list[dict[str, Any]]         # newest first, as RunStore.list_pushes gives them
    main_metric: str
    best: dict[str, int | float]         # best-epoch (validation) metrics: the numbers only
    test: dict[str, int | float]
    epochs: list[dict[str, int | float]]       # one per epoch: "epoch", then metrics, nested ones as "val.accuracy"
    config: dict[str, Any]               # flattened: "optim.lr"
    record: dict[str, Any] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.record


def main_metric(record: Mapping[str, Any]) -> str:
    """The metric a run is judged by: its task's main metric (:meth:`zoo.tasks.Task.main_metric`) for single- or
    multi-label data. A record that does not say whether its data was multi-label is judged by the metric it has."""
    best = get(record, "metrics", "best") or {}
    task = record.get("task") if isinstance(record.get("task"), str) else None
    single, multi = (reported_metrics(task, multi_label=flag)[0] for flag in (False, True))
    multi_label = bool(record.get("multi_label") or get(record, "data", "multi_label"))
    if multi_label or (single not in best and multi in best):
        return multi
    return single


def summarize(record: Mapping[str, Any], *, run_id: int) -> RunSummary:
    """The `zoo runs` line of a run record."""
    best = get(record, "metrics", "best")
    best = best if isinstance(best, dict) else {}
    name = main_metric(record)
    wall = record.get("wall_s")
    return RunSummary(
        id=run_id, run_dir=str(record.get("run_dir")), status=str(record.get("status")),
        task=_text(record.get("task")), backbone=backbone_name(record), strategy=_text(record.get("strategy")),
        started_at=_text(record.get("started_at")), finished_at=_text(record.get("finished_at")),
        wall_s=_number(wall), main_metric=name, main_value=_number(best.get(name)),
        macro_f1=_number(best.get("macro_f1")), best_epoch=record.get("best_epoch"),
        data_fingerprint=get(record, "data", "fingerprint"), best=best,
    )


def compare_runs(run_ids: Sequence[int], records: Sequence[Mapping[str, Any]]) -> Comparison:
    """Metrics of two or more runs side by side, with the facts and configuration that differ.

    Raises:
        InvalidInputError: with fewer than two runs.
    """
    ids = list(run_ids)
    if len(ids) < 2:
        raise InvalidInputError("compare needs at least two different run ids, e.g. 'zoo runs compare 3 7'.")
    summaries = [summarize(rec, run_id=i) for i, rec in zip(ids, records, strict=True)]

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
        "family": [get(rec, "backbone", "family") for rec in records],
        "strategy": [s.strategy for s in summaries],
        "data source": [get(rec, "data", "source") for rec in records],
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


def flatten_config(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten_config(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


def backbone_name(record: Mapping[str, Any]) -> str | None:
    """The backbone's name, from a record's backbone entry (or an old record's plain name)."""
    backbone = record.get("backbone")
    if isinstance(backbone, Mapping):
        return _text(backbone.get("name"))
    return _text(backbone)


def get(record: Any, *keys: str) -> Any:
    """``record[k1][k2]...``, or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def run_detail(record: dict[str, Any], pushes: list[dict[str, Any]]) -> RunDetail:
    """Run ``record`` (with its id) as `zoo runs show` presents it, its parts' types checked once."""
    backbone = record.get("backbone")
    backbone = backbone if isinstance(backbone, Mapping) else {"name": backbone}
    data = record.get("data") if isinstance(record.get("data"), Mapping) else {}
    metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
    sizes = data.get("sizes") if isinstance(data.get("sizes"), Mapping) else {}
    labels = data.get("labels")
    source = _text(backbone.get("source"))
    epochs = []
    for index, entry in enumerate((e for e in (metrics.get("epochs") or []) if isinstance(e, Mapping)), start=1):
        flat: dict[str, Any] = {}
        for key, value in entry.items():   # nested metrics one level down: "val.accuracy"
            flat.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, Mapping) else {key: value})
        row = _numbers(flat)
        number = entry.get("epoch", index)
        epochs.append({"epoch": number, **{k: v for k, v in row.items() if k != "epoch"}})
    wall = record.get("wall_s")
    return RunDetail(
        id=record["id"], status=_text(record.get("status")), run_dir=_text(record.get("run_dir")),
        task=_text(record.get("task")), backbone=_text(backbone.get("name")), family=_text(backbone.get("family")),
        source=source if source != _text(backbone.get("name")) else None, strategy=_text(record.get("strategy")),
        started_at=_text(record.get("started_at")), finished_at=_text(record.get("finished_at")),
        wall_s=_number(wall), data_source=_text(data.get("source")),
        sizes={split: sizes[split] for split in ("train", "val", "test") if split in sizes},
        num_labels=len(labels) if isinstance(labels, list) else None, multi_label=bool(data.get("multi_label")),
        data_fingerprint=_text(data.get("fingerprint")), best_epoch=record.get("best_epoch"),
        error=_text(record.get("error")), pushes=pushes, main_metric=main_metric(record),
        best=_numbers(metrics.get("best")), test=_numbers(metrics.get("test")), epochs=epochs,
        config=flatten_config(record.get("config") or {}), record=record,
    )


def _numbers(metrics: Any) -> dict[str, int | float]:
    """The numeric entries of a metrics dict as they are (an int stays an int: a count reads as one)."""
    if not isinstance(metrics, Mapping):
        return {}
    return {str(k): v for k, v in metrics.items() if _number(v) is not None}


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


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else "s:" + value


def _sizes(record: Mapping[str, Any]) -> str | None:
    sizes = get(record, "data", "sizes")
    if not isinstance(sizes, Mapping):
        return None
    return "/".join(str(sizes.get(split, 0)) for split in ("train", "val", "test"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
