"""`zoo distill`: a teacher (a finished run, or an ensemble) distilled into a smaller student backbone on adapt's
engine, and the evidence of what it bought.

The student is an ordinary adapt run whose request names the teacher (:class:`zoo.engine.run.AdaptRequest`) and
whose configuration holds the loss's temperature and weight (:class:`zoo.engine.config.AdaptConfig`): the engine
runs the teacher once over the data (:mod:`zoo.engine.teacher`) and trains on its soft targets with the hard labels
(:func:`zoo.engine.trainer.distillation_loss`). It resumes with `zoo adapt --resume` like any run.

Once the student has finished, it is compared (:func:`complete`):

- the student alone: the same backbone trained with the same recipe and no teacher, in the folder beside it
  (``RUN-alone``, an ordinary run), or a finished run given with ``--baseline RUN`` (the same backbone, the same
  data and split), or none;
- gap closed = (distilled - alone) / (teacher - alone) on validation (and test when the data has one), by the
  task's main metric: 0 is no better than the student alone, 1 is the teacher's score;
- speed-up: the teacher and the student timed by :func:`zoo.bench.measure` on the same device and precision,
  batch-1 latency (p50) and batch-32 throughput.

All of it goes into the student's record (section ``distill``), its model card and the run history.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from zoo.bench import measure
from zoo.data.base import DataSplits
from zoo.engine.config import AdaptConfig
from zoo.engine.metrics import headline
from zoo.engine.run import AdaptRequest, run_training
from zoo.engine.rundir import STATE_DIR, claim_existing, claim_new
from zoo.engine.trainer import Reporter
from zoo.errors import InvalidInputError
from zoo.loading import load_saved
from zoo.plugins import get_plugin_manager
from zoo.runs.card import write_model_card
from zoo.runs.record import has_record, read_finished_record, read_record, write_record
from zoo.tasks import get_task

BASELINES = ("train", "none")        # --baseline, besides a run's folder
ALONE_SUFFIX = "-alone"              # the student alone is trained in RUN-alone, beside the distilled RUN
DEFAULT_SUFFIX = "-distilled"        # runs/<data>-<student>-distilled without --output
# The speed-up's timing: batch 1 for latency and 32 for throughput; each timing lasts at least BENCH_MIN_SECONDS.
BENCH_BATCH_SIZES = (1, 32)
BENCH_WARMUP = 5
BENCH_ITERS = 20
BENCH_MIN_SECONDS = 1.0


def alone_dir(run_dir: str | os.PathLike) -> Path:
    """Where the student alone is trained for the distilled run in ``run_dir``: the folder beside it."""
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ALONE_SUFFIX)


def check_baseline(baseline: str) -> str:
    """``--baseline`` as the request keeps it: train, none, or the folder of a finished run (made absolute).

    Raises:
        zoo.errors.InvalidInputError: a folder that is not a finished run.
    """
    if baseline in BASELINES:
        return baseline
    try:
        read_finished_record(baseline)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--baseline {baseline}: {exc} (or give --baseline train|none)") from None
    return str(Path(baseline).resolve())


def check_baseline_run(baseline: str, *, backbone: str, splits: DataSplits) -> dict[str, Any]:
    """The record of the student-alone run ``baseline``, which must be of the student's backbone and of the same
    data and split as the distilled run (equal fingerprints).

    Raises:
        zoo.errors.InvalidInputError: one line naming --baseline and what differs.
    """
    record = read_finished_record(baseline).to_dict()
    theirs = (record.get("backbone") or {}).get("name")
    if theirs != backbone:
        raise InvalidInputError(f"--baseline {baseline}: a run of {theirs}, not of the student {backbone}; give a "
                                "run of the student's backbone, or --baseline train")
    fingerprint = (record.get("data") or {}).get("fingerprint")
    if fingerprint != splits.fingerprint:
        raise InvalidInputError(f"--baseline {baseline}: trained on other data or another split (fingerprint "
                                f"{str(fingerprint)[:12]}, here {splits.fingerprint[:12]}); give a run of the same "
                                "data, --val-fraction and --seed, or --baseline train")
    return record


def check_alone_free(run_dir: str | os.PathLike) -> None:
    """The folder the student alone will be trained in must be free before the distilled run starts.

    Raises:
        zoo.errors.InvalidInputError: it holds files already.
    """
    folder = alone_dir(run_dir)
    if folder.is_dir() and any(p.name != STATE_DIR for p in folder.iterdir()):
        raise InvalidInputError(f"{folder}: already exists and is not empty, and the student alone is trained there "
                                "for comparison; remove it, choose another --output, or give --baseline RUN|none")
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"{folder}: is a file, and the student alone is trained there for comparison; "
                                "choose another --output, or give --baseline RUN|none")


def distill(spec, family, splits: DataSplits, config: AdaptConfig, run_dir: Path, request: AdaptRequest, *,
            history=None, reporter: Reporter | None = None,
            bench_min_seconds: float | None = None) -> dict[str, Any]:
    """Train the student of ``request`` (which names the teacher) into ``run_dir``, already claimed, then compare
    it (:func:`complete`); returns its record."""
    record = run_training(spec, family, splits, config, run_dir, request, reporter=reporter,
                          on_record=history.record_run if history else None)
    if history is not None:
        record["store_id"] = history.record_run(record)
    return complete(run_dir, record, spec=spec, family=family, splits=splits, history=history, reporter=reporter,
                    bench_min_seconds=bench_min_seconds)


def compared(record: dict[str, Any]) -> bool:
    """Whether a distilled run's record holds its comparison (a run finished by `zoo adapt --resume` after an
    interruption between training and comparing does not yet)."""
    return "speed_up" in (record.get("distill") or {})


def complete(run_dir: Path, record: dict[str, Any], *, spec, family, splits: DataSplits, history=None,
             reporter: Reporter | None = None, bench_min_seconds: float | None = None) -> dict[str, Any]:
    """Compare the finished distilled run in ``run_dir`` with the student alone and time it against its teacher;
    the record's ``distill`` section, its card and the run history are updated. Returns the record."""
    reporter = reporter or Reporter()
    request = AdaptRequest(**record["request"])
    section = record["distill"]
    alone = None
    if request.baseline == "train":
        alone = _train_alone(run_dir, record, spec=spec, family=family, splits=splits, history=history,
                             reporter=reporter)
    elif request.baseline not in (None, "none"):
        alone = check_baseline_run(request.baseline, backbone=spec.name, splits=splits)
    metric = get_task(record["task"]).main_metric(record["multi_label"])
    section["student_alone"] = None if alone is None else {
        "run": alone["run_dir"], "trained": request.baseline == "train",
        "metrics": {"val": headline(alone["metrics"]["best"]),
                    "test": headline(alone["metrics"]["test"]) if alone["metrics"].get("test") else None}}
    section["gap_closed"] = gap_closed(section, record, metric)
    reporter.message("timing the teacher and the student (zoo bench's measurement)")
    section["speed_up"], student_bench = speed_up(request.teacher, run_dir, record,
                                                  min_seconds=bench_min_seconds)
    record.setdefault("bench", []).append(student_bench)
    write_record(run_dir, record)
    write_model_card(run_dir, record)
    if history is not None:
        record["store_id"] = history.record_run(record)
    return record


