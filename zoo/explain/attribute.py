"""Why a model decided: one prediction's attributions to the words, image regions or stretches of time of its input.

Three methods, on Captum where it has them:

- ``ig``: integrated gradients (Captum's ``IntegratedGradients``, or ``LayerIntegratedGradients`` where the family
  attributes at a layer, as text's token embeddings), from the family's baseline to the input along a straight
  path, Gauss-Legendre quadrature, batched. Its completeness error, ``|Σ attributions − (f(x) − f(baseline))|``
  relative to ``|f(x) − f(baseline)|``, says whether the steps sufficed; ``steps="auto"`` takes the fewest of
  :data:`AUTO_STEPS` that bring it under :data:`COMPLETENESS_LIMIT`.
- ``occlusion``: each unit in turn replaced by the baseline (Captum's ``FeatureAblation`` over the units): the
  gradient-free check, one forward pass per unit.
- ``shap``: SHAP's partition explainer, Owen values over a hierarchy of contiguous units
  (:mod:`zoo.explain.partition`), additive by construction.

``f`` is the explained label's logit. What to attribute to, the baseline, the units and the view they are drawn on
are the family's (:meth:`zoo.family.Classifier.attribution_space`); this module knows no family.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError
from zoo.explain.partition import owen_values
from zoo.explain.render import file_stem, write_files
from zoo.tasks import get_task

METHODS = ("ig", "occlusion", "shap")
# The step counts ``steps="auto"`` climbs, stopping at the first whose completeness error is small enough; a count
# whose error exceeds the change itself skips the next rung.
AUTO_STEPS = (4, 8, 16, 32, 64)
# Above this completeness error integrated gradients' attributions do not add up to the change they explain.
COMPLETENESS_LIMIT = 0.05
DEFAULT_BATCH = 16        # examples per forward pass inside one explanation, halved when memory runs out
DEFAULT_MAX_EVALS = 256   # SHAP's budget of forward passes per explanation


@dataclass
class UnitAttribution:
    """One unit (a word, a region, a stretch of time) and its share of the explained logit's change."""

    name: str
    span: tuple[float, ...]
    attribution: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "span": list(self.span), "attribution": self.attribution}


@dataclass
class Explanation:
    """One input's attributions for one label."""

    input: str
    task: str
    method: str
    label: str                        # the label explained
    score: float                      # the model's probability of it
    predicted: bool                   # whether the model predicts it (top label, or above 0.5 for multi-label)
    logit: float                      # f(x): the label's logit on the input
    baseline_logit: float             # f(baseline): on the baseline
    units: list[UnitAttribution]
    completeness_error: float | None  # relative; None for occlusion, whose attributions need not add up
    steps: int | None                 # integrated gradients' steps
    evaluations: int                  # examples run through the model (forward passes of one example)
    seconds: float
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # For drawing, not in to_dict: the map over the view's pixels (images), the view, the clip's sample rate.
    heat: Any = None
    view: Any = None
    sample_rate: int | None = None

    def top(self, k: int = 3) -> list[UnitAttribution]:
        """The ``k`` units that pushed most towards the label (largest positive attributions), best first."""
        ranked = sorted((u for u in self.units if u.attribution > 0), key=lambda u: -u.attribution)
        return ranked[:k]

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "task": self.task, "method": self.method, "label": self.label,
                "score": self.score, "predicted": self.predicted, "logit": self.logit,
                "baseline_logit": self.baseline_logit, "completeness_error": self.completeness_error,
                "steps": self.steps, "evaluations": self.evaluations, "seconds": self.seconds,
                "top": [u.name for u in self.top()], "units": [u.to_dict() for u in self.units],
                "warnings": self.warnings, "files": self.files}


def check_method(method: str, *, option: str = "--method") -> str:
    if method not in METHODS:
        raise InvalidInputError(f"{option} {method!r}: choose one of {', '.join(METHODS)}")
    return method


def check_steps(steps: int | str, *, option: str = "--steps", most: int | None = None) -> int | str:
    """``auto``, or a whole number of steps from 1 (to ``most``, where the caller bounds the cost)."""
    if steps == "auto":
        return steps
    try:
        value = int(steps)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(steps).strip() != str(value) or (most is not None and value > most):
        bound = f"from 1 to {most}" if most is not None else "of at least 1"
        raise InvalidInputError(f"{option} {steps!r}: give a whole number {bound}, or auto")
    return value


