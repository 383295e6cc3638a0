"""zoo soup and zoo adapt --soup-top-k: weight averaging that never scores below its best part on held-out data,
written as a run that predict and bench take, and refused with one line when the runs cannot be averaged."""

from __future__ import annotations

import json
import shutil

import data_factory as factory
import pytest
from conftest import FIXTURE_REGISTRY
from typer.testing import CliRunner

from zoo import api
from zoo.cli import app
from zoo.engine.checkpoint import Progress, load_checkpoint, save_checkpoint
from zoo.engine.config import AdaptConfig
from zoo.engine.run import AdaptRequest
from zoo.engine.soup import WeightSum, make_soup
from zoo.errors import InvalidInputError
from zoo.runs.outputs import read_validation_outputs

REGISTRY = [str(FIXTURE_REGISTRY)]


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    """Training data (its validation split drawn from it), a test file, and held-out data for --val."""
    root = tmp_path_factory.mktemp("soup-data")
    return {split: factory.make_text_csv(root / f"{split}.csv", per_class=per_class, seed=seed)
            for split, per_class, seed in (("train", 52, 0), ("test", 12, 2), ("held", 12, 3))}


def _config(seed: int, **overrides) -> AdaptConfig:
    # A high rate and small batches: the tiny random-weight backbone learns the task in two epochs, differently
    # for each seed.
    values = {"strategy": "full", "epochs": 2, "batch_size": 4, "lr": 1e-2, "patience": 0, "seed": seed,
              "explain_card": 0}
    return AdaptConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def seeds(hub, text_data, tmp_path_factory):
    """Three runs of one tiny backbone that differ only in their seed (head initialisation, batch order); the
    validation split drawn from the data is the same for all three, so their stored outputs can score a soup."""
    root = tmp_path_factory.mktemp("soup-runs")
    runs = []
    for seed in (0, 1, 2):
        api.adapt("tiny-bert", str(text_data["train"]), test=str(text_data["test"]), val_fraction=0.25,
                  output=root / f"seed{seed}", config=_config(seed), registry_files=REGISTRY, store=False)
        runs.append(root / f"seed{seed}")
    return runs


def _best(run) -> float:
    return json.loads((run / "zoo_run.json").read_text())["metrics"]["best"]["accuracy"]


def test_greedy_soup_of_three_seeds_is_never_below_its_best_ingredient(seeds, text_data, tmp_path):
    record = api.soup(seeds, output=tmp_path / "soup", store=False)
    soup, out = record["soup"], tmp_path / "soup"
    assert record["status"] == "finished" and record["strategy"] == "soup"
    assert soup["method"] == "greedy" and soup["held_out"]["data"] == "validation split"
    best = max(_best(run) for run in seeds)
    assert soup["best_ingredient"] == pytest.approx(best)
    assert soup["score"] >= best and record["metrics"]["best"]["accuracy"] == soup["score"]
    assert soup["kept"][0] == str(max(seeds, key=_best))   # the greedy soup starts from the best run
    assert sorted(entry["seed"] for entry in soup["ingredients"]) == [0, 1, 2] and record["metrics"]["test"]
    # Its validation outputs are the runs' examples (the ensemble reads it beside them), from the saved model.
    stored = read_validation_outputs(out)
    assert stored.key == read_validation_outputs(seeds[0]).key == record["validation_outputs"]["key"]
    val = AdaptRequest(**record["request"]).read_data(seed=record["seed"]).val
    predictions = api.predict(out, [example.input for example in val], top_k=1)
    assert [p.labels[0]["label"] for p in predictions] == [record["labels"][i] for i in stored.logits.argmax(1)]
    card = (out / "README.md").read_text()
    assert "greedy model soup" in card.lower() and "## How it was made" in card and "seed1" in card
    bench = api.bench(str(out), batch_sizes=(1,), iters=2, warmup=1, min_seconds=0, store=False)
    assert bench.weights == "adapted" and bench.latency_ms["p50"] > 0


