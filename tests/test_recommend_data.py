"""Transferability estimators against independent computations, and `zoo recommend --data` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_REGISTRY, run_zoo

from zoo.recommend.estimators import (
    hscore_shrinkage,
    knn_loo_accuracy,
    ledoit_wolf,
    log_evidence_dense,
    logme,
    logme_fits,
    logme_target,
    sfda,
)

REGISTRY = [str(FIXTURE_REGISTRY)]
SHAPES = {"many examples": (300, 24), "few examples, wide features": (40, 256)}


def _data(n: int, d: int, classes: int = 4, signal: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    features = rng.normal(size=(n, d))
    features[:, :classes] += signal * np.eye(classes)[labels] * 2
    return features, labels


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_logme_equals_the_dense_evidence_at_its_optimum(shape):
    features, labels = _data(*SHAPES[shape], signal=3.0)
    target = (labels == 1).astype(float)
    fit = logme_target(features, target)
    assert fit.converged and math.isfinite(fit.alpha)
    assert fit.evidence == pytest.approx(log_evidence_dense(features, target, fit.alpha, fit.beta), abs=1e-8)


def test_logme_of_useless_features_is_the_noise_only_limit():
    """When the evidence grows without bound in α (the features only add noise), the answer is its limit."""
    features, labels = _data(40, 256, signal=0.0)
    target = (labels == 1).astype(float)
    fit = logme_target(features, target)
    assert fit.converged and fit.alpha == math.inf
    assert fit.evidence == pytest.approx(log_evidence_dense(features, target, 1e14, fit.beta), abs=1e-6)
    for alpha in (1e-2, 1.0, 1e2, 1e4):
        assert log_evidence_dense(features, target, alpha, fit.beta) <= fit.evidence + 1e-9


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_logme_agrees_with_direct_maximisation_of_the_evidence(shape):
    """An independent implementation: maximise the dense evidence over (log α, log β) with a generic optimiser."""
    from scipy.optimize import minimize

    features, labels = _data(*SHAPES[shape], signal=3.0, seed=1)
    target = (labels == 2).astype(float)
    fit = logme_target(features, target)
    best = minimize(lambda p: -log_evidence_dense(features, target, math.exp(p[0]), math.exp(p[1])),
                    x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    assert fit.evidence == pytest.approx(-best.fun, abs=1e-5)
    assert fit.evidence >= -best.fun - 1e-7


def test_logme_keeps_the_log_alpha_term_of_missing_dimensions():
    """With N < D the reference implementation drops (D − N)·log α / 2; the dense evidence says it belongs."""
    features, labels = _data(*SHAPES["few examples, wide features"], signal=3.0, seed=2)
    target = (labels == 0).astype(float)
    fit = logme_target(features, target)
    assert math.isfinite(fit.alpha)
    dropped = fit.evidence - (features.shape[1] - features.shape[0]) * math.log(fit.alpha) / 2 / features.shape[0]
    dense = log_evidence_dense(features, target, fit.alpha, fit.beta)
    assert abs(fit.evidence - dense) < 1e-8 < abs(dropped - dense)


@pytest.mark.parametrize("shape, signal", [("many examples", 0.0), ("few examples, wide features", 1.0),
                                           ("few examples, wide features", 3.0)])
def test_logme_fits_every_column_at_once_as_it_would_alone(shape, signal):
    """The columns iterate together but stop on their own (converged, switched off, noise-free, out of steps)."""
    features, labels = _data(*SHAPES[shape], classes=6, signal=signal)
    targets = (labels[:, None] == np.arange(6)).astype(float)
    together = logme_fits(features, targets)
    alone = [logme_target(features, targets[:, k]) for k in range(6)]
    for k, (fit, reference) in enumerate(zip(together, alone, strict=True)):
        assert (fit.converged, fit.iterations) == (reference.converged, reference.iterations)
        for value, expected in ((fit.evidence, reference.evidence), (fit.alpha, reference.alpha),
                                (fit.beta, reference.beta)):
            assert value == pytest.approx(expected, rel=1e-9)
        if math.isfinite(fit.alpha):
            dense = log_evidence_dense(features, targets[:, k], fit.alpha, fit.beta)
            assert fit.evidence == pytest.approx(dense, abs=1e-8)
    assert len({(math.isinf(f.alpha), math.isinf(f.beta), f.converged) for f in together}) >= 2, "ways to stop"
    assert logme(features, labels) == pytest.approx(np.mean([f.evidence for f in alone]), rel=1e-12)


def test_logme_reaches_the_maximum_evidence_of_every_class_when_the_features_fit_exactly():
    """With fewer examples than dimensions the features fit any target: the evidence may grow up to β = ∞, where
    N − γ and the part of y outside the features' span are rounding noise unless computed as such. Taken from
    that noise, the fixed point was thrown to the α = ∞ boundary for half of these classes (−0.73 against −0.39)."""
    from scipy.optimize import minimize

    features, labels = _data(*SHAPES["few examples, wide features"], signal=3.0)
    for c in range(4):
        target = (labels == c).astype(float)
        fit = logme_target(features, target)
        best = minimize(lambda p, t=target: -log_evidence_dense(features, t, math.exp(p[0]), math.exp(p[1])),
                        x0=[0.0, 0.0], method="Nelder-Mead",
                        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        assert fit.converged and fit.beta == math.inf
        assert fit.evidence == pytest.approx(-best.fun, abs=1e-6) and fit.evidence >= -best.fun - 1e-7


def test_logme_prefers_informative_features_and_handles_degenerate_ones():
    informative, labels = _data(200, 32, signal=1.5)
    noise = np.random.default_rng(3).normal(size=(200, 32))
    assert logme(informative, labels) > logme(noise, labels)
    assert math.isfinite(logme(np.zeros((50, 8)), labels[:50]))
    multi = np.stack([labels == 0, labels == 1], axis=1).astype(float)
    assert math.isfinite(logme(informative, multi))


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_ledoit_wolf_matches_scikit_learn(shape):
    from sklearn.covariance import LedoitWolf

    features, _ = _data(*SHAPES[shape])
    covariance, shrinkage = ledoit_wolf(features)
    reference = LedoitWolf().fit(features)
    assert shrinkage == pytest.approx(reference.shrinkage_, abs=1e-10)
    assert np.allclose(covariance, reference.covariance_, atol=1e-10)


def test_hscore_is_the_between_class_trace_under_the_shrunk_covariance():
    from sklearn.covariance import LedoitWolf

    features, labels = _data(150, 20)
    covariance = LedoitWolf().fit(features).covariance_
    centred = features - features.mean(axis=0)
    between = sum((labels == c).mean() * np.outer(centred[labels == c].mean(0), centred[labels == c].mean(0))
                  for c in np.unique(labels))
    assert hscore_shrinkage(features, labels) == pytest.approx(np.trace(np.linalg.solve(covariance, between)))
    assert hscore_shrinkage(features * 7.5, labels) == pytest.approx(hscore_shrinkage(features, labels))
    assert hscore_shrinkage(features, labels) > hscore_shrinkage(np.random.default_rng(0).normal(size=(150, 20)),
                                                                 labels)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_knn_leave_one_out_matches_scikit_learn(k):
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    features, labels = _data(120, 16, classes=3, signal=0.7, seed=k)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=k), unit, labels, cv=LeaveOneOut())
    assert knn_loo_accuracy(features, labels, k=k) == pytest.approx(np.mean(predicted == labels))


# SFDA on `_data(*args) * scale`, as the authors' reference implementation scores it: SFDA_Score in metrics.py of
# TencentARC/SFDA@3b7edf76bd682acb1eba4f4c5eb7ea7f3f7f6c59, run on these seeded inputs. Their shrinkage λ was
# 0.2133 for the first and 0.000642 for the second.
SFDA_REFERENCE = [((120, 16, 4, 1.0, 5), 0.5, 0.5244112198471895), ((300, 24, 4, 0.5, 1), 1.0, 0.33394927409903896)]


@pytest.mark.parametrize("args, scale, expected", SFDA_REFERENCE)
def test_sfda_matches_the_authors_implementation(args, scale, expected):
    features, labels = _data(*args)
    features *= scale
    before = features.copy()
    assert sfda(features, labels) == pytest.approx(expected, rel=1e-9)
    assert np.array_equal(features, before), "the input is left as it was"
    assert sfda(features, labels + 7) == pytest.approx(expected, rel=1e-9), "labels are renumbered"


def test_sfda_prefers_separated_classes_and_refuses_degenerate_features():
    features, labels = _data(200, 12, classes=3, signal=1.0, seed=3)
    features *= 0.5                          # a scale where its shrinkage is neither 1 nor at its floor
    shuffled = np.random.default_rng(0).permutation(labels)
    assert 0 < sfda(features, shuffled) < sfda(features, labels) <= 1
    with pytest.raises(np.linalg.LinAlgError):
        sfda(np.ones((40, 8)), labels[:40])  # no scatter within the classes: no Fisher space
    assert math.isnan(sfda(features, np.zeros(200, dtype=int)))


# --- zoo recommend --data ---------------------------------------------------------------------------------------

CANDIDATES = {
    "image-cls": "test_resnet.r160_in1k,test_vit.r160_in1k",
    "audio-cls": "tiny-wav2vec2,tiny-whisper",
    # tiny-distilbert is a local folder (see _text_registry); distilbert-base-uncased is a core-registry model the
    # test Hub does not serve: it is reported as not scored
    "text-cls": "tiny-bert,tiny-distilbert,distilbert-base-uncased",
}


def _text_registry(folder) -> str:
    """A registry file with a second tiny text backbone, saved in a local folder."""
    from tiny_models import build_distilbert, seeded

    with seeded("tiny-distilbert"):
        build_distilbert(folder / "tiny-distilbert")
    registry = folder / "text.toml"
    registry.write_text(f'''[[backbone]]
name = "tiny-distilbert"
family = "transformers"
source = "local-dir:{folder / 'tiny-distilbert'}"
tasks = ["text-cls"]
params_m = 0.07
gflops = 0.002
input = {{ max_tokens = 64, seq_len = 16 }}
license = "apache-2.0"
languages = ["en"]
pretrain = "random weights (test fixture)"
''')
    return str(registry)


@pytest.mark.parametrize("task", list(CANDIDATES))
def test_recommend_with_data_returns_both_rankings_scores_intervals_and_next_command(task, hub, datasets, tmp_path):
    env = {"ZOO_FEATURE_CACHE": str(tmp_path / "features")}
    registries = [*REGISTRY, _text_registry(tmp_path)] if task == "text-cls" else REGISTRY
    args = ["recommend", "--task", task, "--data", str(datasets[task]), "--candidates", CANDIDATES[task],
            "--bootstrap", "10", "--budget-s", "240", *(f"--registry={r}" for r in registries), "--json"]
    result = run_zoo(*args, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["method"] == "data" and out["task"] == task
    assert set(out["rankings"]["data_free"]) == set(CANDIDATES[task].split(","))
    scored = [c for c in out["candidates"] if c["status"] == "scored"]
    assert out["rankings"]["combined"] == [c["name"] for c in scored]
    assert out["estimators"] == ["logme", "hscore", "knn", "sfda"]
    for cand in scored:
        assert set(cand["scores"]) == set(out["estimators"])
        assert all(math.isfinite(v) for v in cand["scores"].values())
        low, high = cand["interval"]
        assert low <= high and cand["reason"] and cand["next_command"].startswith("zoo adapt ")
    assert out["next_command"] == scored[0]["next_command"] and out["strategy"] in ("auto", "linear", "lora", "full")
    assert out["next_command"].endswith(" ".join(f"--registry {r}" for r in registries)), "it runs as printed"
    assert out["sample"]["size"] <= 1000 and out["elapsed_s"] <= out["budget_s"]
    if task == "text-cls":
        missing = next(c for c in out["candidates"] if c["name"] == "distilbert-base-uncased")
        assert missing["status"] == "failed" and missing["error"]
    assert len(scored) == 2 and {c["rank"] for c in scored} == {1, 2}
    assert scored[0]["scores"] != scored[1]["scores"], "each backbone's own features were scored"

    again = json.loads(run_zoo(*args, env=env).stdout)
    assert all(c["cached"] for c in again["candidates"] if c["status"] == "scored"), "features come from the cache"
    assert [c["scores"] for c in again["candidates"]] == [c["scores"] for c in out["candidates"]]


def test_text_features_are_averaged_over_layers_by_default(hub, datasets, tmp_path, monkeypatch):
    """Unless told `--layers last`, a text backbone is scored on its token means averaged over every layer."""
    from zoo_transformers.family import TransformersClassifier

    from zoo import api

    asked = []
    features = TransformersClassifier.features

    def spy(self, batch, *, layers="last"):
        asked.append(layers)
        return features(self, batch, layers=layers)

    monkeypatch.setattr(TransformersClassifier, "features", spy)
    monkeypatch.setenv("ZOO_FEATURE_CACHE", str(tmp_path / "features"))
    result = api.recommend_with_data(task="text-cls", data=str(datasets["text-cls"]), candidates=["tiny-bert"],
                                     registry_files=REGISTRY, sample=40, bootstrap=0)
    assert result.layers == "mean" and asked and set(asked) == {"mean"}


def test_recommend_with_data_shows_a_table_and_keeps_to_its_budget(hub, datasets, tmp_path):
    table = run_zoo("recommend", "--task", "image-cls", "--data", str(datasets["image-cls"]), "--candidates",
                    CANDIDATES["image-cls"], "--bootstrap", "5", "-r", *REGISTRY,
                    env={"ZOO_FEATURE_CACHE": str(tmp_path / "a"), "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert "data-free #" in table.stdout and "Next: zoo adapt" in table.stdout
    spent = run_zoo("recommend", "--task", "image-cls", "--data", str(datasets["image-cls"]), "--candidates",
                    CANDIDATES["image-cls"], "--budget-s", "0", "-r", *REGISTRY,
                    env={"ZOO_FEATURE_CACHE": str(tmp_path / "b")})
    assert spent.returncode == 1 and "--budget-s" in spent.stderr
    bad = run_zoo("recommend", "--task", "image-cls", "--data", str(datasets["image-cls"]), "--candidates",
                  "tiny-bert", "-r", *REGISTRY)
    assert bad.returncode == 2 and "tiny-bert" in bad.stderr


# --- the combination and successive halving ---------------------------------------------------------------------


def _estimates(scores: dict[str, list[float]], *, noise: float = 0.02, subsamples: int = 20, seed: int = 0):
    from zoo.recommend.combine import Estimates

    rng = np.random.default_rng(seed)
    count = len(next(iter(scores.values())))
    return Estimates([f"b{i}" for i in range(count)], 500, {k: np.array(v, dtype=float) for k, v in scores.items()},
                     {k: np.array(v) + rng.normal(0, noise, (subsamples, count)) for k, v in scores.items()})


# Pools every estimator, so that pooling itself is tested whatever zoo.recommend.combine.COMBINATION pools.
POOL_ALL = {"prior_floor": 0.5, "pooling": "random-effects"}


def test_a_near_tie_in_the_prior_carries_near_zero_weight():
    """Two backbones whose data-free scores differ by 0.004 (estimated speed alone): the data decide."""
    from zoo.recommend.combine import COMBINATION, CombinationRule, combine

    for rule in (COMBINATION, CombinationRule(**POOL_ALL)):
        result = combine(np.array([0.504, 0.500]), _estimates({"logme": [0.10, 0.50], "knn": [0.60, 0.80]}), rule)
        assert abs(result.prior).max() < 0.05
        assert result.combined[1] > result.combined[0]


def test_the_prior_counts_by_how_well_it_agrees_with_consistent_data():
    from zoo.recommend.combine import CombinationRule, combine

    rule = CombinationRule(**POOL_ALL)
    data = _estimates({"logme": [5, 4, 3, 2, 1], "hscore": [9, 7, 6, 3, 1], "knn": [0.9, 0.8, 0.7, 0.6, 0.5]})
    against = combine(np.array([0.1, 0.3, 0.5, 0.7, 0.9]), data, rule)
    along = combine(np.array([0.9, 0.7, 0.5, 0.3, 0.1]), data, rule)
    assert list(np.argsort(-against.combined)) == [0, 1, 2, 3, 4], "a misleading prior does not reorder the data"
    assert against.prior_weight.mean() < along.prior_weight.mean()
    noisier = combine(np.array([0.1, 0.3, 0.5, 0.7, 0.9]), _estimates(
        {"logme": [5, 4, 3, 2, 1], "hscore": [9, 7, 6, 3, 1], "knn": [0.9, 0.8, 0.7, 0.6, 0.5]}, noise=1.0), rule)
    assert noisier.prior_weight.mean() > against.prior_weight.mean(), "less certain data leave the prior more say"


def test_estimators_that_disagree_are_pooled_about_equally_however_steady():
    from zoo.recommend.combine import CombinationRule, combine

    steady_but_alone = _estimates({"logme": [1, 2, 3, 4], "knn": [4, 3, 2, 1]}, noise=1e-4)
    result = combine(np.full(4, 0.5), steady_but_alone, CombinationRule(**POOL_ALL))
    assert result.heterogeneity > 1
    assert all(0.4 < w < 0.6 for w in result.estimator_weights.values())
    only = combine(np.full(4, 0.5), steady_but_alone, CombinationRule(prior_floor=0.5, estimators=("logme",)))
    assert list(only.estimator_weights) == ["logme"] and list(np.argsort(-only.combined)) == [3, 2, 1, 0]


def test_halving_stages_and_a_sample_whose_prefixes_keep_the_class_shares():
    from types import SimpleNamespace

    from zoo.recommend.transfer import halving_stages, stratified_sample

    assert halving_stages(20, 1000) == [250, 500, 1000]
    assert halving_stages(10, 1000) == [500, 1000]
    assert halving_stages(5, 1000) == [1000]
    assert halving_stages(12, 120) == [60, 120]
    examples = [SimpleNamespace(labels=[label], id=str(i)) for i, label in enumerate([0] * 300 + [1] * 100 + [2] * 50)]
    sample = stratified_sample(examples, 200, seed=0)
    assert len(sample) == 200 and len({e.id for e in sample}) == 200
    for size in (20, 50, 100, 200):
        shares = np.bincount([e.labels[0] for e in sample[:size]], minlength=3) / size
        assert np.allclose(shares, [300 / 450, 100 / 450, 50 / 450], atol=1.5 / size + 0.01)


def test_many_candidates_are_halved_and_an_unloadable_one_is_replaced_by_the_next(hub, datasets, tmp_path):
    """Seven small backbones fit the constraints; the data-free favourite cannot be loaded (the Hub does not
    serve it), so the next one takes its place, and successive halving cuts three at the first stage."""
    registry = _text_registry(tmp_path)
    text = Path(registry).read_text()
    copies = "".join(text.replace('name = "tiny-distilbert"', f'name = "tiny-distilbert-{k}"') for k in range(2, 6))
    unserved = ('[[backbone]]\nname = "not-served"\nfamily = "transformers"\nsource = "zoo-test/not-served"\n'
                'tasks = ["text-cls"]\nparams_m = 0.05\ngflops = 0.001\ninput = { max_tokens = 64, seq_len = 16 }\n'
                'license = "apache-2.0"\nlanguages = ["en"]\npretrain = "none (test fixture)"\nreference = '
                '[{ metric = "glue/avg", value = 95.0, source = "test fixture" }]\n')
    Path(registry).write_text(text + "\n" + copies + "\n" + unserved)
    from data_factory import make_text_csv

    data = make_text_csv(tmp_path / "reviews.csv", per_class=60)
    common = ["recommend", "--task", "text-cls", "--data", str(data), "--max-params", "1",
              "-r", *REGISTRY, "-r", registry, "--bootstrap", "3", "--json"]
    env = {"ZOO_FEATURE_CACHE": str(tmp_path / "features")}
    result = run_zoo(*common, "--shortlist", "6", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    status = {c["name"]: c for c in out["candidates"]}
    assert status["not-served"]["status"] == "failed" and "not-served" in out["rankings"]["data_free"]
    assert [s["sample"] for s in out["stages"]] == [60, 120]
    assert len(out["stages"][0]["scored"]) == 6 and len(out["stages"][0]["cut"]) == 3
    cut = [c for c in out["candidates"] if c["status"] == "cut"]
    assert {c["name"] for c in cut} == set(out["stages"][0]["cut"])
    assert all(c["stage"] == 1 and "cut at stage 1 of 2" in c["reason"] for c in cut)
    ranked = out["rankings"]["combined"]
    assert len(ranked) == 6 and [status[n]["stage"] for n in ranked] == [2, 2, 2, 1, 1, 1], "finalists first"
    assert [status[n]["rank"] for n in ranked] == [1, 2, 3, 4, 5, 6]
    assert all(len(out["rankings"][e]) == 3 for e in out["estimators"]), "estimators rank the finalists"

    shown = run_zoo(*common[:-1], "--shortlist", "6", env={**env, "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    assert "successive halving: 6 on 60 → 3 on 120" in shown.stdout and "cut at stage 1 of 2" in shown.stdout

    nothing = run_zoo(*common, "--candidates", "not-served", env=env)
    assert nothing.returncode == 1
    assert "could not be loaded" in nothing.stderr and "not-served" in nothing.stderr
    assert "budget" not in nothing.stderr


@pytest.mark.parametrize("prior_ranks,combined,expected", [
    # b and c tied for data-free #2 hold #2–#3: b's move to #1 is one place up, c's #3 is within the tie
    ("a1 b2 c2 d4", "b a c d", ["up 1 from data-free tied #2–#3", "down 1 from data-free #1",
                                "data-free tied #2–#3, now #3", "same place as without data"]),
    ("a1 b2 c2 d4", "a d b c", ["same place as without data", "up 2 from data-free #4",
                                "data-free tied #2–#3, now #3", "down 1 from data-free tied #2–#3"]),
    ("a1 b1 c1 d1", "d c b a", [f"data-free tied #1–#4, now #{n}" for n in (1, 2, 3, 4)]),
])
def test_reason_says_where_the_sample_moved_a_data_free_tie(prior_ranks, combined, expected):
    from zoo.recommend.transfer import ScoredCandidate, _reason

    prior = dict((word[0], int(word[1:])) for word in prior_ranks.split())
    scored = [ScoredCandidate(name, "timm", prior[name], 0.5, status="scored", rank=rank, combined=-rank,
                              scores={"logme": -rank}) for rank, name in enumerate(combined.split(), start=1)]
    reasons = [_reason(entry, scored, ["logme"]) for entry in scored]
    assert [reason.split("; ")[0] for reason in reasons] == expected
    assert reasons[0].endswith("best by LogME") and reasons[1].endswith("LogME 2nd")
