"""`zoo ensemble`: finished runs of one task combined into one model, weighted by Caruana's ensemble selection over
their validation outputs, written as a run of its own.

Members may differ in backbone and family; they must share the task, the labels (in the same order) and whether
the task is multi-label. Selection reads the validation logits every run stores when it finishes
(:mod:`zoo.runs.outputs`), so it takes seconds; they must score the same examples (equal keys), else ``--val
DATA`` scores every member once on DATA instead.

Caruana's selection (Caruana, Niculescu-Mizil, Crew and Ksikes, "Ensemble selection from libraries of models",
ICML 2004), with replacement: start from nothing; at each of ``size`` steps add the member (possibly again) whose
addition gives the averaged probabilities (softmax; sigmoid per label for a multi-label task) the best validation
main metric, a tie going to the lower log loss; keep the best prefix of those steps. A member's weight is the
number of times it was added over the prefix's length. The first step adds the best member, so the ensemble never
scores below it on validation. ``mean`` gives every member the same weight, with no selection.

The ensemble is a run folder: each member's saved model copied in (hard links where the file system allows) under
``members/NN-NAME/`` with the manifest ``zoo_ensemble.json`` (:mod:`zoo.better.ensembled`), the ensemble's own
validation outputs, a record (``zoo_run.json``, "finished" only in its last write) and a model card.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from zoo import loading
from zoo.better.ensembled import (
    MANIFEST,
    EnsembleManifest,
    ManifestMember,
    member_folder_name,
    write_manifest,
)
from zoo.data import load_data
from zoo.data.base import Example
from zoo.engine.batches import ExampleDataset, collect_outputs, make_collate
from zoo.engine.metrics import compute_metrics
from zoo.engine.run import AdaptRequest
from zoo.engine.rundir import STATE_DIR, claim_new, default_run_dir
from zoo.errors import InvalidInputError
from zoo.family import Family
from zoo.hardware import fingerprint
from zoo.precision import autocast, resolve_precision
from zoo.runs.card import how_it_decides_pictures, write_model_card, write_plots
from zoo.runs.outputs import RECORD_KEY as VALIDATION_OUTPUTS
from zoo.runs.outputs import examples_key, read_validation_outputs, write_validation_outputs
from zoo.runs.record import RECORD_VERSION, VERSION_KEY, check_finite_weights, read_finished_record, write_record
from zoo.tasks import get_task

METHODS = ("caruana", "mean")
MAX_SIZE = 100            # selection steps at most: past that a weight's grain (1/size) is finer than it can matter
# Validation examples per member below which Caruana's choice is warned about: with few examples per candidate, the
# member added at a step is often the one that fits the validation set's noise (one example moves accuracy by 1/N).
MIN_VAL_PER_MEMBER = 25
# Files a run writes beside its saved model, which an ensemble does not copy.
_NOT_MODEL = ("README.md", "curves.png", "confusion.png")


@dataclass
class Member:
    """A finished run offered to the ensemble."""

    run_dir: Path
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def backbone(self) -> str:
        return str((self.record.get("backbone") or {}).get("name"))

    @property
    def family(self) -> str:
        return str((self.record.get("backbone") or {}).get("family"))

    @property
    def max_seconds(self) -> float:
        return float((self.record.get("config") or {}).get("max_seconds", 10.0))

    @property
    def precision(self) -> str:
        return self.record.get("precision_used") or (self.record.get("config") or {}).get("precision", "fp32")


@dataclass
class Scored:
    """Every member's logits on the same validation examples."""

    logits: list[np.ndarray]      # one (examples, labels) array per member
    targets: np.ndarray
    key: str                      # examples_key of those examples
    source: str                   # "stored" (each run's own outputs) or the --val data


@dataclass
class Selection:
    """What the selection chose: a weight per member, and how it got there."""

    weights: list[float]          # one per member, summing to 1
    counts: list[int]             # how many times each member was added over the kept prefix
    steps: int                    # the kept prefix's length
    score: float                  # the ensemble's validation main metric
    log_loss: float
    member_scores: list[float]    # each member alone, on the same examples
    member_losses: list[float]
    trajectory: list[dict[str, Any]] = field(default_factory=list)   # every step: added, score, log loss
    seconds: float = 0.0


# --- selection (pure functions of probabilities) -------------------------------------------------------------


