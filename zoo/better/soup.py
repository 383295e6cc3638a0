"""`zoo soup`: one model from several finished runs of the same backbone, by averaging their weights (a model soup,
:mod:`zoo.engine.soup`), chosen on held-out data.

Which runs may be averaged: finished runs of one backbone, read at one commit, for the same task with the same
labels in the same order, whose saved models have the same tensors (names and shapes), the same input size and the
same head pooling. Their strategies may differ: a LoRA run is saved with its adapters merged into the weights, and a
linear run is the pretrained backbone with a new head, so averaging it with fine-tuned runs moves part of the way
back towards the pretrained weights (as WiSE-FT does); the greedy soup keeps that only if held-out data says so.

The held-out data is ``val`` (labelled data, read as `zoo ensemble` reads it: its validation split, else all of it,
never its test split), or the runs' own validation split when every run was validated on the same examples (their
stored validation outputs have one key, :mod:`zoo.runs.outputs`). Runs that drew different validation splits (runs
recorded before the split had a seed of its own drew it with their training seed) hold one another's validation
examples in their training data: those need ``val``.

The soup is a run folder like any other: the native model, ``zoo_run.json`` (``"soup"``: the method, every
ingredient with its held-out score and whether it was kept), the validation outputs, plots and a model card.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo import checks
from zoo.better.ensemble import validation_examples
from zoo.data.base import Example
from zoo.engine.metrics import compute_metrics
from zoo.engine.rundir import claim_new, default_run_dir
from zoo.engine.soup import METHODS, make_soup
from zoo.errors import InvalidInputError, NonFiniteWeightsError, disk_error
from zoo.hardware import check_device, fingerprint
from zoo.loading import load_saved
from zoo.precision import PRECISIONS, autocast, resolve_precision
from zoo.runs.card import write_model_card, write_plots
from zoo.runs.outputs import RECORD_KEY as VALIDATION_OUTPUTS
from zoo.runs.outputs import examples_key, read_validation_outputs, write_validation_outputs
from zoo.runs.record import (
    RECORD_VERSION,
    VERSION_KEY,
    check_finite_weights,
    has_record,
    read_finished_record,
    record_failure,
    write_record,
)
from zoo.tasks import get_task

# The request fields that decide how a run's data is read: runs that agree on them have the same test split.
_READING = ("data", "test", "input_col", "label_col", "label_sep", "multi_label", "skip_bad", "task")


@dataclass
class Ingredient:
    """A finished run offered to the soup."""

    run_dir: Path
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.run_dir)


@dataclass
class HeldOut:
    """Labelled examples prepared once (batched by a model of the soup's family) and scored by every trial."""

    examples: list[Example]
    source: str                     # --val DATA, or "validation split" (the runs')
    batches: list[Any]
    device: str
    precision: str

    @classmethod
    def prepare(cls, examples: list[Example], source: str, classifier, *, max_seconds: float, batch_size: int,
                device: str, precision: str) -> HeldOut:
        from torch.utils.data import DataLoader

        from zoo.engine.batches import ExampleDataset, make_collate

        dataset = ExampleDataset(examples, classifier, train=False, max_seconds=max_seconds,
                                 num_labels=len(classifier.labels), multi_label=classifier.multi_label)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            collate_fn=make_collate(classifier, classifier.multi_label))
        return cls(examples, source, list(loader), device, precision)

    def outputs(self, classifier) -> tuple[Any, Any]:
        """(targets, float32 logits) of ``classifier`` on the examples, in order."""
        import numpy as np
        import torch

        from zoo.engine.batches import run_forward, to_device

        classifier.model.to(self.device).eval()
        context = autocast(self.precision, self.device)
        logits, targets = [], []
        with torch.inference_mode():
            for inputs, target in self.batches:
                with context():
                    out = run_forward(classifier.forward, to_device(inputs, self.device))
                logits.append(out.float().cpu().numpy())
                targets.append(target.numpy())
        return np.concatenate(targets), np.concatenate(logits)


