"""The linear strategy's solver: a linear head fitted to convergence on cached head inputs.

A linear probe on frozen features is a convex problem whose data cost nothing to revisit, so it is solved rather
than trained for epochs: the features are standardised (mean and spread of the training split), the head is fitted
by full-batch L-BFGS with a strong-Wolfe line search for each L2 strength of a small grid, and the fit with the best
validation metric is kept (a tie goes to the stronger regularisation). The standardisation is then folded into the
weights (``W' = W / σ``, ``b' = b - W' μ``), so the family's own head computes the fitted logits from raw head
inputs, and the saved native model needs no extra step.

:func:`fit_linear_probe` takes a feature matrix. Which representation is probed is chosen the same way: a family
may offer several pooled representations of the frozen encoder (:meth:`zoo.family.Classifier.linear_heads`: the
first token, the mean over tokens, the mean over tokens and layers), :func:`solve_head` fits each and keeps the one
with the best validation metric, a tie going to the one listed first (the native head).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from zoo.engine.config import AdaptConfig
from zoo.engine.metrics import compute_metrics
from zoo.errors import PluginError, TrainingDivergedError
from zoo.family import Classifier

SOLVER = "lbfgs"
# L2 strengths λ of the objective mean_loss + λ/2 ‖W‖² (bias not penalised), strongest first: scikit-learn's
# LogisticRegression(C) is the same objective with C = 1 / (λ · training examples).
L2_GRID = tuple(10.0 ** k for k in range(1, -7, -1))
MAX_ITERATIONS = 500            # per L2 strength; each fit starts from the previous (stronger) one's solution
GRADIENT_TOLERANCE = 1e-5       # largest gradient entry at which a fit has converged (float32 objective)
# Options of the epoch-by-epoch loop that have no meaning for a solved head.
LOOP_ONLY_OPTIONS = ("epochs", "lr", "patience", "batch_size", "weight_decay", "warmup_ratio", "grad_accum",
                     "checkpoint_every", "soup_top_k")
DIVERGED_ADVICE = ("The head is fitted by L-BFGS on cached features, where --lr does not apply: check the data "
                   "(and the backbone's features) for NaN or infinite values.")


@dataclass
class L2Fit:
    """One L2 strength of the grid: how its fit went and how it scored on the validation split."""

    l2: float
    val: float              # the selection metric on the validation split
    train_loss: float       # the data loss on the training split, penalty excluded
    iterations: int
    converged: bool         # stopped by the tolerances, not by MAX_ITERATIONS


@dataclass
class ProbeFit:
    """The chosen head, on raw (unstandardised) features, and the record of how it was chosen."""

    weight: Any             # (labels, features) tensor
    bias: Any               # (labels,) tensor
    l2: float
    metric: str
    grid: list[L2Fit]
    seconds: float
    pooling: str = "native"                 # the representation probed (LinearHead.pooling)
    native: bool = True                     # whether the family's own library computes the saved head
    load_note: str = ""                     # how to load it otherwise (LinearHead.load_note)
    # Every representation tried: its best validation metric, L2 and iterations, in the family's order.
    poolings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def chosen(self) -> L2Fit:
        return next(fit for fit in self.grid if fit.l2 == self.l2)

    @property
    def iterations(self) -> int:
        return sum(fit.iterations for fit in self.grid)

    def to_record(self) -> dict[str, Any]:
        return {"solver": SOLVER, "standardised": True, "metric": self.metric, "l2": self.l2,
                "iterations": self.iterations, "max_iterations": MAX_ITERATIONS,
                "gradient_tolerance": GRADIENT_TOLERANCE, "seconds": round(self.seconds, 3),
                "grid": [asdict(fit) for fit in self.grid], "pooling": self.pooling, "native": self.native,
                **({"load_note": self.load_note} if self.load_note else {}),
                "poolings": self.poolings or {self.pooling: self._summary()}}

    def _summary(self) -> dict[str, Any]:
        return {"val": self.chosen.val, "l2": self.l2, "iterations": self.iterations}


def standardisation(features) -> tuple[Any, Any]:
    """Mean and spread of each feature column; a constant column keeps spread 1 (it is centred to zero)."""
    import torch

    values = features.double()
    mean, spread = values.mean(dim=0), values.std(dim=0, unbiased=False)
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    return mean.to(features.dtype), spread.to(features.dtype)


def fit_linear_probe(train_x, train_y, val_x, val_y, *, loss_fn: Callable[[Any, Any], Any], label_names: list[str],
                     multi_label: bool, metric: str, grid: tuple[float, ...] = L2_GRID,
                     on_fit: Callable[[L2Fit], None] | None = None) -> ProbeFit:
    """Fit a linear head on ``train_x`` for each L2 strength in ``grid``; keep the best on ``val_x``.

    Args:
        train_x, val_x: (examples, features) float tensors, on the device to solve on.
        train_y, val_y: class indices, or 0/1 rows for multi-label, on the same device.
        loss_fn: the run's loss on (logits, targets): cross-entropy with its class weights and label smoothing,
            or binary cross-entropy for multi-label.
        metric: the key of :func:`zoo.engine.metrics.compute_metrics` to choose by (higher is better).
        on_fit: called after each L2 strength's fit, for progress.

    Returns:
        The chosen head, folded to apply to raw features, with the grid's record.

    Raises:
        zoo.errors.TrainingDivergedError: the loss is not finite (NaN or infinite features).
    """
    import torch

    started = time.perf_counter()
    dtype = torch.float32
    mean, spread = standardisation(train_x.to(dtype))
    train_z, val_z = (train_x.to(dtype) - mean) / spread, (val_x.to(dtype) - mean) / spread
    targets_val = val_y.cpu().numpy()
    weight = torch.zeros(len(label_names), train_z.shape[1], dtype=dtype, device=train_z.device, requires_grad=True)
    bias = torch.zeros(len(label_names), dtype=dtype, device=train_z.device, requires_grad=True)
    fits: list[L2Fit] = []
    best: tuple[L2Fit, Any, Any] | None = None
    evaluations = 0
    for l2 in sorted(grid, reverse=True):   # strongest first: each fit warm-starts the next, weaker one
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=MAX_ITERATIONS, history_size=20,
                                      tolerance_grad=GRADIENT_TOLERANCE, tolerance_change=1e-9,
                                      line_search_fn="strong_wolfe")

        def objective(l2: float = l2) -> Any:
            nonlocal evaluations
            weight.grad = bias.grad = None
            data_loss = loss_fn(train_z @ weight.T + bias, train_y)
            evaluations += 1
            if not math.isfinite(float(data_loss.detach())):
                raise TrainingDivergedError(epoch=1, batch=1, step=evaluations, what=f"the loss is "
                                            f"{float(data_loss.detach())} (L2 {l2:g})", advice=DIVERGED_ADVICE)
            loss = data_loss + 0.5 * l2 * weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(objective)
        iterations = int(optimizer.state[weight].get("n_iter", 0))
        with torch.no_grad():
            train_loss = float(loss_fn(train_z @ weight.T + bias, train_y))
            val_logits = (val_z @ weight.T + bias).float().cpu().numpy()
        scored = compute_metrics(targets_val, val_logits, label_names, multi_label=multi_label)[metric]
        fit = L2Fit(l2=l2, val=float(scored), train_loss=train_loss, iterations=iterations,
                    converged=iterations < MAX_ITERATIONS)
        fits.append(fit)
        if on_fit is not None:
            on_fit(fit)
        if best is None or fit.val > best[0].val + 1e-9:   # ties stay with the stronger regularisation
            best = (fit, weight.detach().clone(), bias.detach().clone())
    assert best is not None, "the L2 grid is empty"
    chosen, fitted_weight, fitted_bias = best
    # Fold the standardisation in: (x - μ) / σ · Wᵀ + b = x · (W / σ)ᵀ + (b - (W / σ) μ).
    folded = fitted_weight / spread
    return ProbeFit(weight=folded, bias=fitted_bias - folded @ mean, l2=chosen.l2, metric=metric, grid=fits,
                    seconds=time.perf_counter() - started)


def options_ignored(requested: AdaptConfig) -> list[str]:
    """The epoch-loop options the person gave (values other than the defaults) that a solved head ignores."""
    default = AdaptConfig()
    return ["--" + name.replace("_", "-") for name in LOOP_ONLY_OPTIONS
            if getattr(requested, name) != getattr(default, name)]


def solve_head(classifier, spec, heads, setup, *, loss_fn, label_names: list[str], multi_label: bool,
               metric: str, accelerator, reporter) -> ProbeFit:
    """Fit each of ``heads`` (the classifier's :meth:`~zoo.family.Classifier.linear_heads`) on its columns of the
    setup's cached head inputs, keep the best on validation, write it into the model and check that the family's
    head now gives the fitted logits.

    Every process solves the same problem on the same cached features; rank 0's result is then given to all, so
    the replicas end identical even where kernels are not bit-for-bit deterministic.

    Raises:
        zoo.errors.TrainingDivergedError: the loss is not finite.
        zoo.errors.PluginError: the family's ``linear_heads()`` does not describe its head.
    """
    import torch

    from zoo.engine.setup import plugin_of

    started = time.perf_counter()
    device = accelerator.device
    # Name the method the plugin wrote: linear_head() where it kept the default linear_heads().
    own = "linear_heads" if type(classifier).linear_heads is not Classifier.linear_heads else "linear_head"
    method = f"{type(classifier).__name__}.{own}()"
    plugin = plugin_of(classifier, spec)
    poolings = [head.pooling for head in heads]
    if len(set(poolings)) != len(poolings):
        raise PluginError(plugin, f"{method} names a pooling twice ({', '.join(poolings)}); use --strategy full "
                                  "meanwhile")
    width = setup.train_data.features.shape[1]
    best: tuple[ProbeFit, Any] | None = None
    tried: dict[str, dict[str, Any]] = {}
    for head in heads:
        columns = head.columns
        train_x = setup.train_data.features[:, columns].to(device)
        if train_x.shape[1] != head.in_features or not 0 < head.in_features <= width:
            raise PluginError(plugin, f"{method} says the {head.pooling} head reads {head.in_features} features, "
                                      f"but its columns of the head inputs hold {train_x.shape[1]}; use --strategy "
                                      "full meanwhile")
        val_x = setup.val_data.features[:, columns].to(device)
        prefix = f"{head.pooling} pooling, " if len(heads) > 1 else ""

        def progress(fit: L2Fit, prefix: str = prefix) -> None:
            reporter.message(f"{prefix}L2 {fit.l2:g}: validation {metric} {fit.val:.4f} ({fit.iterations} L-BFGS "
                             f"iterations{'' if fit.converged else ', stopped at the limit'})")

        fit = fit_linear_probe(train_x, setup.train_data.targets.to(device), val_x,
                               setup.val_data.targets.to(device), loss_fn=loss_fn, label_names=label_names,
                               multi_label=multi_label, metric=metric, on_fit=progress if len(heads) == 1 else None)
        fit.pooling, fit.native, fit.load_note = head.pooling, head.native, head.load_note
        tried[head.pooling] = fit._summary()
        if len(heads) > 1:
            reporter.message(f"{prefix}validation {metric} {fit.chosen.val:.4f} (L2 {fit.l2:g}, {fit.iterations} "
                             "L-BFGS iterations)")
        if best is None or fit.chosen.val > best[0].chosen.val + 1e-9:   # ties stay with the earlier pooling
            best = (fit, head)
    assert best is not None, "solve_head needs at least one head"
    fit, head = best
    fit.poolings = tried
    fit.seconds = time.perf_counter() - started    # every pooling's fits, not only the chosen one's
    head.write(fit.weight, fit.bias)
    if accelerator.num_processes > 1:
        import torch.distributed as dist

        for param in setup.trainable.values():
            dist.broadcast(param.data, src=0)
    # The family's own head must now compute the fitted map from raw head inputs; if not, its contract is broken.
    setup.train_mode(False)
    sample = setup.val_data.features[:64].to(device)
    with torch.no_grad():
        replayed = classifier.head_logits(sample).float()
        expected = sample[:, head.columns] @ fit.weight.T + fit.bias
    scale = max(1.0, float(expected.abs().max()))
    if not torch.allclose(replayed, expected, rtol=1e-3, atol=1e-3 * scale):
        raise PluginError(plugin, f"{method} does not describe the head: after writing the fitted weights of the "
                                  f"{head.pooling} head the head's logits differ from the fitted ones; use "
                                  "--strategy full meanwhile")
    return fit
