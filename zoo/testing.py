"""The family contract as one call, for a plugin's own tests: ``zoo.testing.check_family(family, spec)``.

zoo runs these checks on every first-party family (tests/test_families.py); a plugin author runs the same in their
CI, on a tiny instance of their family::

    from zoo.testing import check_family

    def test_my_family_keeps_the_contract():
        check_family(MyFamily(), BackboneSpec.from_toml({...}))   # raises with a report naming each failed check

Each check loads the backbone through ``Family.load_classifier`` (weights included: point the spec at a small
model on disk, ``local-dir:PATH``, or at a local Hub-compatible server) and asserts one part of what the core relies
on (:data:`CHECKS`). Nothing here is imported by zoo itself; it imports torch and the engine when called.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.data.base import DataSplits, Example
from zoo.engine.config import AdaptConfig
from zoo.errors import PluginError
from zoo.explain.attribute import COMPLETENESS_LIMIT, explain_example
from zoo.export.graph import to_onnx, trace_batch
from zoo.export.runtime import open_session, ort_forward
from zoo.family import Family, input_shapes
from zoo.tasks import get_task

LABELS = ("alpha", "beta", "gamma")
# What each check asserts, in the order they run.
CHECKS: dict[str, str] = {
    "load": "load_classifier gives a classifier for the labels and the task",
    "outputs": "preprocess, collate, forward and features give finite (batch, labels) logits and (batch, dim) "
               "features",
    "parameters": "the head's parameters exist; parameter_groups cover every parameter once, in two groups or more",
    "lora_targets": "lora_targets names modules of the model, none inside the head",
    "augment": "preprocess(train=True) works under every augmentation preset, giving the inputs eval gives (the "
               "same values where preprocess_augments is False)",
    "head_replay": "head_logits(head_inputs(batch)) equals forward(batch)",
    "linear_heads": "every linear_heads() entry writes the affine map it describes, and the model saved and loaded "
                    "again computes it",
    "save_load": "save writes safetensors weights only; can_load_saved recognises the folder and load_saved gives "
                 "the same labels and logits",
    "batch_independence": "through the core's batching, forward, head_inputs and features of an example are the "
                          "same alone as in a batch of mixed lengths",
    "padding": "items that share a batch key score the same padded together as alone",
    "strategies": "the linear, lora and full strategies each take one optimizer step that changes the trainable "
                  "parameters, and the adapted model still classifies",
    "export": "export_graph traces to ONNX whose logits (onnxruntime, any batch) equal forward's; int8_method names "
              "dynamic or static with a reason; export_files writes no weights, and load_preprocessing (where the "
              "family has it) prepares the same model inputs from them",
    "attribution_space": "attribution_space (where the family implements it) gives units shaped as the attributed "
                         "input, each unit with a name and a span and covering part of it, a baseline of the input's "
                         "shape and a view to draw on; integrated gradients' completeness error on it is reported",
}
AUGMENT_PRESETS = ("none", "light", "strong")
STRATEGIES = ("linear", "lora", "full")


@dataclass
class CheckResult:
    """The outcome of one check."""

    name: str
    status: str            # passed | failed | skipped
    detail: str = ""       # why it failed (the assertion's message), why it was skipped, or what a pass measured


@dataclass
class ContractReport:
    """Every check run against one family and backbone."""

    family: str
    backbone: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(result.status != "failed" for result in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [result for result in self.results if result.status == "failed"]

    def __str__(self) -> str:
        lines = [f"family {self.family!r} on backbone {self.backbone!r}: "
                 f"{len(self.failed)} of {len(self.results)} checks failed"]
        for result in self.results:
            lines.append(f"  {result.status} {result.name}: {CHECKS[result.name]}")
            lines.extend(f"          {line}" for line in result.detail.splitlines())
        return "\n".join(lines)


class ContractViolation(AssertionError):
    """A family broke the contract; ``report`` says which checks failed and why.

    An AssertionError rather than a :class:`zoo.errors.ZooError`: it is raised in a plugin's tests, never at run
    time, and test runners show it as the failed assertion it is.
    """

    def __init__(self, report: ContractReport) -> None:
        self.report = report
        super().__init__(str(report))


def example_inputs(task: str, count: int = 4) -> list[Any]:
    """Raw examples of ``task`` of growing size (images of more rows, longer texts and clips): what the checks
    feed a family when none are given (:meth:`zoo.tasks.Task.example_inputs`)."""
    return get_task(task).example_inputs(count)


def check_family(family: Any, spec: Any, *, task: str | None = None, examples: Sequence[Any] | None = None,
                 labels: Sequence[str] = LABELS, checks: Sequence[str] | None = None,
                 raise_on_failure: bool = True) -> ContractReport:
    """Run the contract checks (:data:`CHECKS`) of ``family`` on the backbone ``spec``.

    Args:
        family: a :class:`zoo.family.Family` instance.
        spec: a :class:`zoo.registry.BackboneSpec` the family loads, with weights, quickly (a tiny model).
        task: the task to check; default the spec's first.
        examples: at least four raw inputs of the task (what ``preprocess`` takes), of different sizes where
            inputs have a length; default :func:`example_inputs`.
        labels: the label names of the fresh head.
        checks: the names of the checks to run; default all.
        raise_on_failure: raise :class:`ContractViolation` when a check fails, rather than only report it.

    Returns:
        The report: each check passed, failed (with the reason) or skipped (with the reason).

    Raises:
        ContractViolation: a check failed (unless ``raise_on_failure=False``).
        ValueError: an unknown check name, or fewer than four examples.
    """
    task = task or spec.tasks[0]
    examples = list(examples) if examples is not None else example_inputs(task)
    if len(examples) < 4:
        raise ValueError("give at least four examples, of different sizes where inputs have a length")
    unknown = sorted(set(checks or ()) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    context = _Context(family, spec, task, list(labels), examples)
    report = ContractReport(getattr(family, "name", type(family).__name__), spec.name)
    with tempfile.TemporaryDirectory(prefix="zoo-contract-") as tmp:
        context.tmp = Path(tmp)
        for name in [n for n in CHECKS if checks is None or n in checks]:
            report.results.append(context.run(name))
    if raise_on_failure and not report.ok:
        raise ContractViolation(report)
    return report


# --- the checks ---------------------------------------------------------------------------------------------------


class _Skip(Exception):
    """A check that does not apply to this family (the reason is the message)."""


@dataclass
class _Context:
    family: Any
    spec: Any
    task: str
    labels: list[str]
    examples: list[Any]
    tmp: Path = Path()

    def run(self, name: str) -> CheckResult:
        check: Callable[[_Context], str | None] = globals()[f"_check_{name}"]
        try:
            measured = check(self)
        except _Skip as skip:
            return CheckResult(name, "skipped", str(skip))
        except Exception as exc:  # an assertion, or the family raising: either way the check failed
            where = traceback.extract_tb(exc.__traceback__)[-1]
            detail = str(exc).strip() or type(exc).__name__
            if not isinstance(exc, AssertionError):
                detail = f"{type(exc).__name__}: {detail} (at {Path(where.filename).name}:{where.lineno})"
            return CheckResult(name, "failed", detail)
        return CheckResult(name, "passed", measured or "")

    def load(self):
        return self.family.load_classifier(self.spec, task=self.task, labels=self.labels)

    def batch(self, classifier, *, first_train: bool = False):
        """The first three examples preprocessed (the first with training augmentation if asked) and collated."""
        items = [classifier.preprocess(x, train=first_train and i == 0) for i, x in enumerate(self.examples[:3])]
        return classifier.collate(items)

    def mixed(self) -> list[Any]:
        """Examples of different lengths, the longest neither first nor last."""
        return [self.examples[i] for i in (2, 0, 3, 1)]


def _check_load(ctx: _Context) -> None:
    clf = ctx.load()
    assert clf.labels == ctx.labels, f"labels {clf.labels!r}, expected {ctx.labels!r}"
    assert clf.task == ctx.task, f"task {clf.task!r}, expected {ctx.task!r}"
    assert not clf.multi_label, "a classifier loaded with multi_label=False says multi_label"


def _check_outputs(ctx: _Context) -> None:
    import torch

    clf = ctx.load()
    batch = ctx.batch(clf, first_train=True)
    clf.model.eval()
    with torch.no_grad():
        logits = clf.forward(batch)
        features = clf.features(batch)
    n = len(ctx.labels)
    assert logits.shape == (3, n), f"forward gave logits of shape {tuple(logits.shape)}, expected (3, {n})"
    assert torch.isfinite(logits).all(), "forward gave non-finite logits"
    assert features.ndim == 2 and features.shape[0] == 3, \
        f"features gave shape {tuple(features.shape)}, expected (3, dim)"
    assert torch.isfinite(features).all(), "features gave non-finite values"


def _check_parameters(ctx: _Context) -> None:
    clf = ctx.load()
    names = [n for n, _ in clf.model.named_parameters()]
    head = clf.head_parameter_names()
    assert head and set(head) < set(names), \
        f"head_parameter_names() must name some, not all, of the model's parameters: {head[:4]!r}"
    groups = clf.parameter_groups()
    flat = [n for group in groups for n in group]
    assert sorted(flat) == sorted(names), "parameter groups cover every parameter exactly once"
    assert len(groups) >= 2, f"parameter_groups() gave {len(groups)} group(s); layer-wise decay needs two or more"


def _check_lora_targets(ctx: _Context) -> None:
    clf = ctx.load()
    head = clf.head_parameter_names()
    modules = dict(clf.model.named_modules())
    targets = clf.lora_targets()
    assert targets, "lora_targets() names no module"
    missing = [t for t in targets if t not in modules]
    assert not missing, f"lora_targets() names modules the model does not have: {missing[:3]}"
    inside = [t for t in targets for h in head if t.startswith(h.rsplit(".", 1)[0])]
    assert not inside, f"lora_targets() names modules inside the head: {inside[:3]}"


def _check_augment(ctx: _Context) -> None:
    import numpy as np

    clf = ctx.load()
    plain = clf.preprocess(ctx.examples[0])
    expected = input_shapes(plain)
    for preset in AUGMENT_PRESETS:
        clf.augment = preset
        item = clf.preprocess(ctx.examples[0], train=True)
        assert set(item) == {name for name, _ in expected}, f"augment={preset!r}: inputs {sorted(item)}"
        if clf.image_size is not None:   # fixed-size inputs: augmentation keeps the size
            assert input_shapes(item) == expected, f"augment={preset!r}: shapes {input_shapes(item)}, {expected}"
        if not clf.preprocess_augments:   # the engine then prepares each training item once and keeps it
            same = all(np.array_equal(np.asarray(item[name]), np.asarray(value)) for name, value in plain.items())
            assert same, (f"augment={preset!r}: preprocess_augments is False, but preprocess(train=True) differs "
                          "from preprocess(train=False); return True where preprocessing draws augmentation")


def _check_head_replay(ctx: _Context) -> None:
    import torch

    clf = ctx.load()
    clf.model.eval()
    batch = ctx.batch(clf)
    with torch.no_grad():
        expected = clf.forward(batch)
        replayed = clf.head_logits(clf.head_inputs(batch))
    torch.testing.assert_close(replayed, expected, atol=1e-5, rtol=1e-5,
                               msg=lambda m: f"head_logits(head_inputs(batch)) differs from forward(batch): {m}")


def _check_linear_heads(ctx: _Context) -> None:
    import torch

    clf = ctx.load()
    heads = clf.linear_heads()
    if not heads:
        raise _Skip("linear_heads() offers none: the linear strategy trains this head epoch by epoch")
    assert heads[0].native, "the first head offered is the family's native one"
    assert len({head.pooling for head in heads}) == len(heads), "each head names a pooling of its own"
    clf.model.eval()
    batch = ctx.batch(clf)
    generator = torch.Generator().manual_seed(0)
    for head in [*heads[1:], heads[0]]:   # from a non-native pooling back to the native one, too
        weight = torch.randn(len(ctx.labels), head.in_features, generator=generator)
        bias = torch.randn(len(ctx.labels), generator=generator)
        head.write(weight, bias)
        assert head.native or head.load_note, f"{head.pooling}: a head the library lacks says how to load it"
        with torch.no_grad():
            inputs = clf.head_inputs(batch)
            expected = inputs[:, head.columns] @ weight.T + bias
            torch.testing.assert_close(clf.head_logits(inputs), expected, atol=1e-4, rtol=1e-4,
                                       msg=lambda m, p=head.pooling: f"{p}: head_logits after write: {m}")
            torch.testing.assert_close(clf.forward(batch), expected, atol=1e-4, rtol=1e-4,
                                       msg=lambda m, p=head.pooling: f"{p}: forward after write: {m}")
        folder = ctx.tmp / f"linear-{head.pooling}"
        clf.save(folder)
        loaded = ctx.family.load_saved(folder)
        loaded.model.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded.forward(batch), expected, atol=1e-4, rtol=1e-4,
                                       msg=lambda m, p=head.pooling: f"{p}: saved and loaded again: {m}")


def _check_save_load(ctx: _Context) -> None:
    import torch

    clf = ctx.load()
    clf.model.eval()
    out = ctx.tmp / "saved"
    written = clf.save(out)
    assert written and all(Path(p).exists() for p in written), "save() returns the files it wrote"
    pickles = [p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in out.rglob(pattern)]
    assert not pickles, f"weights are safetensors only; save() wrote {pickles}"
    assert ctx.family.can_load_saved(out), "can_load_saved() does not recognise the folder save() wrote"
    reloaded = ctx.family.load_saved(out)
    assert reloaded.labels == ctx.labels, f"load_saved gave labels {reloaded.labels!r}"
    assert reloaded.task == ctx.task, f"load_saved gave task {reloaded.task!r}"
    reloaded.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded.forward(ctx.batch(reloaded)), clf.forward(ctx.batch(clf)),
                                   atol=1e-4, rtol=1e-4, msg=lambda m: f"the reloaded model scores otherwise: {m}")


def _check_batch_independence(ctx: _Context) -> None:
    import numpy as np

    from zoo.engine.batches import ExampleDataset, collect_outputs, make_collate

    clf = ctx.load()
    clf.model.eval()
    n = len(ctx.labels)
    examples = [Example(x, (i % n,), str(i)) for i, x in enumerate(ctx.mixed())]
    dataset = ExampleDataset(examples, clf, train=False, max_seconds=10.0, num_labels=n, multi_label=False)
    for output in ("forward", "head_inputs", "features"):
        forward = getattr(clf, output)
        outputs = {size: collect_outputs(forward, dataset, collate=make_collate(clf, False), batch_size=size,
                                         device="cpu")[1] for size in (1, len(examples))}
        np.testing.assert_allclose(outputs[len(examples)], outputs[1], atol=1e-5, rtol=1e-5,
                                   err_msg=f"{output}: batched differs from one by one")


def _check_padding(ctx: _Context) -> None:
    import torch

    clf = ctx.load()
    clf.model.eval()
    items = [clf.preprocess(x) for x in ctx.mixed()]
    if len({clf.batch_key(item) for item in items}) != 1:
        raise _Skip("items of different lengths get different batch keys: they are never padded together")
    with torch.no_grad():
        alone = torch.cat([clf.forward(clf.collate([item])) for item in items])
        padded = clf.forward(clf.collate(items))
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5,
                               msg=lambda m: f"equal batch keys, but padding changes the scores: {m}")


def _check_strategies(ctx: _Context) -> None:
    import torch

    from zoo.engine.batches import run_forward
    from zoo.engine.setup import build_setup, finalize_model
    from zoo.engine.trainer import Reporter

    n = len(ctx.labels)
    examples = [Example(x, (i % n,), str(i)) for i, x in enumerate(ctx.mixed())]
    splits = DataSplits(task=ctx.task, source="zoo.testing", label_names=ctx.labels, multi_label=False,
                        train=examples, val=examples[:2], fingerprint=f"zoo.testing {ctx.tmp}")
    saved_cache = os.environ.get("ZOO_FEATURE_CACHE")
    os.environ["ZOO_FEATURE_CACHE"] = str(ctx.tmp / "features")   # the linear strategy's cache, thrown away after
    try:
        for strategy in STRATEGIES:
            clf = ctx.load()
            config = AdaptConfig(strategy=strategy, batch_size=len(examples), epochs=1, workers=0)
            setup = build_setup(clf, ctx.spec, splits, config, device=torch.device("cpu"), reporter=Reporter())
            assert setup.trainable, f"{strategy}: nothing to train"
            inputs, target = setup.collate([setup.train_data[i] for i in range(len(examples))])
            setup.train_mode(True)
            logits = run_forward(setup.forward, inputs)
            assert logits.shape == (len(examples), n), f"{strategy}: logits of shape {tuple(logits.shape)}"
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
            assert torch.isfinite(loss), f"{strategy}: the loss is not finite"
            before = {name: p.detach().clone() for name, p in setup.trainable.items()}
            optimizer = torch.optim.SGD(list(setup.trainable.values()), lr=0.1)
            loss.backward()
            optimizer.step()
            changed = [name for name, p in setup.trainable.items() if not torch.equal(p.detach(), before[name])]
            assert changed, f"{strategy}: one optimizer step changed no trainable parameter (no gradient reached them)"
            assert all(torch.isfinite(p).all() for p in setup.trainable.values()), f"{strategy}: non-finite weights"
            finalize_model(clf, strategy)
            clf.model.eval()
            with torch.no_grad():
                after = clf.forward(ctx.batch(clf))
            assert after.shape == (3, n) and torch.isfinite(after).all(), f"{strategy}: the adapted model's logits"
    finally:
        if saved_cache is None:
            os.environ.pop("ZOO_FEATURE_CACHE", None)
        else:
            os.environ["ZOO_FEATURE_CACHE"] = saved_cache


def _check_export(ctx: _Context) -> None:
    import numpy as np

    from zoo.engine.batches import ExampleDataset, collect_outputs, make_collate

    clf = ctx.load()
    clf.model.eval()
    items = [clf.preprocess(x) for x in ctx.examples]
    out = ctx.tmp / "export"
    out.mkdir(parents=True, exist_ok=True)
    to_onnx(clf, trace_batch(clf, items), out / "model.onnx")
    n = len(ctx.labels)
    examples = [Example(x, (i % n,), str(i)) for i, x in enumerate(ctx.mixed())]
    dataset = ExampleDataset(examples, clf, train=False, max_seconds=10.0, num_labels=n, multi_label=False)
    collate = make_collate(clf, False)
    expected = collect_outputs(clf.forward, dataset, collate=collate, batch_size=len(examples), device="cpu")[1]
    exported = collect_outputs(ort_forward(open_session(out / "model.onnx")), dataset, collate=collate,
                               batch_size=len(examples), device="cpu")[1]
    np.testing.assert_allclose(exported, expected, atol=1e-4, rtol=1e-4,
                               err_msg="onnxruntime's logits of the export differ from forward's")
    written = clf.export_files(out)
    assert not [p.name for p in written if Path(p).suffix in (".safetensors", ".bin", ".pt")], \
        "export_files wrote weights"
    method, reason = clf.int8_method()
    assert method in ("dynamic", "static") and reason, f"int8_method gave {(method, reason)!r}"
    if type(ctx.family).load_preprocessing is Family.load_preprocessing:
        return   # optional: without it, exports run with onnxruntime but not through zoo's commands
    preprocessing = ctx.family.load_preprocessing(out)
    assert preprocessing.labels == ctx.labels, f"load_preprocessing gave labels {preprocessing.labels!r}"
    for example in ctx.examples[:2]:
        mine, theirs = clf.preprocess(example), preprocessing.preprocess(example)
        assert sorted(mine) == sorted(theirs), f"load_preprocessing gives inputs {sorted(theirs)}, not {sorted(mine)}"
        for name in mine:
            np.testing.assert_allclose(np.asarray(theirs[name]), np.asarray(mine[name]), atol=1e-6,
                                       err_msg=f"load_preprocessing prepares {name} otherwise")


# The length of a unit's span for each kind of input: (first, end) characters, (start, end) seconds, and
# (top, left, bottom, right) pixels of the view.
_SPAN_LENGTHS = {"text": 2, "audio": 2, "image": 4}


def _check_attribution_space(ctx: _Context) -> str:
    import numpy as np
    import torch

    clf = ctx.load()
    clf.model.eval()
    example = ctx.examples[1]
    batch = clf.collate([clf.preprocess(example)])
    try:
        space = clf.attribution_space(example, batch)
    except PluginError as error:
        raise _Skip(f"{error}; zoo explain refuses this family's runs") from None
    assert space.input in batch, f"input {space.input!r} is not one of the batch's inputs {sorted(batch)}"
    values = batch[space.input]
    units = space.units
    assert isinstance(units, torch.Tensor) and units.dtype == torch.long, \
        f"units must be a long tensor, not {getattr(units, 'dtype', type(units).__name__)}"
    assert tuple(units.shape) == tuple(values.shape), \
        f"units have shape {tuple(units.shape)}, batch[{space.input!r}] {tuple(values.shape)}"
    count = len(space.names)
    assert count > 0, "no units: names is empty"
    assert len(space.spans) == count, f"{len(space.spans)} spans for {count} names"
    kind = get_task(clf.task).input_kind
    wrong = [span for span in space.spans if len(span) != _SPAN_LENGTHS.get(kind, len(span))]
    assert not wrong, f"a {kind} unit's span has {_SPAN_LENGTHS.get(kind)} numbers, not {wrong[0]!r}"
    assert all(span[i] <= span[i + len(span) // 2] for span in space.spans for i in range(len(span) // 2)), \
        "a span ends before it starts"
    assert int(units.min()) >= -1 and int(units.max()) < count, \
        f"unit ids run from {int(units.min())} to {int(units.max())}; give 0 to {count - 1}, or -1 for none"
    used = set(units[units >= 0].unique().tolist())
    assert used == set(range(count)), f"units {sorted(set(range(count)) - used)[:5]} cover no element of the input"
    assert tuple(space.baseline.shape) == tuple(values.shape), \
        f"the baseline has shape {tuple(space.baseline.shape)}, batch[{space.input!r}] {tuple(values.shape)}"
    if space.layer is not None:
        assert any(module is space.layer for module in clf.model.modules()), "layer is not a module of the model"
    assert all(0 <= axis < values.ndim for axis in space.view_axes), f"view_axes {space.view_axes} out of range"
    if kind == "audio":
        assert space.sample_rate and np.asarray(space.view).ndim == 1, "an audio view is the clip (1-D), with its rate"
    elif kind == "image":
        assert np.asarray(space.view).ndim == 3 and space.view_axes, "an image view is (height, width, 3), with axes"
    (explanation,) = explain_example(clf, example, name="contract", target=clf.labels[0])
    error = explanation.completeness_error
    assert error is not None and np.isfinite(error), f"integrated gradients gave completeness error {error}"
    assert len(explanation.units) == count, f"{len(explanation.units)} attributions for {count} units"
    assert all(np.isfinite(unit.attribution) for unit in explanation.units), "an attribution is not finite"
    if kind == "image":
        height, width = np.asarray(space.view).shape[:2]
        assert np.shape(explanation.heat) == (height, width), \
            f"the map over the view has shape {np.shape(explanation.heat)}, the view {(height, width)}"
    note = f"integrated gradients: completeness error {100 * error:.1f}% with {explanation.steps} steps"
    if error > COMPLETENESS_LIMIT:
        note += (f", above {100 * COMPLETENESS_LIMIT:.0f}% even at the most steps: the score jumps somewhere on the "
                 "straight path from the baseline (a baseline the model cannot tell from nothing?)")
    return note