def to_probabilities(logits: np.ndarray, *, multi_label: bool) -> np.ndarray:
    """A member's probabilities from its logits (float64): softmax, or sigmoid per label."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def to_logits(probabilities: np.ndarray, *, multi_label: bool) -> np.ndarray:
    """What the ensemble's forward gives for mixed probabilities (see
    :func:`zoo.better.ensembled.probabilities_to_logits`): their log, or their logit per label."""
    if multi_label:
        p = np.clip(probabilities, 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)
    return np.log(np.maximum(probabilities, np.finfo(np.float32).tiny))


def log_loss(probabilities: np.ndarray, targets: np.ndarray, *, multi_label: bool) -> float:
    """Mean negative log-likelihood of the targets (binary, per label, for a multi-label task)."""
    eps = 1e-12
    if multi_label:
        p = np.clip(probabilities, eps, 1 - eps)
        return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
    chosen = probabilities[np.arange(len(targets)), targets.astype(np.int64)]
    return float(-np.mean(np.log(np.maximum(chosen, eps))))


def score(probabilities: np.ndarray, targets: np.ndarray, labels: Sequence[str], *, metric: str,
          multi_label: bool) -> tuple[float, float]:
    """(validation ``metric``, log loss) of probabilities, the metric as a run reports it
    (:func:`zoo.engine.metrics.compute_metrics`)."""
    return _metric(probabilities, targets, labels, metric=metric, multi_label=multi_label), \
        log_loss(probabilities, targets, multi_label=multi_label)


def _metric(probabilities: np.ndarray, targets: np.ndarray, labels: Sequence[str], *, metric: str,
            multi_label: bool) -> float:
    # The main metrics computed directly, as compute_metrics computes them: selection scores every member at every
    # step, and the per-class tables compute_metrics also builds would be most of the time on large sets.
    if metric == "accuracy" and not multi_label:
        return float((probabilities.argmax(axis=1) == targets).mean()) if len(targets) else 0.0
    if metric == "micro_f1" and multi_label:
        predicted, actual = probabilities >= 0.5, targets.astype(bool)
        hits = float((predicted & actual).sum())
        precision = hits / predicted.sum() if predicted.sum() else 0.0
        recall = hits / actual.sum() if actual.sum() else 0.0
        return float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0
    metrics = compute_metrics(targets, to_logits(probabilities, multi_label=multi_label), list(labels),
                              multi_label=multi_label)
    return float(metrics[metric])


def select(probabilities: Sequence[np.ndarray], targets: np.ndarray, labels: Sequence[str], *, metric: str,
           multi_label: bool, method: str = "caruana", size: int = 25) -> Selection:
    """Weights for members whose validation ``probabilities`` are given (one array each, same examples):
    Caruana's selection with replacement over ``size`` steps, the best prefix kept, or ``mean``."""
    started = time.perf_counter()
    alone = [score(p, targets, labels, metric=metric, multi_label=multi_label) for p in probabilities]
    count = len(probabilities)
    if method == "mean":
        mixed = sum(probabilities) / count
        value, loss = score(mixed, targets, labels, metric=metric, multi_label=multi_label)
        return Selection([1.0 / count] * count, [1] * count, count, value, loss, [a[0] for a in alone],
                         [a[1] for a in alone], seconds=time.perf_counter() - started)
    total = np.zeros_like(probabilities[0])
    counts = [0] * count
    trajectory: list[dict[str, Any]] = []
    best_prefix: tuple[tuple[float, float], int, list[int]] | None = None
    for step in range(1, size + 1):
        choice, chosen = None, None
        for index, p in enumerate(probabilities):
            value, loss = score((total + p) / step, targets, labels, metric=metric, multi_label=multi_label)
            if chosen is None or (value, -loss) > chosen:   # a tie keeps the earlier member
                choice, chosen = index, (value, -loss)
        total += probabilities[choice]
        counts[choice] += 1
        trajectory.append({"step": step, "added": choice, "score": chosen[0], "log_loss": -chosen[1]})
        if best_prefix is None or chosen > best_prefix[0]:   # a tie keeps the shorter prefix
            best_prefix = (chosen, step, list(counts))
    (value, negative_loss), steps, kept = best_prefix
    return Selection([c / steps for c in kept], kept, steps, value, -negative_loss, [a[0] for a in alone],
                     [a[1] for a in alone], trajectory, time.perf_counter() - started)


