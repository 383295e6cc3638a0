"""zoo ensemble: Caruana's selection never scores below the best member on validation, the ensemble is a run that
predict, bench, serve and push accept (and export and explain refuse), and runs that do not fit are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_REGISTRY
from typer.testing import CliRunner

from zoo import api
from zoo.better.ensemble import mix, select, to_logits, to_probabilities
from zoo.cli import app as cli_app
from zoo.engine.config import AdaptConfig
from zoo.engine.metrics import compute_metrics
from zoo.errors import InvalidInputError
from zoo.family import Classifier
from zoo.runs.outputs import read_validation_outputs, write_validation_outputs

BACKBONES = ("test_resnet.r160_in1k", "test_vit.r160_in1k")
TOKEN = "hf_zooTestTokenEnsemble012345678"


@pytest.fixture(scope="module")
def members(hub, tmp_path_factory):
    """Two finished linear runs of different backbones on one image dataset with a test split, and that data."""
    import data_factory as factory

    root = tmp_path_factory.mktemp("ensemble")
    data = factory.make_image_folder(root / "photos", layout="splits", per_class=12)
    runs = []
    for backbone in BACKBONES:
        run = root / backbone.split(".")[0]
        api.adapt(backbone, str(data), output=run, registry_files=[str(FIXTURE_REGISTRY)],
                  config=AdaptConfig(strategy="linear", batch_size=8, explain_card=0), store=False)
        runs.append(run)
    return runs, data


@pytest.fixture(scope="module")
def mean_ensemble(members, tmp_path_factory):
    """Both members, equal weights: the ensemble that predict, bench, serve and push are checked on."""
    runs, _ = members
    output = tmp_path_factory.mktemp("mean") / "ens"
    api.ensemble(runs, method="mean", output=output, store=False, device="cpu")
    return output


def _quality(rng, targets, classes, correct):
    """Logits of a member right on about ``correct`` of the examples, with random confidence."""
    logits = rng.normal(0, 1, (len(targets), classes))
    right = rng.random(len(targets)) < correct
    logits[np.arange(len(targets)), np.where(right, targets, (targets + 1) % classes)] += rng.uniform(0.5, 3)
    return logits


@pytest.mark.parametrize("multi_label", [False, True])
def test_caruana_never_scores_below_the_best_member_and_weights_sum_to_one(multi_label):
    rng = np.random.default_rng(0)
    labels = [f"c{i}" for i in range(4)]
    for _ in range(5):
        if multi_label:
            targets = (rng.random((120, 4)) < 0.4).astype(np.float32)
            logits = [rng.normal(0, 1, (120, 4)) + (targets * 2 - 1) * rng.uniform(0.2, 2) for _ in range(4)]
            metric = "micro_f1"
        else:
            targets = rng.integers(0, 4, 120)
            logits = [_quality(rng, targets, 4, correct) for correct in rng.uniform(0.4, 0.8, 5)]
            metric = "accuracy"
        probabilities = [to_probabilities(x, multi_label=multi_label) for x in logits]
        chosen = select(probabilities, targets, labels, metric=metric, multi_label=multi_label, size=20)
        assert chosen.score >= max(chosen.member_scores)
        assert sum(chosen.weights) == pytest.approx(1.0) and sum(chosen.counts) == chosen.steps <= 20
        assert [step["step"] for step in chosen.trajectory] == list(range(1, 21))
        assert chosen.trajectory[chosen.steps - 1]["score"] == chosen.score
        # The score selection reads is the one a run reports for the mixed probabilities.
        reported = compute_metrics(targets, to_logits(mix(probabilities, chosen.weights), multi_label=multi_label),
                                   labels, multi_label=multi_label)
        assert reported[metric] == pytest.approx(chosen.score, abs=1e-12)
        mean = select(probabilities, targets, labels, metric=metric, multi_label=multi_label, method="mean")
        assert mean.weights == [1 / len(logits)] * len(logits)


def test_caruana_mixes_members_that_are_right_on_different_examples():
    # Each member is sure and right on its own half and unsure elsewhere: together they are right everywhere.
    targets = np.arange(40) % 2
    first, second = np.zeros((40, 2)), np.zeros((40, 2))
    first[np.arange(20), targets[:20]] = 5
    first[20:, :] = [0.2, 0]            # leans to class 0, wrong on half of its unsure examples
    second[np.arange(20, 40), targets[20:]] = 5
    second[:20, :] = [0, 0.2]
    probabilities = [to_probabilities(x, multi_label=False) for x in (first, second)]
    chosen = select(probabilities, targets, ["a", "b"], metric="accuracy", multi_label=False, size=10)
    assert max(chosen.member_scores) == 0.75 and chosen.score == 1.0
    assert all(weight > 0 for weight in chosen.weights)


def test_an_ensemble_of_two_backbones_is_a_run(members, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_STORE", str(tmp_path / "history.sqlite"))
    runs, _ = members
    record = api.ensemble(runs, output=tmp_path / "ens", size=10, device="cpu")
    run = tmp_path / "ens"
    assert record["status"] == "finished" and api.run_record(run).finished
    section = record["ensemble"]
    assert section["method"] == "caruana" and section["metric"] == "accuracy"
    assert [m["backbone"] for m in section["members"]] == list(BACKBONES)
    assert sum(m["weight"] for m in section["members"]) == pytest.approx(1.0)
    assert section["score"] >= max(m["validation"]["accuracy"] for m in section["members"])
    assert section["score"] == record["metrics"]["best"]["accuracy"] and section["gain"] >= 0
    assert record["metrics"]["test"] is not None and section["test"] is None   # the members share a test split
    assert any("fewer than 25 per member" in warning for warning in section["warnings"])
    # Its own validation outputs, on the same examples as its members'.
    mine, theirs = read_validation_outputs(run), read_validation_outputs(runs[0])
    assert mine.key == theirs.key and mine.logits.shape == theirs.logits.shape
    # Self-contained: each chosen member's saved model is inside (linked, same bytes), with the manifest.
    manifest = json.loads((run / "zoo_ensemble.json").read_text())
    assert [m["weight"] for m in manifest["members"]] == [m["weight"] for m in section["members"] if m["weight"]]
    for member in manifest["members"]:
        source = next(r for r in runs if r.name == member["run"])
        assert (run / member["dir"] / "model.safetensors").read_bytes() == \
            (source / "model.safetensors").read_bytes()
    assert "An ensemble of" in (run / "README.md").read_text()
    listed = api.list_runs(backbone="ensemble(*", store=tmp_path / "history.sqlite").runs
    assert [Path(r.run_dir) for r in listed] == [run.resolve()] and listed[0].strategy == "ensemble"


def test_predict_bench_serve_and_push_take_the_ensemble(members, mean_ensemble, hub, tmp_path):
    runs, data = members
    ens = mean_ensemble
    assert json.loads((ens / "zoo_ensemble.json").read_text())["members"][1]["weight"] == 0.5
    inputs = [str(path) for path in sorted((data / "test").rglob("*.png"))[::4]]
    # predict: the mean of the members' probabilities.
    ours = api.predict(ens, inputs, top_k=3)
    alone = [api.predict(run, inputs, top_k=3) for run in runs]
    for index, prediction in enumerate(ours):
        mean = {label: np.mean([next(e["score"] for e in one[index].labels if e["label"] == label) for one in alone])
                for label in ("red", "green", "blue")}
        assert {e["label"]: e["score"] for e in prediction.labels} == pytest.approx(mean, abs=1e-5)

    # bench: the cost is the sum of the members'.
    fast = dict(batch_sizes=(1,), warmup=1, iters=3, min_seconds=0.0, store=False)
    benched = api.bench(str(ens), data=str(data), **fast)
    parts = [api.bench(str(run), **fast) for run in runs]
    assert benched.gflops == pytest.approx(sum(p.gflops for p in parts), rel=1e-3)
    assert benched.params_m == pytest.approx(sum(p.params_m for p in parts), rel=1e-3)
    assert benched.size_mb == pytest.approx(sum(p.size_mb for p in parts), rel=1e-3)
    assert benched.accuracy["examples"] == 9 and benched.backbone.startswith("ensemble(")

    # serve: /predict answers what zoo predict answers; /explain refuses with one line.
    from fastapi.testclient import TestClient

    with TestClient(api.serving_app(ens)) as client:
        files = [("files", (Path(p).name, Path(p).read_bytes(), "image/png")) for p in inputs[:2]]
        answer = client.post("/predict?top_k=3", files=files)
        assert answer.status_code == 200, answer.text
        for served, predicted in zip(answer.json()["predictions"], ours, strict=False):
            assert {e["label"]: e["score"] for e in served["labels"]} == pytest.approx(
                {e["label"]: e["score"] for e in predicted.labels}, abs=1e-5)
        refused = client.post("/explain", files=files[:1])
        assert refused.status_code == 400 and "explain each member" in refused.json()["error"]
        assert client.get(f"/v2/models/{ens.name}").json()["parameters"]["explainable"] is False

    # push: the members, the manifest, a public record and the card arrive; the pushed folder predicts the same.
    hub.store.add_token(TOKEN, "ensembler")
    pushed = api.push(ens, "ensembler/photos-ensemble", token=TOKEN, store=False)
    sent = {f.path for f in pushed.files}
    assert {"zoo_ensemble.json", "zoo_run.json", "README.md"} <= sent
    assert {f"members/{name}/model.safetensors" for name in ("01-test_resnet", "02-test_vit")} <= sent
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download("ensembler/photos-ensemble", token=TOKEN, cache_dir=tmp_path / "cache"))
    public = json.loads((folder / "zoo_run.json").read_text())
    assert public["run_dir"] == ens.name and [m["run"] for m in public["ensemble"]["members"]] == [r.name for r in runs]
    again = api.predict(folder, inputs[:2], top_k=3)
    assert [p.labels for p in again] == [p.labels for p in ours[:2]]


def test_export_and_explain_refuse_an_ensemble_with_one_line(mean_ensemble, members):
    _, data = members
    image = str(next((data / "test").rglob("*.png")))
    for call in (lambda: api.export(mean_ensemble), lambda: api.explain(mean_ensemble, [image]),
                 lambda: api.predict(mean_ensemble, [image], explain=True)):
        with pytest.raises(InvalidInputError, match=r"(export|explain) each member") as refused:
            call()
        assert "\n" not in str(refused.value)
    assert not (mean_ensemble / "onnx").exists()


def _copy(run: Path, where: Path, **changes) -> Path:
    copy = where / f"{run.name}-{'-'.join(changes) or 'copy'}"
    shutil.copytree(run, copy)
    record = json.loads((copy / "zoo_run.json").read_text())
    record.update(changes)
    (copy / "zoo_run.json").write_text(json.dumps(record))
    return copy


def test_runs_that_do_not_fit_are_refused_and_nothing_is_written(members, tmp_path):
    runs, data = members
    resnet, vit = runs
    record = json.loads((vit / "zoo_run.json").read_text())
    out = tmp_path / "out"
    cases = {
        "at least two runs": [resnet],
        "given twice": [resnet, resnet],
        "labels": [resnet, _copy(vit, tmp_path, labels=list(reversed(record["labels"])))],
        "multi-label": [resnet, _copy(vit, tmp_path, multi_label=True)],
        "has not finished": [resnet, _copy(vit, tmp_path, status="running")],
    }
    for expected, given in cases.items():
        with pytest.raises(InvalidInputError, match=expected) as refused:
            api.ensemble(given, output=out, store=False)
        assert "\n" not in str(refused.value)
    for option, value in (("size", 0), ("size", 101), ("method", "vote")):
        with pytest.raises(InvalidInputError, match=f"--{option}"):
            api.ensemble(runs, output=out, store=False, **{option: value})
    assert not out.exists()

    # Stored outputs of other examples: refused, asking for --val; with --val both are scored on it.
    moved = _copy(vit, tmp_path)
    outputs = read_validation_outputs(moved)
    write_validation_outputs(moved, logits=outputs.logits, targets=outputs.targets, label_names=outputs.labels,
                             key="another split")
    with pytest.raises(InvalidInputError, match="give --val DATA"):
        api.ensemble([resnet, moved], output=out, store=False)
    assert not out.exists()
    record = api.ensemble([resnet, moved], val=str(data), output=out, store=False, device="cpu")
    validation = record["ensemble"]["validation"]
    assert validation["source"] == str(data) and validation["examples"] == 9   # the val/ folder, not test/
    assert validation["key"] == read_validation_outputs(resnet).key


def test_the_cli_prints_the_members_and_json(members, tmp_path):
    runs, _ = members
    shown = CliRunner().invoke(cli_app, ["ensemble", *map(str, runs), "-o", str(tmp_path / "a"), "--method", "mean",
                                         "--device", "cpu", "--no-store"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "test_resnet" in shown.stdout and "best member" in shown.stdout and "zoo predict" in shown.stdout
    assert "warning:" not in shown.stdout    # mean chooses nothing: no warning about validation's size
    printed = CliRunner().invoke(cli_app, ["ensemble", *map(str, runs), "-o", str(tmp_path / "b"), "--json",
                                           "--size", "5", "--no-store"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["ensemble"]["size"] == 5 and "warning: validation has" in printed.stderr
    bad = CliRunner().invoke(cli_app, ["ensemble", str(runs[0]), "-o", str(tmp_path / "c")])
    assert bad.exit_code != 0 and "at least two runs" in bad.stderr and not (tmp_path / "c").exists()


class _Fixed(Classifier):
    """A stand-in member: its logits are a fixed row per input length, and it records the inputs it was given."""

    def __init__(self, rows, *, sample_rate):
        import torch

        self.task, self.labels, self.sample_rate = "audio-cls", ["a", "b", "c"], sample_rate
        self.rows, self.seen = torch.tensor(rows, dtype=torch.float32), []
        self.model = torch.nn.Linear(1, 1)

    def preprocess(self, example, *, train=False):
        self.seen.append(len(example))
        return {"length": np.array(len(example))}

    def collate(self, items):
        import torch

        return {"length": torch.tensor(np.stack([item["length"] for item in items]))}

    def forward(self, batch):
        return self.rows[(batch["length"] % len(self.rows)).long()]

    def features(self, batch):
        raise NotImplementedError

    def head_parameter_names(self):
        return []

    def parameter_groups(self):
        return []

    def lora_targets(self):
        return []

    def save(self, directory):
        return []


def test_members_get_their_own_sample_rate_and_the_forward_mixes_probabilities():
    import torch

    from zoo.better.ensembled import EnsembleClassifier, ManifestMember

    slow = _Fixed([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], sample_rate=8000)
    fast = _Fixed([[0.0, 0.0, 1.0]], sample_rate=16000)
    entries = [ManifestMember(dir="m", weight=w, run=n, backbone=n, family="x", max_seconds=0.5)
               for n, w in (("slow", 3.0), ("fast", 1.0))]
    ensemble = EnsembleClassifier([slow, fast], [3.0, 1.0], entries=entries)
    assert ensemble.sample_rate == 16000 and ensemble.weights == [0.75, 0.25]
    one_second = np.zeros(16000, dtype=np.float32)
    batch = ensemble.collate([ensemble.preprocess(one_second), ensemble.preprocess(one_second[:6002])])
    assert slow.seen == [4000, 3001] and fast.seen == [8000, 6002]   # resampled, then cut to its 0.5 s
    mixed = ensemble.forward(batch).softmax(-1)
    expected = 0.75 * slow.rows[[0, 1]].softmax(-1) + 0.25 * fast.rows[[0, 0]].softmax(-1)
    assert torch.allclose(mixed, expected, atol=1e-6)
    other = _Fixed([[0.0, 1.0, 0.0]], sample_rate=8000)
    other.labels = ["c", "b", "a"]
    with pytest.raises(InvalidInputError, match="share all three"):
        EnsembleClassifier([slow, other], [1, 1])