def soup_runs(runs: Sequence[str | os.PathLike], *, families, method: str = "greedy", val: str | None = None,
              output: str | os.PathLike | None = None, device: str = "auto", precision: str = "auto",
              progress: Callable[[str], None] | None = None,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Average the weights of ``runs`` into a new run folder (``output``, default ``runs/<data>-<backbone>-soup``)
    and return its finished record. Every check is made, and ``val`` read, before anything is written.

    ``on_record`` is called with the record when the soup starts ("running") and if it fails ("failed"); the
    caller records the finished one.

    Raises:
        zoo.errors.InvalidInputError: fewer than two runs, one that is unfinished, an ensemble or unlike the first
            (backbone, commit, task, labels, saved architecture), validation splits that differ without ``val``,
            unreadable ``val``, a bad option or output folder.
    """
    say = progress or (lambda text: None)
    checks.choice("--method", method, METHODS)
    checks.choice("--precision", precision, PRECISIONS)
    checks.text("--val", val)
    checks.text("--output", None if output is None else str(output))
    device = check_device("--device", device)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(precision, device)
    ingredients = check_ingredients(runs, families=families, val=val)
    first = ingredients[0]
    backbone = first.record["backbone"]["name"]
    default = default_run_dir(backbone, first.record["request"]["data"])
    claim = claim_new(output, default=default.with_name(default.name + "-soup"))
    run_dir = claim.run_dir
    started, started_at = time.perf_counter(), datetime.now(UTC).isoformat()
    try:
        template = load_saved(first.run_dir, families)
        config = first.record.get("config") or {}
        held_out, test = _held_out(ingredients, val, template, config=config, device=device, precision=precision,
                                   say=say)
        record = _record(ingredients, run_dir, method=method, val=val, device=device, started_at=started_at)
        write_record(run_dir, record)
        if on_record is not None:
            on_record(record)
        try:
            return _make(ingredients, template, held_out, test, record, run_dir, method=method, families=families,
                         started=started, say=say)
        except BaseException as exc:
            if isinstance(exc, Exception):
                exc = disk_error(exc, run_dir)
            record_failure(run_dir, record, exc, on_record)   # never resumed: made again
            raise
    finally:
        claim.release()


def check_ingredients(runs: Sequence[str | os.PathLike], *, families, val: str | None) -> list[Ingredient]:
    """The runs as ingredients, each checked against the first (the one-line refusals of the module docstring)."""
    if len(runs) < 2:
        raise InvalidInputError(f"zoo soup averages at least two RUNs, got {len(runs)}; give the run folders of "
                                "one backbone to average")
    seen: dict[Path, str] = {}
    ingredients = []
    for given in runs:
        checks.text("RUN", str(given), allow_none=False)
        path = Path(given)
        if path.resolve() in seen:
            raise InvalidInputError(f"{given}: given twice (as {seen[path.resolve()]} too); give each run once")
        seen[path.resolve()] = str(given)
        if not has_record(path):
            raise InvalidInputError(f"{given}: not a zoo run directory (no zoo_run.json)")
        ingredients.append(Ingredient(path, read_finished_record(path).to_dict()))
    first = ingredients[0]
    shapes = _saved_shapes(first.run_dir)
    for ingredient in ingredients:
        _check_kind(ingredient)
    for ingredient in ingredients[1:]:
        _check_alike(ingredient, first)
        _check_architecture(ingredient, first, shapes)
    if val is None:
        _check_same_validation(ingredients)
    for ingredient in ingredients:   # a folder no loaded family reads fails now, not after the first load
        if not any(family.can_load_saved(ingredient.run_dir) for family in families.values()):
            raise InvalidInputError(f"{ingredient.name}: no loaded family recognises its saved model (family "
                                    f"{ingredient.record['backbone']['family']!r}); install its plugin")
    return ingredients


def _check_kind(ingredient: Ingredient) -> None:
    record = ingredient.record
    if record.get("ensemble") is not None:
        raise InvalidInputError(f"{ingredient.name}: an ensemble of runs, not one model; a soup averages the weights "
                                "of single runs: give its members instead")
    if not record.get("backbone") or not record.get("labels"):
        raise InvalidInputError(f"{ingredient.name}: its record names no backbone or labels; a soup averages runs "
                                "made by zoo adapt (or zoo soup)")


def _check_alike(ingredient: Ingredient, first: Ingredient) -> None:
    """Refuse a run that differs from the first in what makes weights comparable, naming both."""
    ours, theirs = ingredient.record, first.record
    name, reference = ingredient.name, first.name
    if ours["backbone"]["name"] != theirs["backbone"]["name"]:
        raise InvalidInputError(f"{name}: fine-tuned from {ours['backbone']['name']}, not {theirs['backbone']['name']}"
                                f" as {reference} is; a soup averages runs of one backbone")
    if ours["backbone"].get("commit") != theirs["backbone"].get("commit"):
        commits = _short(ours["backbone"].get("commit")), _short(theirs["backbone"].get("commit"))
        raise InvalidInputError(f"{name}: fine-tuned from {ours['backbone']['name']} at commit {commits[0]}, not "
                                f"{commits[1]} as {reference} is; a soup averages runs from the same pretrained "
                                "weights")
    if ours.get("task") != theirs.get("task"):
        raise InvalidInputError(f"{name}: a {ours.get('task')} run, not {theirs.get('task')} as {reference} is")
    if list(ours["labels"]) != list(theirs["labels"]):
        same_set = sorted(ours["labels"]) == sorted(theirs["labels"])
        why = "the same labels in another order" if same_set else f"labels {', '.join(ours['labels'][:5])}"
        raise InvalidInputError(f"{name}: {why}, not {', '.join(theirs['labels'][:5])} as {reference}; a soup "
                                "averages heads with the same labels in the same order")
    if bool(ours.get("multi_label")) != bool(theirs.get("multi_label")):
        kinds = {True: "multi-label", False: "single-label"}
        raise InvalidInputError(f"{name}: {kinds[bool(ours.get('multi_label'))]}, not "
                                f"{kinds[bool(theirs.get('multi_label'))]} as {reference}")
    if ours.get("image_size") != theirs.get("image_size"):
        raise InvalidInputError(f"{name}: trained at image size {ours.get('image_size')}, not "
                                f"{theirs.get('image_size')} as {reference}; a soup averages models of one input size")
    pooling, reference_pooling = _pooling(ours), _pooling(theirs)
    if pooling != reference_pooling:
        raise InvalidInputError(f"{name}: its head reads the {pooling} pooling, not the {reference_pooling} one as "
                                f"{reference}'s; a soup averages models that compute the same way")


def _pooling(record: dict[str, Any]) -> str:
    return (record.get("head_fit") or {}).get("pooling") or "native"


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "none (a local folder)"


def _saved_shapes(run_dir: Path) -> dict[str, tuple[int, ...]]:
    """The saved model's tensors (name -> shape), from the safetensors headers: no weights are read."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(Path(run_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
                shapes[name] = tuple(weights.get_slice(name).get_shape())
    return shapes


def _check_architecture(ingredient: Ingredient, first: Ingredient, shapes: dict[str, tuple[int, ...]]) -> None:
    ours = _saved_shapes(ingredient.run_dir)
    if ours == shapes:
        return
    missing, extra = sorted(set(shapes) - set(ours)), sorted(set(ours) - set(shapes))
    if missing or extra:
        what = (f"lacks {missing[0]}" if missing else f"has {extra[0]}") + " (of " + \
            f"{len(missing) + len(extra)} tensors that differ)"
    else:
        name = next(name for name in shapes if shapes[name] != ours[name])
        what = f"holds {name} as {list(ours[name])}, not {list(shapes[name])}"
    raise InvalidInputError(f"{ingredient.name}: its saved model {what} compared with {first.name}'s; a soup "
                            "averages models of one architecture")


def _check_same_validation(ingredients: list[Ingredient]) -> None:
    """Without --val, the runs' own validation split scores the soup: only if every run has the same one."""
    first = ingredients[0]
    key = (first.record.get(VALIDATION_OUTPUTS) or {}).get("key")
    for ingredient in ingredients:
        section = ingredient.record.get(VALIDATION_OUTPUTS) or {}
        if not section.get("key"):
            raise InvalidInputError(f"{ingredient.name}: the run kept no validation outputs (made before they were "
                                    "kept); give --val DATA, labelled data none of the runs trained on, to score "
                                    "the soup on")
        if section["key"] != key:
            raise InvalidInputError(f"{ingredient.name} and {first.name} were validated on different examples "
                                    "(other data, or a split drawn another way); give --val DATA, labelled data none "
                                    "of the runs trained on, to score the soup on")


def _held_out(ingredients: list[Ingredient], val: str | None, template, *, config: dict[str, Any], device: str,
              precision: str, say: Callable[[str], None]) -> tuple[HeldOut, HeldOut | None]:
    """The held-out examples the soup is chosen on, and the runs' test split when they share one (else None)."""
    from zoo.engine.run import AdaptRequest

    first = ingredients[0]
    record = first.record
    options = {"max_seconds": config.get("max_seconds", 10.0), "batch_size": config.get("eval_batch_size", 64),
               "device": device, "precision": precision}
    splits = None
    try:
        splits = AdaptRequest(**record["request"]).read_data(seed=record.get("seed", 0))
    except (InvalidInputError, TypeError, KeyError) as exc:
        if val is None:
            raise InvalidInputError(f"{first.name}: its data cannot be read again ({exc}); give --val DATA to score "
                                    "the soup on") from None
        say(f"the runs' data cannot be read again ({exc}): no test split is scored")
    if val is not None:   # read as zoo ensemble reads it: its validation split, else all of it; never its test split
        examples = validation_examples(val, task=record["task"], labels=list(record["labels"]),
                                       multi_label=bool(record.get("multi_label")))
        held_out = HeldOut.prepare(examples, val, template, **options)
    else:
        if examples_key(splits.val, record["labels"]) != record[VALIDATION_OUTPUTS]["key"]:
            raise InvalidInputError(f"{record['request']['data']}: the data of {first.name} changed since it was "
                                    "trained (its validation split is not the one scored then); give --val DATA")
        held_out = HeldOut.prepare(splits.val, "validation split", template, **options)
    say(f"held-out data: {len(held_out.examples)} examples ({held_out.source})")
    test = None
    reading = {key: record["request"].get(key) for key in _READING}
    if splits is not None and splits.test and all(
            {key: ingredient.record["request"].get(key) for key in _READING} == reading for ingredient in ingredients):
        test = HeldOut.prepare(splits.test, "test split", template, **options)
    return held_out, test


def _record(ingredients: list[Ingredient], run_dir: Path, *, method: str, val: str | None, device: str,
            started_at: str) -> dict[str, Any]:
    """The soup's run record while it is made: the first ingredient's backbone, data, request and configuration
    (how its data is read again, by `zoo export` say), and what makes it a soup."""
    first = ingredients[0].record
    command = ["zoo", "soup", *(ingredient.name for ingredient in ingredients), "--method", method]
    if val is not None:
        command += ["--val", val]
    record = {
        VERSION_KEY: RECORD_VERSION, "status": "running", "run_dir": str(run_dir.resolve()),
        **{key: first.get(key) for key in ("backbone", "family_library", "task", "labels", "multi_label", "data",
                                           "request", "config", "config_requested", "seed", "precision_used",
                                           "image_size", "versions")},
        "strategy": "soup",
        "strategy_reason": f"{method} soup of {len(ingredients)} runs of {first['backbone']['name']}",
        "choices": None, "command": command,
        "hardware": _hardware(device),
        "started_at": started_at, "finished_at": None, "wall_s": None, "metrics": None, "best_epoch": None,
        "resumed": 0,
    }
    fit = first.get("head_fit") or {}
    if fit.get("native") is False:   # how the saved head pools, for the card's loading note
        record["head_fit"] = {key: fit[key] for key in ("pooling", "native", "load_note") if key in fit}
    return record


def _hardware(device: str) -> dict[str, Any]:
    import torch

    return fingerprint(torch.device(device), processes=1)


def _make(ingredients: list[Ingredient], template, held_out: HeldOut, test: HeldOut | None,
          record: dict[str, Any], run_dir: Path, *, method: str, families, started: float,
          say: Callable[[str], None]) -> dict[str, Any]:
    """Rank, average, score, save: the soup's work once its record says "running"."""
    labels, multi_label = list(record["labels"]), bool(record["multi_label"])
    metric = get_task(record["task"]).main_metric(multi_label)
    by_name = {ingredient.name: ingredient for ingredient in ingredients}

    def score(targets, logits) -> float:
        return compute_metrics(targets, logits, labels, multi_label=multi_label)[metric]

    # Ranked by the stored validation outputs (no model runs) or, with --val, by running each on it.
    scores: dict[str, float] = {}
    for index, ingredient in enumerate(ingredients, start=1):
        if held_out.source == "validation split":
            stored = read_validation_outputs(ingredient.run_dir)
            scores[ingredient.name] = score(stored.targets, stored.logits)
        else:
            scores[ingredient.name] = score(*held_out.outputs(load_saved(ingredient.run_dir, families)))
        say(f"[{index}/{len(ingredients)}] {ingredient.name}: {metric} {scores[ingredient.name]:.4g}")

    def load(name: str) -> dict[str, Any]:
        return load_saved(by_name[name].run_dir, families).model.state_dict()

    def evaluate(tensors: dict[str, Any]) -> tuple[float, Any]:
        template.model.load_state_dict(tensors)
        outputs = held_out.outputs(template)
        return score(*outputs), outputs

    soup = make_soup(scores, load=load, evaluate=evaluate, method=method, metric=metric, say=say)
    template.model.load_state_dict(soup.tensors)   # the last trial may have been refused
    targets, logits = soup.outputs
    best_metrics = compute_metrics(targets, logits, labels, multi_label=multi_label)
    test_metrics = compute_metrics(*test.outputs(template), labels, multi_label=multi_label) if test else None

    template.model.to("cpu").eval()
    saved = template.save(run_dir)
    try:   # a soup with NaN or infinite weights is never "finished"
        check_finite_weights(run_dir)
    except NonFiniteWeightsError:
        for path in saved:
            Path(path).unlink(missing_ok=True)
        raise
    files = [str(Path(p).relative_to(run_dir)) for p in saved]
    record[VALIDATION_OUTPUTS] = write_validation_outputs(run_dir, logits=logits, targets=targets,
                                                           examples=held_out.examples, label_names=labels)
    strategies = {ingredient.name: ingredient.record.get("strategy") for ingredient in ingredients}
    seeds = {ingredient.name: ingredient.record.get("seed") for ingredient in ingredients}
    section = soup.to_record()
    for entry in section["ingredients"]:
        entry.update(strategy=strategies[entry["name"]], seed=seeds[entry["name"]],
                     run_dir=str(by_name[entry["name"]].run_dir.resolve()))
    section["held_out"] = {"data": held_out.source, "examples": len(held_out.examples),
                           "key": record[VALIDATION_OUTPUTS]["key"], "precision": held_out.precision}
    record["soup"] = {"kind": "runs", **section}
    record["metrics"] = {"epochs": [], "best": best_metrics, "test": test_metrics, "selection_metric": metric,
                         "stopped_early": False, "skipped_steps": 0}
    record["wall_s"] = round(time.perf_counter() - started, 2)
    files += write_plots(run_dir, record)
    files.append(write_model_card(run_dir, record))
    record["files"] = sorted(set(files))
    record["finished_at"] = datetime.now(UTC).isoformat()
    record["status"] = "finished"
    write_record(run_dir, record)
    gain = soup.score - soup.best_ingredient
    say(f"{method} soup of {len(soup.kept)} of {len(ingredients)}: {metric} {soup.score:.4g} ({gain:+.4g} against "
        "the best ingredient)")
    return record