def targets(classifier, probabilities, target: str | None) -> list[int]:
    """The labels to explain: ``pred`` (or None) is the predicted label, or every label a multi-label model
    predicts (probability at least 0.5; the top one when none is); else the label named."""
    if target in (None, "pred"):
        if classifier.multi_label:
            chosen = [i for i, p in enumerate(probabilities.tolist()) if p >= 0.5]
            return chosen or [int(probabilities.argmax())]
        return [int(probabilities.argmax())]
    if target not in classifier.labels:
        raise InvalidInputError(f"--target {target!r} is not a label of this model; give pred or one of "
                                f"{', '.join(classifier.labels)}")
    return [classifier.labels.index(target)]


def explain_example(classifier, example: Any, *, name: str, method: str = "ig", target: str | None = "pred",
                    steps: int | str = "auto", batch_size: int = DEFAULT_BATCH,
                    max_evals: int = DEFAULT_MAX_EVALS) -> list[Explanation]:
    """Explain the prediction of one raw ``example`` (as the family's ``preprocess`` takes it; ``name`` is how it
    is reported): one :class:`Explanation` per label explained (:func:`targets`).

    Runs on the device the model is on, in fp32 (gradients of half-precision models are too coarse to add up).
    """
    import torch

    start = time.perf_counter()
    device = next(classifier.model.parameters()).device
    batch = {key: (value.to(device) if hasattr(value, "to") else value)
             for key, value in classifier.collate([classifier.preprocess(example)]).items()}
    classifier.model.eval()
    space = classifier.attribution_space(example, batch)
    units = space.units.to(device)
    # What belongs to no unit (special tokens, padding past a clip) is held at the input's value, so that the
    # units' attributions account for the whole change between the baseline and the input.
    space.baseline = torch.where(units >= 0, space.baseline.to(device), batch[space.input])
    n_units = len(space.names)
    if n_units == 0:
        raise InvalidInputError(f"{name}: nothing to attribute (no words, no audio, no pixels)")

    def forward(values):
        """Logits for a batch of values of the attributed input, the example's other inputs repeated."""
        count = values.shape[0]
        inputs = {key: (values if key == space.input else
                        value.expand(count, *value.shape[1:]) if hasattr(value, "expand") else value)
                  for key, value in batch.items()}
        return classifier.forward(inputs).float()

    explanations = []
    with _frozen(classifier.model):
        with torch.no_grad():
            both = forward(torch.cat([batch[space.input], space.baseline.to(device)]))
        logits, baseline_logits = both[0], both[1]
        probabilities = torch.sigmoid(logits) if classifier.multi_label else logits.softmax(-1)
        chosen = targets(classifier, probabilities, target)
        predicted = set(targets(classifier, probabilities, "pred"))
        setup_s = time.perf_counter() - start
        for label in chosen:
            began = time.perf_counter()
            change = float(logits[label] - baseline_logits[label])
            run = _RUNNERS[method](forward, space, batch[space.input], units, n_units, label, change=change,
                                   steps=steps, batch_size=batch_size, max_evals=max_evals)
            error = None
            warnings = []
            if run.total is not None:
                error = abs(run.total - change) / max(abs(change), 1e-4)
                if error > COMPLETENESS_LIMIT:
                    warnings.append(f"completeness error {100 * error:.1f}% is above "
                                    f"{100 * COMPLETENESS_LIMIT:.0f}%: the attributions do not add up to the "
                                    f"change they explain; give more --steps (this used {run.steps})")
            values = run.per_unit.tolist()
            explanations.append(Explanation(
                input=name, task=classifier.task, method=method, label=classifier.labels[label],
                score=round(float(probabilities[label]), 6), predicted=label in predicted,
                logit=float(logits[label]), baseline_logit=float(baseline_logits[label]),
                units=[UnitAttribution(unit_name, tuple(span), float(value))
                       for unit_name, span, value in zip(space.names, space.spans, values, strict=True)],
                completeness_error=error, steps=run.steps, evaluations=run.evaluations + 2,
                seconds=round(time.perf_counter() - began + setup_s / len(chosen), 4), warnings=warnings,
                heat=_heat(run.elements, space.view_axes), view=space.view, sample_rate=space.sample_rate))
    return explanations


