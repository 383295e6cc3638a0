"""Classification metrics from logits: accuracy, macro-F1, per-class precision and recall, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    denominator = precision + recall
    return np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = numerator.astype(float), denominator.astype(float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def single_label_metrics(targets: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Metrics for one label per example; ``targets`` are class indices."""
    n = len(label_names)
    predictions = logits.argmax(axis=1)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (targets, predictions), 1)
    true_positive = np.diag(confusion)
    precision = _safe_ratio(true_positive, confusion.sum(axis=0))
    recall = _safe_ratio(true_positive, confusion.sum(axis=1))
    f1 = _f1(precision, recall)
    present = confusion.sum(axis=1) > 0   # macro averages over the classes that occur in the evaluated set
    return {
        "accuracy": float((predictions == targets).mean()) if len(targets) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(confusion[i].sum())} for i, name in enumerate(label_names)},
        "confusion": confusion.tolist(),
    }


def multi_label_metrics(targets: np.ndarray, logits: np.ndarray, label_names: list[str],
                        threshold: float = 0.5) -> dict[str, Any]:
    """Metrics for any number of labels per example; ``targets`` is a 0/1 matrix."""
    predictions = (1 / (1 + np.exp(-logits))) >= threshold
    targets = targets.astype(bool)
    true_positive = (predictions & targets).sum(axis=0)
    predicted, actual = predictions.sum(axis=0), targets.sum(axis=0)
    precision, recall = _safe_ratio(true_positive, predicted), _safe_ratio(true_positive, actual)
    f1 = _f1(precision, recall)
    micro_p = _safe_ratio(np.array(true_positive.sum()), np.array(predicted.sum()))
    micro_r = _safe_ratio(np.array(true_positive.sum()), np.array(actual.sum()))
    present = actual > 0
    return {
        "micro_f1": float(_f1(micro_p, micro_r)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "subset_accuracy": float((predictions == targets).all(axis=1).mean()) if len(targets) else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(actual[i])} for i, name in enumerate(label_names)},
    }


def compute_metrics(targets: np.ndarray, logits: np.ndarray, label_names: list[str], *,
                    multi_label: bool) -> dict[str, Any]:
    if multi_label:
        return multi_label_metrics(targets, logits, label_names)
    return single_label_metrics(targets, logits, label_names)


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics (no per-class tables or matrices)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