def gap_closed(section: dict[str, Any], record: dict[str, Any], metric: str) -> dict[str, Any]:
    """(distilled - alone) / (teacher - alone) by ``metric`` on validation and test, each None where a score is
    missing or the teacher is no better than the student alone (then there is no gap to close: the note says)."""
    alone = section.get("student_alone")
    result: dict[str, Any] = {"metric": metric, "val": None, "test": None, "notes": []}
    if alone is None:
        result["notes"].append("no student alone to compare with (--baseline none)")
        return result
    distilled = {"val": record["metrics"]["best"], "test": record["metrics"].get("test")}
    for split in ("val", "test"):
        scores = [(distilled[split] or {}).get(metric), (alone["metrics"][split] or {}).get(metric),
                  (section["teacher"]["metrics"].get(split) or {}).get(metric)]
        if any(score is None for score in scores):
            continue
        ours, theirs, teacher = scores
        if teacher <= theirs:
            result["notes"].append(f"{split}: the teacher ({teacher:.4f}) is no better than the student alone "
                                   f"({theirs:.4f}), so there is no gap to close")
            continue
        result[split] = round((ours - theirs) / (teacher - theirs), 4)
    return result


def speed_up(teacher_dir: str, run_dir: Path, record: dict[str, Any], *,
             min_seconds: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The teacher and the student timed alike (:func:`zoo.bench.measure`, on the run's device and precision):
    the section's figures and ratios, and the student's whole bench result (for its record's speed table)."""
    import torch

    request = AdaptRequest(**record["request"])
    device = "cpu" if request.device == "cpu" or not torch.cuda.is_available() else "cuda"
    precision = record.get("precision_used") or "fp32"
    families = get_plugin_manager().families
    results = {}
    for role, folder in (("teacher", teacher_dir), ("student", run_dir)):
        timed = read_record(folder).to_dict()
        classifier = load_saved(folder, families)
        backbone = timed.get("backbone") or {}
        results[role] = measure(classifier, target=str(folder), backbone=backbone.get("name", Path(folder).name),
                                family=backbone.get("family", ""), weights="adapted", device=device,
                                precision=precision, batch_sizes=BENCH_BATCH_SIZES, warmup=BENCH_WARMUP,
                                iters=BENCH_ITERS,
                                min_seconds=BENCH_MIN_SECONDS if min_seconds is None else min_seconds).to_dict()
        classifier.model.to("cpu")   # one model on the device at a time
    figures = {role: {"latency_p50_ms": result["latency_ms"]["p50"],
                      "throughput_per_s": result["throughput"][-1]["samples_per_s"],
                      "throughput_batch": result["throughput"][-1]["batch_size"],
                      "params_m": result["params_m"], "gflops": result["gflops"],
                      "peak_memory_mb": result["peak_memory_mb"]} for role, result in results.items()}
    teacher, student = figures["teacher"], figures["student"]
    section = {"device": device, "precision": precision, "teacher": teacher, "student": student,
               "latency": _ratio(teacher["latency_p50_ms"], student["latency_p50_ms"]),
               "throughput": _ratio(student["throughput_per_s"], teacher["throughput_per_s"]),
               "fingerprint": results["student"]["fingerprint"]}
    return section, {**results["student"], "run_dir": str(Path(run_dir).resolve())}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _train_alone(run_dir: Path, record: dict[str, Any], *, spec, family, splits: DataSplits, history,
                 reporter: Reporter) -> dict[str, Any]:
    """The student alone in ``RUN-alone``: the distilled run's backbone, data, strategy and options, with no
    teacher. Trained there when the folder is free, resumed when an earlier attempt was interrupted, read when it
    finished already."""
    folder = alone_dir(run_dir)
    request = dataclasses.replace(AdaptRequest(**record["request"]), teacher=None, baseline=None)
    # The recipe of the distilled run, as the person asked for it, with the strategy it used (auto trains the
    # fine-tuning for a student) and without the teacher's loss.
    config = dataclasses.replace(AdaptConfig.from_dict(record["config_requested"]), strategy=record["strategy"],
                                 distill_temperature=None, distill_alpha=None)
    on_record = history.record_run if history else None
    if has_record(folder):
        earlier = read_record(folder)
        if earlier.finished:
            reporter.message(f"student alone: {folder} (finished already)")
            return check_baseline_run(str(folder), backbone=spec.name, splits=splits)
        if (earlier.to_dict().get("data") or {}).get("fingerprint") != splits.fingerprint:
            raise InvalidInputError(f"{folder}: the student alone there was started on other data; remove it and "
                                    f"run 'zoo adapt --resume {run_dir}' again")
        reporter.message(f"student alone: resuming {folder}")
        with claim_existing(folder):
            alone = run_training(spec, family, splits, AdaptConfig.from_dict(earlier.to_dict()["config_requested"]),
                                 folder, AdaptRequest(**earlier.to_dict()["request"]), resume=True,
                                 reporter=reporter, on_record=on_record)
    else:
        reporter.message(f"student alone: training {spec.name} with the same recipe and no teacher, in {folder}")
        with claim_new(folder, default=folder):
            alone = run_training(spec, family, splits, config, folder, request, reporter=reporter,
                                 on_record=on_record)
    if history is not None:
        alone["store_id"] = history.record_run(alone)
    return alone