def test_uniform_soup_chosen_on_held_out_data_through_the_cli(seeds, text_data, tmp_path):
    result = CliRunner().invoke(app, ["soup", *map(str, seeds), "--method", "uniform", "--val",
                                      str(text_data["held"]), "-o", str(tmp_path / "soup"), "--no-store", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    soup = record["soup"]
    assert soup["method"] == "uniform" and len(soup["kept"]) == 3
    assert soup["held_out"] == {**soup["held_out"], "data": str(text_data["held"]), "examples": 24}
    assert record["validation_outputs"]["examples"] == 24
    assert record["command"][:2] == ["zoo", "soup"] and "--val" in record["command"]


def _copy(run, tmp_path, name, **changes):
    """A copy of ``run`` whose record says otherwise in ``changes`` (dotted keys reach into sections)."""
    copy = tmp_path / name
    shutil.copytree(run, copy)
    record = json.loads((copy / "zoo_run.json").read_text())
    for key, value in changes.items():
        *path, last = key.split(".")
        section = record
        for part in path:
            section = section[part]
        section[last] = value
    (copy / "zoo_run.json").write_text(json.dumps(record))
    return copy


def _resized(run, tmp_path):
    """A copy of ``run`` whose saved model holds one tensor of another shape."""
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "resized"
    shutil.copytree(run, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    name = next(name for name, tensor in tensors.items() if tensor.ndim == 2)
    tensors[name] = tensors[name][:, :-1].contiguous()
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    return copy


@pytest.mark.parametrize("case,named", [
    ("one run", "at least two RUNs"),
    ("same run twice", "given twice"),
    ("another backbone", "fine-tuned from tiny-bart"),
    ("another commit", "at commit"),
    ("labels in another order", "another order"),
    ("unfinished", "has not finished"),
    ("an ensemble", "an ensemble"),
    ("another architecture", "its saved model holds"),
    ("other validation examples", "give --val DATA"),
])
def test_runs_that_cannot_be_averaged_are_refused_in_one_line(case, named, seeds, tmp_path):
    first = seeds[0]
    record = json.loads((first / "zoo_run.json").read_text())
    other = {
        "one run": lambda: None,
        "same run twice": lambda: first,
        "another backbone": lambda: _copy(first, tmp_path, "b", **{"backbone.name": "tiny-bart"}),
        "another commit": lambda: _copy(first, tmp_path, "c", **{"backbone.commit": "0" * 40}),
        "labels in another order": lambda: _copy(first, tmp_path, "l", labels=record["labels"][::-1]),
        "unfinished": lambda: _copy(first, tmp_path, "u", status="running"),
        "an ensemble": lambda: _copy(first, tmp_path, "e", ensemble={"members": []}),
        "another architecture": lambda: _resized(first, tmp_path),
        "other validation examples": lambda: _copy(first, tmp_path, "v", **{"validation_outputs.key": "other"}),
    }[case]()
    runs = [first] if other is None else ([first, other] if case != "unfinished" else [other, first])
    with pytest.raises(InvalidInputError, match=named) as refused:
        api.soup(runs, output=tmp_path / "soup", store=False)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "soup").exists(), "a refused soup writes nothing"


def test_a_refusal_through_the_cli_is_one_line_and_exit_code_2(seeds, tmp_path):
    result = CliRunner().invoke(app, ["soup", str(seeds[0]), "-o", str(tmp_path / "soup")])
    assert result.exit_code == 2 and "at least two RUNs" in result.output


def test_greedy_keeps_an_ingredient_only_when_the_score_does_not_drop():
    import torch

    weights = {"a": torch.tensor([1.0]), "b": torch.tensor([3.0]), "c": torch.tensor([-9.0])}
    counted = {"a": torch.tensor([1]), "b": torch.tensor([2]), "c": torch.tensor([3])}

    def load(name):
        return {"w": weights[name].clone(), "steps": counted[name]}

    def evaluate(tensors):   # best at w = 2: averaging a and b helps, adding c hurts
        return -abs(float(tensors["w"]) - 2.0), None

    soup = make_soup({"a": -1.0, "b": -1.0, "c": -11.0}, load=load, evaluate=evaluate, method="greedy")
    assert soup.kept == ["a", "b"] and float(soup.tensors["w"]) == 2.0 and soup.score == 0.0
    assert soup.best_ingredient == -1.0 and int(soup.tensors["steps"]) == 1   # integers: the first's
    uniform = make_soup({"a": -1.0, "b": -1.0, "c": -11.0}, load=load, evaluate=evaluate, method="uniform")
    assert uniform.kept == ["a", "b", "c"] and float(uniform.tensors["w"]) == pytest.approx(-5 / 3)
    half = WeightSum()
    half.add({"w": torch.tensor([1.0], dtype=torch.bfloat16)})
    assert half.average(plus={"w": torch.tensor([2.0], dtype=torch.bfloat16)})["w"].dtype == torch.bfloat16


def test_soup_top_k_ends_with_a_soup_of_epochs_never_below_the_best_epoch(hub, text_data, tmp_path, monkeypatch):
    import zoo.engine.setup

    def killed(*args, **kwargs):
        raise RuntimeError("killed after training")

    # Interrupted once training is over: the kept epochs are in the checkpoint, and the resumed run soups them.
    finalize_model = zoo.engine.setup.finalize_model
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", killed)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed after training"):
        api.adapt("tiny-bert", str(text_data["train"]), val_fraction=0.25, output=run,
                  config=_config(0, epochs=3, soup_top_k=2), registry_files=REGISTRY, store=False)
    kept = load_checkpoint(run).snapshots
    assert len(kept) == 2
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", finalize_model)
    record = api.resume(run, store=False)
    soup = record["soup"]
    best_epoch = max(epoch["val"]["accuracy"] for epoch in record["metrics"]["epochs"])
    assert soup["kind"] == "epochs" and soup["top_k"] == 2
    assert [entry["name"] for entry in soup["ingredients"]] == [f"epoch {e + 1}" for e in sorted(
        kept, key=lambda e: -record["metrics"]["epochs"][e]["val"]["accuracy"])]
    assert soup["best_ingredient"] == pytest.approx(best_epoch)
    assert record["metrics"]["best"]["accuracy"] == pytest.approx(soup["score"]) and soup["score"] >= best_epoch
    assert "--soup-top-k" in record["command"] and "--soup-top-k 2" in (run / "README.md").read_text()
    with pytest.raises(InvalidInputError, match="--soup-top-k 1"):
        AdaptConfig(soup_top_k=1)


def test_the_kept_epochs_survive_a_checkpoint(tmp_path):
    import torch

    snapshots = {0: {"w": torch.tensor([1.0])}, 2: {"w": torch.tensor([3.0])}}
    progress = Progress(epoch=3, snapshots=[{"epoch": 0, "score": 0.5}, {"epoch": 2, "score": 0.7}])
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for _ in range(2):   # the second checkpoint links the epochs' files instead of writing them again
        save_checkpoint(tmp_path, trainable={"w": torch.tensor([0.0])}, best=None, optimizer=optimizer,
                        scheduler=scheduler, progress=progress, snapshots=snapshots)
    restored = load_checkpoint(tmp_path)
    assert restored.progress.snapshots == progress.snapshots
    assert {epoch: float(t["w"]) for epoch, t in restored.snapshots.items()} == {0: 1.0, 2: 3.0}
