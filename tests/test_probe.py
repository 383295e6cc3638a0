"""The linear strategy's solver on features built here: as good as scikit-learn's logistic regression fitted to
convergence, with the standardisation folded into weights that apply to raw features."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.engine.probe import L2_GRID, fit_linear_probe

LABELS = [f"c{i}" for i in range(6)]


def badly_scaled_blobs(seed: int, *, train: int = 300, val: int = 600, dims: int = 24):
    """Overlapping Gaussian classes whose dimensions span six orders of magnitude and sit far from zero."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(LABELS), dims))
    scales, offsets = 10.0 ** rng.uniform(-3, 3, dims), rng.normal(0, 50, dims)

    def draw(n: int):
        labels = rng.integers(0, len(LABELS), n)
        return (centres[labels] + rng.normal(0, 1.6, (n, dims))) * scales + offsets, labels

    return draw(train), draw(val)


def _fit(train_x, train_y, val_x, val_y, **options):
    import torch

    options = {"loss_fn": torch.nn.CrossEntropyLoss(), "label_names": LABELS, "multi_label": False,
               "metric": "accuracy", **options}
    return fit_linear_probe(torch.tensor(train_x, dtype=torch.float32), torch.tensor(train_y),
                            torch.tensor(val_x, dtype=torch.float32), torch.tensor(val_y), **options)


@pytest.mark.parametrize("seed", [0, 1])
def test_solver_matches_scikit_learn_logistic_regression(seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    (train_x, train_y), (val_x, val_y) = badly_scaled_blobs(seed)
    fit = _fit(train_x, train_y, val_x, val_y)

    # scikit-learn on the same standardised features, over the same L2 strengths (C = 1 / (λ n)), to convergence.
    scaler = StandardScaler().fit(train_x)
    theirs = {}
    for l2 in sorted(L2_GRID, reverse=True):
        model = LogisticRegression(C=1 / (l2 * len(train_y)), max_iter=20000, tol=1e-8)
        model.fit(scaler.transform(train_x), train_y)
        theirs[l2] = float((model.predict(scaler.transform(val_x)) == val_y).mean())
    best_theirs = max(theirs.values())
    assert fit.chosen.val >= best_theirs - 0.01, (fit.to_record(), theirs)
    assert all(entry.converged for entry in fit.grid if entry.l2 >= fit.l2), fit.to_record()
    # Ties go to the stronger regularisation: nothing stronger scored as well.
    assert all(entry.val < fit.chosen.val for entry in fit.grid if entry.l2 > fit.l2)
    # The folded weights apply to raw features and give the validation score the choice was made on.
    raw_logits = val_x.astype(np.float32) @ fit.weight.numpy().T + fit.bias.numpy()
    assert float((raw_logits.argmax(1) == val_y).mean()) == pytest.approx(fit.chosen.val, abs=1 / len(val_y))


def test_folded_head_on_raw_features_gives_the_standardised_fit():
    (train_x, train_y), (val_x, val_y) = badly_scaled_blobs(2)
    mean, spread = train_x.mean(0), train_x.std(0)
    raw = _fit(train_x, train_y, val_x, val_y)
    standardised = _fit((train_x - mean) / spread, train_y, (val_x - mean) / spread, val_y)
    assert raw.l2 == standardised.l2
    ours = val_x.astype(np.float32) @ raw.weight.numpy().T + raw.bias.numpy()
    expected = ((val_x - mean) / spread).astype(np.float32) @ standardised.weight.numpy().T
    expected += standardised.bias.numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-3 * np.abs(expected).max(), rtol=0)


def test_multi_label_class_weights_and_label_smoothing_are_honoured():
    import torch

    (train_x, train_y), (val_x, val_y) = badly_scaled_blobs(3)
    # Two labels per example: its class and the "next" one; positives weighed up as --class-weights auto does.
    def two_hot(labels):
        rows = np.zeros((len(labels), len(LABELS)), dtype=np.float32)
        rows[np.arange(len(labels)), labels] = 1
        rows[np.arange(len(labels)), (labels + 1) % len(LABELS)] = 1
        return rows

    targets = torch.tensor(two_hot(train_y))
    positives = targets.sum(0)
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=(len(targets) - positives) / positives)
    fit = fit_linear_probe(torch.tensor(train_x, dtype=torch.float32), targets,
                           torch.tensor(val_x, dtype=torch.float32), torch.tensor(two_hot(val_y)), loss_fn=loss,
                           label_names=LABELS, multi_label=True, metric="micro_f1")
    assert fit.chosen.val > 0.6 and fit.weight.shape == (len(LABELS), train_x.shape[1])
    smoothed = _fit(train_x, train_y, val_x, val_y, loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=0.2))
    assert smoothed.chosen.val > 0.5


def test_a_non_finite_loss_stops_the_solver():
    from zoo.errors import TrainingDivergedError

    (train_x, train_y), (val_x, val_y) = badly_scaled_blobs(4)
    train_x[3, 5] = np.nan
    with pytest.raises(TrainingDivergedError, match=r"the loss is nan.*--lr does not apply"):
        _fit(train_x, train_y, val_x, val_y)