@dataclass
class _Run:
    per_unit: Any          # (units,) float64 tensor
    elements: Any          # element-level attributions, shaped as the attributed input (for the view's map)
    total: float | None    # the sum of every attribution, for the completeness check; None where it need not add up
    steps: int | None
    evaluations: int


def _integrated_gradients(forward, space, inputs, units, n_units, label, *, change, steps, batch_size,
                          max_evals) -> _Run:
    from captum.attr import IntegratedGradients

    baseline = space.baseline.to(inputs.device)
    if space.layer is not None:
        # Attributed at the layer's output: the input's and the baseline's outputs are read by running the model
        # only as far as the layer (Captum's LayerIntegratedGradients runs it whole, twice), and the path between
        # them is fed to the rest of the model in place of the layer's own output.
        start, end = _layer_output(forward, space.layer, inputs), _layer_output(forward, space.layer, baseline)
        explainer = IntegratedGradients(_through_layer(forward, space.layer, inputs))
    else:
        start, end = inputs, baseline
        explainer = IntegratedGradients(forward)
    count, evaluations = (AUTO_STEPS[0] if steps == "auto" else int(steps)), 0
    while True:
        attributions = _backing_off(
            lambda size, count=count: explainer.attribute(start, baselines=end, target=label, n_steps=count,
                                                          internal_batch_size=size, method="gausslegendre"),
            batch_size).detach().double()
        evaluations += count
        total = float(attributions.sum())
        error = abs(total - change) / max(abs(change), 1e-4)
        if steps != "auto" or error <= COMPLETENESS_LIMIT or count >= AUTO_STEPS[-1]:
            break
        # Far off (the sum is wrong by more than the change itself): skip a rung of the ladder.
        count = min(AUTO_STEPS[-1], count * (4 if error > 1 else 2))
    return _Run(per_unit=unit_sums(attributions, units, n_units), elements=attributions, total=total,
                steps=count, evaluations=evaluations)


class _ReachedLayer(Exception):
    """Raised by a forward hook to stop the model once the layer whose output is wanted has run."""


def _layer_output(forward, layer, values):
    """``layer``'s output when the model runs on ``values``, running the model no further than the layer."""
    import torch

    captured = []

    def keep(module, args, output):
        captured.append(output.detach())
        raise _ReachedLayer

    handle = layer.register_forward_hook(keep)
    try:
        with torch.no_grad():
            forward(values)
    except _ReachedLayer:
        pass
    finally:
        handle.remove()
    if not captured:
        raise InvalidInputError(f"the model never ran its attributed layer {type(layer).__name__}")
    return captured[0]


def _through_layer(forward, layer, inputs):
    """The model as a function of ``layer``'s output: ``inputs`` run as usual up to the layer, whose output is
    replaced by the values given (one row per path point)."""

    def run(layer_values):
        handle = layer.register_forward_hook(lambda module, args, output: layer_values)
        try:
            return forward(inputs.expand(layer_values.shape[0], *inputs.shape[1:]))
        finally:
            handle.remove()

    return run


def _occlusion(forward, space, inputs, units, n_units, label, *, change, steps, batch_size,
               max_evals) -> _Run:
    import torch
    from captum.attr import FeatureAblation

    groups = torch.where(units >= 0, units, torch.full_like(units, n_units))   # the unattributed: a group of their own
    ablated = _backing_off(
        lambda size: FeatureAblation(forward).attribute(inputs, baselines=space.baseline.to(inputs.device),
                                                        target=label, feature_mask=groups,
                                                        perturbations_per_eval=size), batch_size).detach().double()
    per_unit = unit_sums(ablated, units, n_units) / unit_sums(torch.ones_like(ablated), units, n_units).clamp(min=1)
    return _Run(per_unit=per_unit, elements=spread(per_unit, units), total=None, steps=None,
                evaluations=int(groups.unique().numel()) + 1)