def mix(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of members' probabilities."""
    return sum(w * p for w, p in zip(weights, probabilities, strict=True) if w > 0)


# --- members ---------------------------------------------------------------------------------------------------


def read_members(runs: Sequence[str | os.PathLike]) -> list[Member]:
    """The finished runs ``runs``, checked to fit together: the same task, labels (in order) and multi-label.

    Raises:
        zoo.errors.InvalidInputError: fewer than two runs, one given twice, one not finished (or not a run), or
            one that does not fit the first (named).
    """
    if len(runs) < 2:
        raise InvalidInputError("zoo ensemble combines at least two runs: give two or more RUN folders")
    members, seen = [], {}
    for run in runs:
        run_dir = Path(run)
        record = read_finished_record(run_dir).to_dict()   # finished, finite weights, or one line naming it
        where = run_dir.resolve()
        if where in seen:
            raise InvalidInputError(f"{run}: given twice (as {seen[where]} too); give each run once")
        seen[where] = str(run)
        members.append(Member(run_dir, record))
    first = members[0]
    for member in members[1:]:
        for what, mine, theirs in (("task", member.record.get("task"), first.record.get("task")),
                                   ("labels", member.record.get("labels"), first.record.get("labels")),
                                   ("multi-label", bool(member.record.get("multi_label")),
                                    bool(first.record.get("multi_label")))):
            if mine != theirs:
                shown = (lambda v: ", ".join(v)) if what == "labels" else str
                raise InvalidInputError(f"{member.run_dir}: its {what} ({shown(mine)}) differ from "
                                        f"{first.run_dir}'s ({shown(theirs)}); an ensemble's members share task, "
                                        "labels in the same order, and multi-label")
    return members


def stored_outputs(members: Sequence[Member]) -> Scored:
    """The validation outputs each run stored, checked to score the same examples.

    Raises:
        zoo.errors.InvalidInputError: a run without them, or runs scored on different examples (asking for
            --val).
    """
    outputs = [read_validation_outputs(member.run_dir) for member in members]
    first = outputs[0]
    for member, found in zip(members, outputs, strict=True):
        if found.key != first.key or found.labels != list(member.record["labels"]):
            raise InvalidInputError(f"{member.run_dir}: its validation examples differ from {members[0].run_dir}'s "
                                    "(other data, or a split drawn with another seed); give --val DATA, labelled "
                                    "data none of them trained on, so that every member is scored on the same "
                                    "examples")
        if found.logits.shape != (len(first), len(first.labels)) or not np.isfinite(found.logits).all():
            raise InvalidInputError(f"{member.run_dir}: its stored validation outputs are damaged; give --val DATA "
                                    "so that every member is scored again")
    return Scored([found.logits for found in outputs], first.targets, first.key, "stored")


def validation_examples(val: str, *, task: str, labels: list[str], multi_label: bool) -> list[Example]:
    """The examples of ``--val DATA`` to choose on: its validation split when it has one (a val/ folder, an hf:
    validation split), else all of it (a file, a folder of class folders); never its test split. Labels are
    indices into the members' ``labels``.

    Raises:
        zoo.errors.InvalidInputError: unreadable data, no examples, or labels the members were not trained on.
    """
    data = load_data(val, task=task, val_fraction=0.0, multi_label=multi_label or None)
    unknown = sorted(set(data.label_names) - set(labels))
    if unknown:
        raise InvalidInputError(f"--val {val}: labels the members were not trained on: {', '.join(unknown)}")
    remap = [labels.index(name) for name in data.label_names]
    chosen = data.val or data.train
    if not chosen:
        raise InvalidInputError(f"--val {val}: no examples to choose on (only a test split); give validation data")
    return [Example(ex.input, tuple(remap[i] for i in ex.labels), ex.id) for ex in chosen]


def run_outputs(classifier, examples: Sequence[Example], *, max_seconds: float, device: str,
                precision: str = "fp32", batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(targets, logits) of a loaded classifier on labelled ``examples``, in order, as an evaluation runs it: on a
    GPU in the run's ``precision``, on a CPU in fp32 (as `zoo predict` runs it)."""
    multi_label = bool(classifier.multi_label)
    precision = resolve_precision(precision, device) if device.startswith("cuda") else "fp32"
    dataset = ExampleDataset(examples, classifier, train=False, max_seconds=max_seconds,
                             num_labels=len(classifier.labels), multi_label=multi_label)
    classifier.model.to(device).eval()
    try:
        return collect_outputs(classifier.forward, dataset, batch_size=batch_size, device=device,
                               collate=make_collate(classifier, multi_label),
                               autocast=autocast(precision, device))
    finally:
        classifier.model.to("cpu")


def scored_on(val: str, members: Sequence[Member], families: Mapping[str, Family], *, device: str,
              say: Callable[[str], None]) -> Scored:
    """Every member run once on ``--val DATA``."""
    first = members[0].record
    labels = list(first["labels"])
    examples = validation_examples(val, task=first["task"], labels=labels, multi_label=bool(first["multi_label"]))
    logits, targets = [], None
    for index, member in enumerate(members, start=1):
        say(f"scoring {member.name} on {len(examples)} examples of {val} ({index} of {len(members)})")
        classifier = loading.load_saved(member.run_dir, families)
        targets, found = run_outputs(classifier, examples, max_seconds=member.max_seconds, device=device,
                                     precision=member.precision)
        logits.append(found)
    return Scored(logits, targets, examples_key(examples, labels), val)


def shared_test(members: Sequence[Member]) -> tuple[list[Example], str]:
    """The test split every member was scored on, read again from the first member's request; none (with why)
    when a member had none or they differ.

    A run read its data with a request and a seed (the record keeps both): runs whose data fingerprints are equal
    read the same splits, so the data is read once per fingerprint."""
    by_print: dict[str, Member] = {}
    for member in members:
        sizes = (member.record.get("data") or {}).get("sizes") or {}
        if not member.record.get("request"):
            return [], f"{member.name} records no data request to read a test split from"
        if not sizes.get("test"):
            return [], f"{member.name} has no test split"
        by_print.setdefault((member.record.get("data") or {}).get("fingerprint") or member.name, member)
    keys, test = set(), []
    for member in by_print.values():
        try:
            splits = AdaptRequest(**member.record["request"]).read_data(seed=member.record.get("seed") or 0)
        except (InvalidInputError, TypeError) as exc:
            return [], f"{member.name}'s data could not be read again ({str(exc).splitlines()[0]})"
        keys.add(examples_key(splits.test, splits.label_names))
        test = splits.test
    if len(keys) != 1 or not test:
        return [], "the members' test splits differ"
    return test, ""


# --- the ensemble run ------------------------------------------------------------------------------------------


def saved_model_files(member: Member) -> list[str]:
    """The files of a member run's saved model (paths relative to it): the run's files but its card, plots and
    "How it decides" pictures.

    Raises:
        zoo.errors.InvalidInputError: the record lists no files, or one of them is missing.
    """
    files = member.record.get("files")
    if not files:
        raise InvalidInputError(f"{member.run_dir}: its record lists no saved model files; the run is damaged")
    skipped = {*_NOT_MODEL, *how_it_decides_pictures(member.record)}
    chosen = [name for name in files if name not in skipped]
    for name in chosen:
        if not (member.run_dir / name).is_file():
            raise InvalidInputError(f"{member.run_dir}: {name} is missing from the run folder; the run is damaged")
    return chosen


def link_or_copy(source: Path, destination: Path) -> None:
    """``destination`` as a hard link to ``source`` (no space used), or a copy where the file system refuses."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _versions() -> dict[str, str]:
    import platform

    found = {"python": platform.python_version()}
    for name in ("zoo-hub", "torch", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def ensemble_name(backbones: Sequence[str]) -> str:
    """What the history and the card call the ensemble: ``ensemble(a+b)``, a backbone added k times ``a×k``."""
    counts: dict[str, int] = {}
    for name in backbones:
        counts[name] = counts.get(name, 0) + 1
    return "ensemble(" + "+".join(name if n == 1 else f"{name}×{n}" for name, n in counts.items()) + ")"


def _clear(run_dir: Path) -> None:
    """Remove what this ensemble wrote into its folder (the claim's own state stays for the claim to drop)."""
    for path in run_dir.iterdir():
        if path.name == STATE_DIR:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def build_ensemble(runs: Sequence[str | os.PathLike], *, families: Mapping[str, Family], method: str = "caruana",
                   size: int = 25, val: str | None = None, output: str | os.PathLike | None = None,
                   device: str = "cpu", say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Choose the weights of ``runs`` and write the ensemble's run folder; returns its record (finished).

    The options are checked by the caller (:func:`zoo.api.ensemble`). Nothing is left in the folder when any
    step fails.

    Raises:
        zoo.errors.InvalidInputError: runs that do not fit together, outputs that do not match (without --val),
            unreadable --val data, an output folder that is taken.
    """
    say = say or (lambda message: None)
    started_wall = time.perf_counter()
    started_at = datetime.now(UTC).isoformat()
    members = read_members(runs)
    first = members[0].record
    task, labels, multi_label = first["task"], list(first["labels"]), bool(first["multi_label"])
    metric = get_task(task).main_metric(multi_label)
    claim = claim_new(output, default=default_run_dir("ensemble", str((first.get("data") or {}).get("source")
                                                                        or "runs")))
    run_dir = claim.run_dir
    try:
        record = _build(members, run_dir, families=families, method=method, size=size, val=val, device=device,
                        metric=metric, task=task, labels=labels, multi_label=multi_label, say=say,
                        started_at=started_at, started_wall=started_wall)
    except BaseException:
        _clear(run_dir)
        raise
    finally:
        claim.release()
    return record


def _build(members: list[Member], run_dir: Path, *, families, method: str, size: int, val: str | None, device: str,
           metric: str, task: str, labels: list[str], multi_label: bool, say: Callable[[str], None],
           started_at: str, started_wall: float) -> dict[str, Any]:
    import torch

    first = members[0].record
    scored = scored_on(val, members, families, device=device, say=say) if val else stored_outputs(members)
    examples = len(scored.targets)
    say(f"choosing among {len(members)} members on {examples} validation examples ({method})")
    probabilities = [to_probabilities(logits, multi_label=multi_label) for logits in scored.logits]
    selection = select(probabilities, scored.targets, labels, metric=metric, multi_label=multi_label, method=method,
                       size=size)
    warnings = []
    if method == "caruana" and examples < MIN_VAL_PER_MEMBER * len(members):
        warnings.append(f"validation has {examples} examples to choose among {len(members)} members (fewer than "
                        f"{MIN_VAL_PER_MEMBER} per member): the weights may fit its noise; give a larger --val")
    kept = [index for index, weight in enumerate(selection.weights) if weight > 0]
    if len(kept) == 1:
        warnings.append(f"the selection kept {members[kept[0]].name} alone: no mix of members scored higher on "
                        "validation")

    entries, files = _write_members([members[i] for i in kept], [selection.weights[i] for i in kept], run_dir,
                                    EnsembleManifest(task, labels, multi_label, method), say=say)

    # The folder loads as one classifier, on its own: scored on the shared test split when there is one.
    say("loading the ensemble")
    ensemble = loading.load_saved(run_dir, families)
    precisions = {entry.precision for entry in entries}
    precision = precisions.pop() if len(precisions) == 1 else "fp32"
    max_seconds = max(entry.max_seconds for entry in entries)
    test_examples, no_test = shared_test([members[i] for i in kept])
    test_metrics = None
    if test_examples:
        say(f"scoring the ensemble on the {len(test_examples)} test examples")
        targets, logits = run_outputs(ensemble, test_examples, max_seconds=max_seconds, device=device,
                                      precision=precision)
        test_metrics = compute_metrics(targets, logits, labels, multi_label=multi_label)

    mixed = mix(probabilities, selection.weights)
    combined = to_logits(mixed, multi_label=multi_label).astype(np.float32)
    best_metrics = compute_metrics(scored.targets, combined, labels, multi_label=multi_label)
    best_index = max(range(len(members)), key=lambda i: (selection.member_scores[i], -selection.member_losses[i]))
    backbones = [members[i].backbone for i in kept]
    record: dict[str, Any] = {
        VERSION_KEY: RECORD_VERSION, "status": "running", "run_dir": str(run_dir.resolve()),
        "backbone": {"name": ensemble_name(backbones), "family": "ensemble", "source": ensemble_name(backbones),
                     "commit": None, "tasks": [task],
                     "license": _common([(members[i].record.get("backbone") or {}).get("license") for i in kept])
                     or "unknown",
                     "languages": sorted({lang for i in kept
                                          for lang in (members[i].record.get("backbone") or {}).get("languages")
                                          or []})},
        "family_library": "zoo", "task": task, "strategy": "ensemble",
        "strategy_reason": _reason(method, selection, size, examples, metric),
        "labels": labels, "multi_label": multi_label, "data": first.get("data"),
        "ensemble": {
            "method": method, "size": size if method == "caruana" else len(members), "steps": selection.steps,
            "metric": metric,
            "validation": {"source": scored.source, "examples": examples, "key": scored.key},
            "score": selection.score, "log_loss": selection.log_loss,
            "best_member": {"run": members[best_index].name, "backbone": members[best_index].backbone,
                            "score": selection.member_scores[best_index]},
            "gain": selection.score - selection.member_scores[best_index],
            "members": [_member_entry(member, index, selection, metric, kept, entries)
                        for index, member in enumerate(members)],
            "trajectory": [{**step, "added": members[step["added"]].name} for step in selection.trajectory],
            "selection_s": round(selection.seconds, 3),
            "test": None if test_metrics else no_test,
            "warnings": warnings,
        },
        "config": {"max_seconds": max_seconds, "precision": precision, "method": method,
                   **({"size": size} if method == "caruana" else {})},
        "precision_used": precision,
        "versions": _versions(), "hardware": fingerprint(torch.device(device)),
        "started_at": started_at, "finished_at": None, "wall_s": None,
        "metrics": {"epochs": [], "best": best_metrics, "test": test_metrics, "selection_metric": metric},
        "best_epoch": None,
    }
    record[VALIDATION_OUTPUTS] = write_validation_outputs(run_dir, logits=combined, targets=scored.targets,
                                                          label_names=labels, key=scored.key)
    record["wall_s"] = round(time.perf_counter() - started_wall, 2)
    files += write_plots(run_dir, record)
    files.append(write_model_card(run_dir, record))
    record["files"] = sorted(set(files))
    record["finished_at"] = datetime.now(UTC).isoformat()
    record["status"] = "finished"
    write_record(run_dir, record)
    return record


def _write_members(kept: Sequence[Member], weights: Sequence[float], run_dir: Path, manifest: EnsembleManifest, *,
                   say: Callable[[str], None]) -> tuple[list[ManifestMember], list[str]]:
    """Each chosen member's saved model copied into ``members/NN-NAME/``, and the manifest naming them with their
    weights; returns the manifest's entries and the files written (relative to the folder)."""
    files = []
    for place, (member, weight) in enumerate(zip(kept, weights, strict=True)):
        folder = member_folder_name(place, member.name)
        say(f"copying {member.name} into {folder}")
        for name in saved_model_files(member):
            link_or_copy(member.run_dir / name, run_dir / folder / name)
            files.append(f"{folder}/{name}")
        manifest.members.append(ManifestMember(dir=folder, weight=weight, run=member.name, backbone=member.backbone,
                                               family=member.family, max_seconds=member.max_seconds,
                                               precision=member.precision))
    write_manifest(run_dir, manifest)
    check_finite_weights(run_dir)
    return manifest.members, [*files, MANIFEST]


def _member_entry(member: Member, index: int, selection: Selection, metric: str, kept: list[int],
                  entries: list[ManifestMember]) -> dict[str, Any]:
    test = ((member.record.get("metrics") or {}).get("test") or {}).get(metric)
    return {"run": str(member.run_dir.resolve()), "name": member.name, "backbone": member.backbone,
            "family": member.family, "weight": selection.weights[index], "count": selection.counts[index],
            "validation": {metric: selection.member_scores[index], "log_loss": selection.member_losses[index]},
            "test": {metric: test} if test is not None else None,
            "dir": entries[kept.index(index)].dir if index in kept else None}


def _reason(method: str, selection: Selection, size: int, examples: int, metric: str) -> str:
    if method == "mean":
        return f"every member weighted equally (mean of probabilities); validation {metric} on {examples} examples"
    return (f"Caruana ensemble selection with replacement over {size} steps on {examples} validation examples by "
            f"{metric} (ties to the lower log loss); the best prefix kept: "
            f"{selection.steps} step{'s' if selection.steps != 1 else ''}")


def _common(values: Sequence[Any]) -> Any:
    """The one value every member has, else None."""
    return values[0] if values and all(value == values[0] for value in values) else None