def _shap(forward, space, inputs, units, n_units, label, *, change, steps, batch_size,
          max_evals) -> _Run:
    import torch

    baseline = space.baseline.to(inputs.device)

    def evaluate(present):   # (k, units) bool -> (k,) logits
        present = present.to(units.device)
        keep = torch.ones(present.shape[0], *units.shape[1:], dtype=torch.bool, device=units.device)
        attributed = units[0] >= 0
        keep[:, attributed] = present[:, units[0][attributed]]
        masked = torch.where(keep, inputs.expand(present.shape[0], *inputs.shape[1:]),
                             baseline.expand(present.shape[0], *baseline.shape[1:]))
        with torch.no_grad():
            return forward(masked)[:, label].double().cpu()

    values, evaluations = owen_values(evaluate, n_units, max_evals=max_evals, batch_size=batch_size)
    per_unit = values.to(torch.float64)
    return _Run(per_unit=per_unit, elements=spread(per_unit, units), total=float(per_unit.sum()), steps=None,
                evaluations=evaluations)


_RUNNERS = {"ig": _integrated_gradients, "occlusion": _occlusion, "shap": _shap}


def unit_sums(attributions, units, n_units: int):
    """Attributions summed per unit: trailing axes past ``units``' (a layer's hidden size) summed first, elements
    of unit -1 left out."""
    import torch

    values = attributions
    while values.ndim > units.ndim:
        values = values.sum(-1)
    flat_units, flat_values = units.reshape(-1), values.reshape(-1).double()
    keep = flat_units >= 0
    return torch.zeros(n_units, dtype=torch.float64, device=values.device).index_add_(
        0, flat_units[keep], flat_values[keep]).cpu()


def spread(per_unit, units):
    """Each unit's value shared evenly among its elements (the element-level map of a unit-level method)."""
    import torch

    per_unit = per_unit.to(units.device)
    counts = torch.bincount(units[units >= 0].reshape(-1), minlength=len(per_unit)).clamp(min=1).double()
    density = per_unit / counts
    return torch.where(units >= 0, density[units.clamp(min=0)], torch.zeros((), dtype=torch.float64,
                                                                            device=units.device))


def _heat(elements, view_axes: Sequence[int]):
    """The attributions over the view's pixels (the other axes summed), as a numpy array; None without them."""
    if not view_axes:
        return None
    values = elements
    for axis in sorted(set(range(values.ndim)) - set(view_axes), reverse=True):
        values = values.sum(axis)
    return values.detach().cpu().numpy()


@contextmanager
def _frozen(model) -> Iterator[None]:
    """No gradients for the weights while explaining: only the input's are needed, and half the work."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _backing_off(call, batch_size: int):
    """``call(batch_size)``, with the batch halved each time memory runs out."""
    import torch

    size = batch_size
    while True:
        try:
            return call(size)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if size == 1 or "out of memory" not in str(error).lower() and "can't allocate" not in str(error):
                raise
            size = max(1, size // 2)


def explain_inputs(classifier, inputs: Sequence[Any], *, method: str = "ig", target: str | None = "pred",
                   steps: int | str = "auto", batch_size: int = DEFAULT_BATCH, max_evals: int = DEFAULT_MAX_EVALS,
                   max_seconds: float = 10.0, output=None, progress=None) -> list[Explanation]:
    """Explain each of ``inputs`` (image or audio paths, texts) as `zoo predict` reads it; with ``output``, draw
    each explanation into that folder (:mod:`zoo.explain.render`). ``progress(done, total)`` is called after each.

    Raises:
        zoo.errors.InvalidInputError: an input that cannot be read (named), an unknown ``target``.
    """
    task = get_task(classifier.task)
    explanations: list[Explanation] = []
    stems: set[str] = set()
    for index, value in enumerate(inputs):
        example = task.read_input(value, sample_rate=classifier.sample_rate, max_seconds=max_seconds)
        found = explain_example(classifier, example, name=str(value), method=method, target=target, steps=steps,
                                batch_size=batch_size, max_evals=max_evals)
        if output is not None:
            for explanation in found:
                stem = file_stem(explanation, index)
                if stem in stems:   # files of the same name in different folders: numbered, never overwritten
                    stem = f"{stem}-{index + 1}"
                stems.add(stem)
                explanation.files = [str(path) for path in write_files(explanation, Path(output), stem)]
        explanations.extend(found)
        if progress is not None:
            progress(index + 1, len(inputs))
    return explanations
