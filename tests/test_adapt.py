"""zoo adapt end to end: every family with every strategy, learning, native loading, resume, bad input."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import data_factory as factory
import numpy as np
import pytest
from conftest import FIXTURE_REGISTRY, run_zoo
from native_loading import native_predictions

from zoo import api
from zoo.engine.config import AdaptConfig
from zoo.engine.metrics import compute_metrics
from zoo.errors import InvalidInputError
from zoo.registry import read_registry_file
from zoo.runs.outputs import examples_key, read_validation_outputs

FIXTURES = read_registry_file(FIXTURE_REGISTRY)
REGISTRY = [str(FIXTURE_REGISTRY)]
STRATEGIES = ["linear", "lora", "full"]


def small_config(strategy: str, **overrides) -> AdaptConfig:
    values = {"strategy": strategy, "epochs": 2, "batch_size": 8, "patience": 0,
              "lr": {"linear": 3e-2, "lora": 3e-3, "full": 1e-3}[strategy]}
    values.update(overrides)
    return AdaptConfig(**values)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("spec", FIXTURES, ids=lambda s: s.name)
def test_every_family_and_strategy_finishes_a_run(spec, strategy, hub, datasets, tmp_path):
    task = spec.tasks[0]
    record = api.adapt(spec.name, str(datasets[task]), output=tmp_path / "run", config=small_config(strategy),
                       val_fraction=0.25, registry_files=REGISTRY, store=False)
    run = tmp_path / "run"
    assert record["status"] == "finished" and record["strategy"] == strategy
    on_disk = json.loads((run / "zoo_run.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["data"]["fingerprint"]
    for key in ("backbone", "config", "seed", "versions", "hardware", "metrics", "wall_s", "data"):
        assert on_disk[key] is not None, key
    # The linear head is solved (one entry of history); the other strategies train the epochs asked for.
    assert len(on_disk["metrics"]["epochs"]) == (1 if strategy == "linear" else 2)
    if strategy == "linear":
        assert on_disk["head_fit"]["solver"] == "lbfgs" and on_disk["head_fit"]["l2"] > 0
    # The saved model is the best epoch's, batch-norm statistics included: re-scored, it gives that epoch's number.
    best_epoch = on_disk["metrics"]["epochs"][on_disk["best_epoch"] - 1]
    assert on_disk["metrics"]["best"]["accuracy"] == pytest.approx(best_epoch["val"]["accuracy"])
    for name in ("README.md", "curves.png", "confusion.png", "zoo_run.json"):
        assert (run / name).is_file(), name
    assert not (run / ".zoo").exists(), "checkpoints are removed once the run finishes"
    assert not list(run.glob("*.bin")) and not list(run.glob("*.pt")), "weights are safetensors only"
    # The saved model is the trained one: reloading it gives the metrics the run recorded.
    val = _val_examples(record, datasets[task], task)
    predictions = api.predict(run, [ex.input for ex in val], top_k=1)
    assert len(predictions) == record["data"]["sizes"]["val"]
    # The validation outputs kept for combining runs later are the saved model's, on these very examples.
    stored = read_validation_outputs(run)
    assert stored.key == examples_key(val, record["labels"]) == on_disk["validation_outputs"]["key"]
    assert [record["labels"][i] for i in stored.logits.argmax(1)] == [p.labels[0]["label"] for p in predictions]
    assert compute_metrics(stored.targets, stored.logits, record["labels"], multi_label=False)["accuracy"] == \
        pytest.approx(on_disk["metrics"]["best"]["accuracy"])
    card = (run / "README.md").read_text()
    assert "model-index" in card and f"base_model: {spec.source}" in card
    # Every family explains its predictions for the card (by default, within a share of the run's time).
    assert on_disk["how_it_decides"]["examples"] and "## How it decides" in card, on_disk.get("notes")


def _val_examples(record, data, task):
    from zoo.engine.run import AdaptRequest

    return AdaptRequest(**record["request"]).read_data(seed=record["seed"]).val


@pytest.mark.parametrize("backbone,task,epochs", [("test_resnet.r160_in1k", "image-cls", 4),
                                                  ("tiny-bert", "text-cls", 10),
                                                  ("tiny-wav2vec2", "audio-cls", 6)])
def test_full_fine_tuning_learns_far_above_chance(backbone, task, epochs, hub, datasets, tmp_path):
    record = api.adapt(backbone, str(datasets[task]), output=tmp_path / "run", val_fraction=0.25,
                       config=small_config("full", epochs=epochs), registry_files=REGISTRY, store=False)
    chance = 1 / len(record["labels"])
    assert record["metrics"]["best"]["accuracy"] >= max(0.8, chance + 0.3)


def test_linear_probe_on_cached_features_learns_and_reuses_the_cache(hub, datasets, tmp_path):
    config = small_config("linear", epochs=20)
    first = api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=tmp_path / "a", config=config,
                      val_fraction=0.25, registry_files=REGISTRY, store=False)
    assert first["metrics"]["best"]["accuracy"] >= 0.8
    from zoo.engine.features import cache_root

    cached = sorted(cache_root().glob("test_resnet.r160_in1k-*.safetensors"))
    assert len(cached) >= 2
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    second = api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=tmp_path / "b", config=config,
                       val_fraction=0.25, registry_files=REGISTRY, store=False)
    assert second["metrics"]["best"]["accuracy"] == first["metrics"]["best"]["accuracy"]
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items()), "features were reused, not rebuilt"


@pytest.mark.parametrize("spec", FIXTURES, ids=lambda s: s.name)
def test_linear_head_is_solved_loads_without_zoo_and_scores_alike_in_any_batch(spec, hub, datasets, tmp_path):
    """The linear head is solved and recorded; the saved native model agrees with `zoo predict`; and predict gives
    an input the scores it gets alone, whatever else is in its batch (for audio, the pipeline's scores too)."""
    from typer.testing import CliRunner

    from zoo.cli import app
    from zoo.engine.probe import L2_GRID

    task = spec.tasks[0]
    run = tmp_path / "run"
    adapted = CliRunner().invoke(app, ["adapt", spec.name, "--data", str(datasets[task]), "--output", str(run),
                                       "--strategy", "linear", "--epochs", "5", "--lr", "0.1", "--val-fraction",
                                       "0.25", "--registry", str(FIXTURE_REGISTRY), "--no-store", "--json"])
    assert adapted.exit_code == 0, adapted.output
    record = json.loads(adapted.stdout)
    fit = record["head_fit"]
    assert fit["solver"] == "lbfgs" and fit["l2"] in L2_GRID and fit["iterations"] > 0
    assert [entry["l2"] for entry in fit["grid"]] == sorted(L2_GRID, reverse=True)
    assert fit["ignored_options"] == ["--epochs", "--lr"], "options of the epoch loop are said to be ignored"
    chosen = next(entry for entry in fit["grid"] if entry["l2"] == fit["l2"])
    assert record["metrics"]["best"]["accuracy"] == pytest.approx(chosen["val"])
    assert len(record["metrics"]["epochs"]) == 1 and record["best_epoch"] == 1
    assert f"L2 {fit['l2']:g} chosen on validation accuracy" in (run / "README.md").read_text()
    # The saved native model is the solved head: timm or transformers alone agree with zoo predict.
    examples = _val_examples(record, datasets[task], task)
    if task == "audio-cls":   # resampled to the model's rate; the pipeline gets the same samples
        examples = [ex for ex in examples if _rate(ex.input) == 16000]
    inputs = [str(ex.input) for ex in examples[:3]]
    mixed = _mixed_length_inputs(task, tmp_path)
    top_k = len(record["labels"])
    ours = _scores(api.predict(run, inputs + mixed, top_k=top_k, batch_size=len(inputs) + len(mixed)))
    model = f"local-dir:{run}" if spec.family == "timm" else str(run)
    assert fit["pooling"] in fit["poolings"] and fit["native"] == ("load_note" not in fit)
    native = native_predictions(spec.family, task, model, inputs + (mixed if task == "audio-cls" else []),
                                env={"HF_HUB_OFFLINE": "1"}, pooled=not fit["native"])
    for prediction, scores in zip(ours, native, strict=False):
        assert prediction == pytest.approx(scores, abs=1e-4)
    # Padded text sums in another order in float32: equal to rounding (a solved head's larger weights show ~1e-5);
    # a batch-dependent model differs by far more (see test_families' group-norm check).
    alone = _scores(api.predict(run, mixed, top_k=top_k, batch_size=1))
    for together, single in zip(ours[len(inputs):], alone, strict=True):
        assert together == pytest.approx(single, abs=1e-4)


def test_linear_head_solved_in_two_processes_is_the_same_head(hub, datasets, tmp_path):
    config = small_config("linear")
    one = api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "one", config=config,
                    val_fraction=0.25, registry_files=REGISTRY, store=False)
    two = api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "two", config=config,
                    val_fraction=0.25, registry_files=REGISTRY, store=False, processes=2)
    assert two["hardware"]["replicas_in_sync"] is True
    assert two["head_fit"]["l2"] == one["head_fit"]["l2"]
    assert two["metrics"]["best"] == one["metrics"]["best"]


def test_interrupted_linear_run_resumes_by_solving_again(hub, datasets, tmp_path, monkeypatch):
    import zoo.engine.setup

    def killed(*args, **kwargs):
        raise RuntimeError("killed before saving")

    finalize_model = zoo.engine.setup.finalize_model
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", killed)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed before saving"):
        api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, config=small_config("linear"),
                  val_fraction=0.25, registry_files=REGISTRY, store=False)
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", finalize_model)
    resumed = api.resume(run, store=False)
    straight = api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=tmp_path / "straight",
                         config=small_config("linear"), val_fraction=0.25, registry_files=REGISTRY, store=False)
    assert resumed["status"] == "finished" and resumed["resumed"] == 1
    assert resumed["head_fit"]["grid"] == straight["head_fit"]["grid"]
    assert resumed["metrics"]["best"] == straight["metrics"]["best"]


@pytest.mark.parametrize("backbone", ["test_vit.r160_in1k", "tiny-bert", "tiny-wav2vec2"])
def test_run_loads_without_zoo_and_agrees_with_zoo_predict(backbone, hub, datasets, tmp_path):
    spec = next(s for s in FIXTURES if s.name == backbone)
    task = spec.tasks[0]
    run = tmp_path / "run"
    record = api.adapt(backbone, str(datasets[task]), output=run, config=small_config("lora"), val_fraction=0.25,
                       registry_files=REGISTRY, store=False)
    examples = _val_examples(record, datasets[task], task)[:3]
    inputs = [str(ex.input) for ex in examples]
    if task == "audio-cls":   # resampled to the model's rate; the pipeline gets the same samples
        inputs = [str(ex.input) for ex in examples if _rate(ex.input) == 16000][:3]
    ours = api.predict(run, inputs, top_k=len(record["labels"]))
    model = f"local-dir:{run}" if spec.family == "timm" else str(run)
    native = native_predictions(spec.family, task, model, inputs, env={"HF_HUB_OFFLINE": "1"})
    for prediction, scores in zip(ours, native, strict=True):
        for entry in prediction.labels:
            assert entry["score"] == pytest.approx(scores[entry["label"]], abs=1e-4)


def _rate(path) -> int:
    import soundfile

    return soundfile.info(str(path)).samplerate


def test_a_profiled_step_shows_its_phases_and_the_fused_optimizer(hub, datasets, tmp_path):
    # benchmarks/roofline.py splits a step by these labels; the CPU runs AdamW's fused kernel, not the slow loop.
    from torch.profiler import profile

    from zoo.engine.trainer import PHASES

    with profile() as prof:
        api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "run", val_fraction=0.25,
                  config=small_config("full", epochs=1), registry_files=REGISTRY, store=False)
    names = {event.key for event in prof.key_averages()}
    assert set(PHASES.values()) <= names and "aten::_fused_adamw_" in names


@pytest.fixture(scope="module")
def two_process_run(hub, datasets, tmp_path_factory) -> tuple[Path, dict]:
    """An image run in two processes: the reference of the two-node run and of the killed two-process run."""
    run = tmp_path_factory.mktemp("two-processes") / "run"
    record = api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run,
                       config=small_config("full", epochs=6), val_fraction=0.25, registry_files=REGISTRY,
                       store=False, processes=2)
    return run, record


# two_process_run's options on the command line
TWO_PROCESS_ARGS = ["--strategy", "full", "--epochs", "6", "--batch-size", "8", "--lr", "1e-3", "--patience", "0",
                    "--val-fraction", "0.25", "--registry", str(FIXTURE_REGISTRY), "--json"]


def test_killed_two_process_run_resumes_in_two_to_the_same_weights(hub, datasets, two_process_run, tmp_path):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    args = ["adapt", "test_resnet.r160_in1k", "--data", str(datasets["image-cls"]), "--output", str(run),
            *TWO_PROCESS_ARGS, "--checkpoint-every", "2", "--processes", "2"]
    _kill_when(args, run, lambda progress: progress["epoch"] >= 1)   # kill -9 of zoo adapt and torchrun
    assert _ranks_gone(run), "ranks trained on after their zoo adapt was killed"

    record = json.loads((run / "zoo_run.json").read_text())
    assert record["status"] == "running" and record["launch"] == {"processes": 2, "nodes": 1}
    unfinished = run_zoo("predict", str(run), "x.png")
    assert unfinished.returncode != 0 and "has not finished" in unfinished.stderr
    with pytest.raises(InvalidInputError, match=r"--processes 1: this run trained in 2 processes"):
        api.resume(run, store=False, processes=1)

    resumed = run_zoo("adapt", "--resume", str(run), "--json", check=True)   # in two processes again
    final = json.loads(resumed.stdout)
    assert final["status"] == "finished" and final["resumed"] == 1
    assert final["launch"] == {"processes": 2, "nodes": 1} and final["hardware"]["processes"] == 2
    assert len(final["metrics"]["epochs"]) == 6
    # Resume is exact with the same number of processes: the weights of the run that was never interrupted.
    ours, theirs = load_file(str(run / "model.safetensors")), load_file(str(two_process_run[0] / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch_equal(ours[name], theirs[name]) for name in ours), "the resumed run's weights differ"
    with pytest.raises(InvalidInputError, match="already finished"):
        api.resume(run, store=False)


def _bad_inputs(tmp: Path, datasets: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    one_class = tmp / "one_class.csv"
    one_class.write_text("text,label\ngood movie,pos\ngreat film,pos\n")
    no_label = tmp / "no_label.csv"
    no_label.write_text("text,stars\ngood movie,5\nbad film,1\n")
    empty = tmp / "empty.csv"
    empty.write_text("text,label\n")
    latin1 = tmp / "latin1.csv"
    latin1.write_bytes("text,label\nd\xe9j\xe0 vu,pos\nbad,neg\n".encode("latin-1"))
    unseen = tmp / "unseen_val.csv"
    unseen.write_text("text,label\ngood movie,pos\nbad film,meh\n")
    corrupt = factory.make_image_folder(tmp / "corrupt_images", per_class=4)
    factory.write_corrupt_image(corrupt / "red" / "broken.png")
    text = ["tiny-bert", "--data"]
    return {
        "missing file": (text + [str(tmp / "nope.csv")], "nope.csv"),
        "single class": (text + [str(one_class)], "one_class.csv"),
        "missing column": (text + [str(no_label)], "no_label.csv"),
        "empty dataset": (text + [str(empty)], "empty.csv"),
        "bad encoding": (text + [str(latin1)], "latin1.csv"),
        "unseen eval labels": (text + [str(datasets["text-cls"]), "--val", str(unseen)], "unseen_val.csv"),
        "corrupt image": (["test_resnet.r160_in1k", "--data", str(corrupt)], "broken.png"),
        "unknown backbone": (["tiny-bret", "--data", str(datasets["text-cls"])], "tiny-bert"),
        "wrong task": (["tiny-bert", "--task", "image-cls", "--data", str(datasets["image-cls"])], "text-cls"),
        "bad option": (text + [str(datasets["text-cls"]), "--strategy", "magic"], "magic"),
        "no validation data": (text + [str(datasets["text-cls"]), "--val-fraction", "0"], "--val-fraction"),
        "unknown metric": (text + [str(datasets["text-cls"]), "--metric", "f1"], "--metric 'f1'"),
    }


@pytest.mark.parametrize("case", ["missing file", "single class", "missing column", "empty dataset", "bad encoding",
                                  "unseen eval labels", "corrupt image", "unknown backbone", "wrong task",
                                  "bad option", "no validation data", "unknown metric"])
def test_bad_input_is_one_line_and_leaves_no_run(case, hub, datasets, tmp_path):
    args, named = _bad_inputs(tmp_path, datasets)[case]
    out = tmp_path / "run"
    result = run_zoo("adapt", *args, "--output", str(out), "--registry", str(FIXTURE_REGISTRY))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not out.exists(), "nothing half-written"


def test_skip_bad_skips_and_counts(hub, tmp_path):
    images = factory.make_image_folder(tmp_path / "images", per_class=6)
    factory.write_corrupt_image(images / "red" / "broken.png")
    record = api.adapt("test_resnet.r160_in1k", str(images), output=tmp_path / "run", skip_bad=True,
                       config=small_config("linear"), registry_files=REGISTRY, store=False)
    assert record["data"]["skipped"] == 1


def test_cli_adapt_predict_and_run_history(hub, datasets, tmp_path):
    run = tmp_path / "run"
    adapted = run_zoo("adapt", "tiny-bert", "--data", str(datasets["text-cls"]), "--output", str(run),
                      "--strategy", "full", "--epochs", "2", "--lr", "1e-3", "--registry", str(FIXTURE_REGISTRY),
                      "--json", check=True)
    record = json.loads(adapted.stdout)
    assert record["status"] == "finished" and record["store_id"]
    texts = tmp_path / "texts.txt"
    texts.write_text("great movie\nterrible film\n")
    # A run directory is all predict needs: no registry file is read (a broken one is ignored), and only the run's
    # family library is imported (a text run never imports timm), which keeps the first answer fast.
    broken = tmp_path / "broken.toml"
    broken.write_text("[[backbone\n")
    answer = run_zoo("predict", str(run), str(texts), "a good film", "--top-k", "2", "--json", check=True,
                     env={"ZOO_REGISTRY": str(broken), "PYTHONPROFILEIMPORTTIME": "1"})
    imported = {line.split("|")[-1].strip() for line in answer.stderr.splitlines() if line.startswith("import time")}
    assert "transformers" in imported and "timm" not in imported
    predicted = json.loads(answer.stdout)
    assert [p["input"] for p in predicted] == ["great movie", "terrible film", "a good film"]
    assert all(len(p["labels"]) == 2 for p in predicted)
    runs = json.loads(run_zoo("runs", "--json", check=True).stdout)
    assert any(r["id"] == record["store_id"] and r["status"] == "finished" for r in runs)
    shown = run_zoo("runs", "show", str(record["store_id"]), check=True).stdout
    assert "tiny-bert" in shown


def test_auto_strategy_is_chosen_and_explained(hub, datasets, tmp_path):
    record = api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "run",
                       config=AdaptConfig(epochs=1), registry_files=REGISTRY, store=False)
    # small data: both linear and full are trained, and the better on validation is kept
    from zoo.engine.config import choose_by_validation

    scores = record["choices"]["strategy"]["candidates"]
    assert list(scores) == ["linear", "full"] and all(score is not None for score in scores.values())
    assert record["strategy"] == choose_by_validation(scores, "accuracy")[0]
    assert "examples" in record["strategy_reason"] and "on validation accuracy" in record["strategy_reason"]


def test_multi_label_text(hub, tmp_path):
    data = factory.make_text_csv(tmp_path / "multi.jsonl", per_class=30, fmt="jsonl", multi_label=True)
    record = api.adapt("tiny-bert", str(data), output=tmp_path / "run", config=small_config("full", epochs=2),
                       registry_files=REGISTRY, store=False)
    assert record["multi_label"] and "micro_f1" in record["metrics"]["best"]
    predictions = api.predict(tmp_path / "run", ["great movie"], top_k=4)
    assert all(0 <= p["score"] <= 1 for p in predictions[0].labels)
    assert np.isfinite([p["score"] for p in predictions[0].labels]).all()


def test_two_processes_reach_the_quality_of_one_and_two_nodes_the_same_weights(hub, datasets, two_process_run,
                                                                             tmp_path):
    from safetensors.torch import load_file

    # Batch-norm statistics come from half a batch per process, so two processes may need an epoch more.
    one = api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=tmp_path / "one",
                    config=small_config("full", epochs=6), val_fraction=0.25, registry_files=REGISTRY, store=False)
    two_dir, two = two_process_run
    assert two["status"] == "finished" and two["hardware"]["processes"] == 2
    assert two["launch"] == {"processes": 2, "nodes": 1} and two["command"][-2:] == ["--processes", "2"]
    assert two["hardware"]["replicas_in_sync"] is True
    assert two["metrics"]["best"]["accuracy"] >= one["metrics"]["best"]["accuracy"] - 0.1
    assert api.predict(two_dir, [str(next((datasets["image-cls"] / "red").iterdir()))])

    # The same run on two "machines" of one process each, meeting at 127.0.0.1: each runs the same command with
    # its --node-rank; the world is the same, so are the weights, to the bit (with the threads per rank the same).
    run = tmp_path / "nodes"
    args = ["adapt", "test_resnet.r160_in1k", "--data", str(datasets["image-cls"]), "--output", str(run),
            *TWO_PROCESS_ARGS, "--no-store", "--nodes", "2", "--master-addr", "127.0.0.1", "--master-port",
            str(_free_port())]
    zoo = Path(sys.executable).with_name("zoo")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // 2))}
    nodes = [subprocess.Popen([str(zoo), *args, "--node-rank", str(rank)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for rank in (1, 0)]   # node 1 first
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err for _, err in outputs]
    records = [json.loads(out) for out, _ in outputs]   # both print the record rank 0 wrote
    assert records[0] == records[1] and records[0]["launch"] == {"processes": 1, "nodes": 2}
    assert records[0]["hardware"]["processes"] == 2 and records[0]["hardware"]["replicas_in_sync"] is True
    trained = [[(e["train_loss"], e["val"]) for e in record["metrics"]["epochs"]] for record in (records[0], two)]
    assert trained[0] == trained[1]
    ours, theirs = load_file(str(run / "model.safetensors")), load_file(str(two_dir / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch_equal(ours[name], theirs[name]) for name in ours), "two nodes and two processes differ"


def _ranks_gone(run: Path, wait_s: float = 20) -> bool:
    """Whether no process that a launch into ``run`` started is left (within ``wait_s``): ranks carry the run
    directory in their environment."""
    from zoo.engine.rundir import CLAIMED_ENV

    marker = f"{CLAIMED_ENV}={run}".encode()
    deadline = time.time() + wait_s
    while time.time() < deadline:
        left = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if marker in environ.read_bytes().split(b"\0"):
                    left.append(environ.parent.name)
            except OSError:
                continue
        if not left:
            return True
        time.sleep(0.2)
    return False


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- trust: a diverged run fails, a resumed run is the uninterrupted run ------------------------------------------


def _nan_after(calls: int, make_loss):
    """make_loss whose loss turns NaN from its ``calls + 1``-th use on."""
    def patched(*args, **kwargs):
        loss_fn, used = make_loss(*args, **kwargs), [0]

        def loss(logits, target):
            used[0] += 1
            value = loss_fn(logits, target)
            return value * float("nan") if used[0] > calls else value

        return loss

    return patched


def test_nan_loss_fails_the_run_through_the_api(hub, datasets, tmp_path, monkeypatch):
    import zoo.engine.run
    from zoo.errors import TrainingDivergedError

    monkeypatch.setattr(zoo.engine.run, "make_loss", _nan_after(1, zoo.engine.run.make_loss))
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 2 .*the loss is nan.*--lr"):
        api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25,
                  config=small_config("full", epochs=1), registry_files=REGISTRY, store=False)
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("TrainingDivergedError: ")
    assert not (run / "model.safetensors").exists()


def test_nan_loss_fails_a_linear_run(hub, datasets, tmp_path, monkeypatch):
    import zoo.engine.run
    from zoo.errors import TrainingDivergedError

    monkeypatch.setattr(zoo.engine.run, "make_loss", _nan_after(1, zoo.engine.run.make_loss))
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"the loss is nan.*L-BFGS.*--lr does not apply"):
        api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25,
                  config=small_config("linear"), registry_files=REGISTRY, store=False)
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("TrainingDivergedError: ")
    assert not (run / "model.safetensors").exists()


def test_a_linear_head_that_does_not_describe_the_head_names_the_plugin(hub, datasets, tmp_path, monkeypatch):
    from zoo_timm.family import TimmClassifier

    from zoo.errors import PluginError
    from zoo.family import LinearHead

    def wrong(self):   # claims the head but writes nothing into it
        return LinearHead(in_features=self.model.get_classifier().in_features, write=lambda weight, bias: None)

    monkeypatch.setattr(TimmClassifier, "linear_head", wrong)
    run = tmp_path / "run"
    with pytest.raises(PluginError, match=r"zoo_timm.*linear_head\(\) does not describe the head"):
        api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25,
                  config=small_config("linear"), registry_files=REGISTRY, store=False)
    assert json.loads((run / "zoo_run.json").read_text())["status"] == "failed"
    assert not (run / "model.safetensors").exists()


def test_huge_learning_rate_fails_the_run_through_the_cli(hub, datasets, tmp_path):
    run = tmp_path / "run"
    result = run_zoo("adapt", "test_resnet.r160_in1k", "--data", str(datasets["image-cls"]), "--output", str(run),
                     "--strategy", "full", "--epochs", "2", "--batch-size", "8", "--lr", "1e30", "--patience", "0",
                     "--val-fraction", "0.25", "--registry", str(FIXTURE_REGISTRY), "--json")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "training diverged at epoch 1, batch" in lines[0], result.stderr
    assert "--precision fp32" in lines[0] and "Traceback" not in result.stderr
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["status"] == "failed" and "diverged" in record["error"]
    assert not (run / "model.safetensors").exists()


def test_divergence_stops_every_process_of_a_data_parallel_run(hub, datasets, tmp_path):
    from zoo.errors import ZooError

    run = tmp_path / "run"
    with pytest.raises(ZooError, match=r"training diverged at epoch 1, batch \d+"):
        api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25,
                  config=small_config("full", epochs=1, lr=1e30), registry_files=REGISTRY, store=False, processes=2)
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["status"] == "failed" and not (run / "model.safetensors").exists()


def _kill_when(args: list[str], run: Path, ready) -> dict:
    """Start `zoo adapt ARGS`, SIGKILL it once its checkpoint's progress is ``ready``; the progress it left."""
    zoo = Path(sys.executable).with_name("zoo")
    process = subprocess.Popen([str(zoo), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=os.environ.copy(), start_new_session=True)
    state = run / ".zoo" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and ready(json.loads(state.read_text())["progress"]):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return json.loads(state.read_text())["progress"]


@pytest.mark.parametrize("backbone,task,workers", [("test_resnet.r160_in1k", "image-cls", 2),
                                                   ("tiny-wav2vec2", "audio-cls", 0)])
def test_run_resumed_mid_epoch_equals_the_uninterrupted_run(backbone, task, workers, hub, datasets, tmp_path):
    import torch
    from safetensors.torch import load_file

    run = tmp_path / "run"
    options = {"strategy": "full", "epochs": 2, "batch_size": 4, "lr": 1e-3, "patience": 0, "augment": "strong",
               "checkpoint_every": 2}
    # Loaded in the training process here, in `workers` processes below: the weights must not care.
    args = ["adapt", backbone, "--data", str(datasets[task]), "--output", str(run), "--val-fraction", "0.25",
            "--registry", str(FIXTURE_REGISTRY), "--workers", "0"]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    progress = _kill_when(args, run, lambda progress: progress["batches_done"] > 0)   # mid-epoch
    assert progress["batches_done"] > 0, "killed mid-epoch"

    resumed = api.resume(run, store=False)
    # Straight through, with examples loaded in worker processes that live across both epochs: augmentation, drawn
    # per (epoch, example), must not care.
    straight = api.adapt(backbone, str(datasets[task]), output=tmp_path / "straight", val_fraction=0.25,
                         config=AdaptConfig(**options, workers=workers), registry_files=REGISTRY, store=False)
    assert resumed["resumed"] == 1 and resumed["config"]["workers"] == 0
    assert straight["config"]["workers"] == workers
    assert [e["val"] for e in resumed["metrics"]["epochs"]] == [e["val"] for e in straight["metrics"]["epochs"]]
    ours = load_file(str(run / "model.safetensors"))
    theirs = load_file(str(tmp_path / "straight" / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    different = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not different, f"resumed weights differ from the uninterrupted run's: {different[:5]}"


def test_run_that_stopped_early_goes_straight_to_its_end_on_resume(hub, datasets, tmp_path, monkeypatch):
    import zoo.engine.setup
    import zoo.family
    from zoo.engine.checkpoint import load_checkpoint

    def killed(*args, **kwargs):
        raise RuntimeError("killed after the early stop")

    finalize_model = zoo.engine.setup.finalize_model
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", killed)
    # A head that is not one linear layer: the linear strategy trains it epoch by epoch, with early stopping.
    monkeypatch.setattr(zoo.family.Classifier, "linear_head", lambda self: None)
    run = tmp_path / "run"
    # A learning rate too small to change any prediction: the second epoch does not improve, patience 1 stops.
    config = small_config("linear", epochs=8, patience=1, lr=1e-12)
    with pytest.raises(RuntimeError, match="killed after the early stop"):
        api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, config=config,
                  val_fraction=0.25, registry_files=REGISTRY, store=False)
    progress = load_checkpoint(run).progress
    assert progress.stopped_early and len(progress.history) == 2
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", finalize_model)

    record = api.resume(run, store=False)
    assert record["status"] == "finished" and record["metrics"]["stopped_early"]
    assert len(record["metrics"]["epochs"]) == 2, "no epoch is trained after an early stop"
    assert record["head_fit"]["solver"] == "sgd" and "not one linear layer" in record["head_fit"]["reason"]


# --- scores do not depend on the batch ---------------------------------------------------------------------------

def _mixed_length_inputs(task: str, folder: Path) -> list[str]:
    """Inputs of different lengths (sizes, for images), as files or texts."""
    if task == "audio-cls":
        return [str(factory.write_tone(folder / f"{i}.wav", 300 + 400 * i, seconds=seconds, seed=i))
                for i, seconds in enumerate((0.3, 0.55, 0.8, 0.42))]
    if task == "text-cls":
        return ["good", "the movie was very slow and the food was awful", "great film", "not bad at all"]
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i, (height, width) in enumerate(((40, 60), (96, 64), (50, 50), (120, 80))):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return paths


def _scores(predictions) -> list[dict[str, float]]:
    return [{entry["label"]: entry["score"] for entry in p.labels} for p in predictions]


def test_training_on_clips_of_mixed_lengths_evaluates_as_predict_scores(hub, tmp_path):
    """Clips of different lengths share training and evaluation batches of a model that padding would change;
    the run's recorded accuracy is what `zoo predict` gives the same clips one by one."""
    data = tmp_path / "tones"
    for c, name in enumerate(("low", "high")):
        for i in range(6):
            factory.write_tone(data / name / f"{i}.wav", factory.class_tone(name, c), seconds=0.25 + 0.05 * i,
                               seed=10 * c + i)
    record = api.adapt("tiny-wav2vec2-group", str(data), output=tmp_path / "run", val_fraction=0.34,
                       config=small_config("full", epochs=1), registry_files=REGISTRY, store=False)
    val = _val_examples(record, data, "audio-cls")
    predictions = api.predict(tmp_path / "run", [str(ex.input) for ex in val], top_k=1, batch_size=1)
    correct = [p.labels[0]["label"] == record["labels"][ex.labels[0]] for p, ex in zip(predictions, val, strict=True)]
    assert record["metrics"]["best"]["accuracy"] == pytest.approx(np.mean(correct))


def test_a_batch_in_parts_runs_and_slices_in_batch_order():
    """Parts (items kept apart by their batch keys) give outputs in the batch's order, also when the trainer
    splits a batch into micro-batches to fit in memory."""
    import torch

    from zoo.engine.batches import Parts, run_forward

    x = torch.arange(10.0).reshape(5, 2)
    parts = Parts([({"x": x[[0, 3]]}, [0, 3]), ({"x": x[[1, 2, 4]]}, [1, 2, 4])])

    def double(batch):
        return batch["x"] * 2

    torch.testing.assert_close(run_forward(double, parts), x * 2)
    assert len(parts[1:4]) == 3
    torch.testing.assert_close(run_forward(double, parts[1:4]), x[1:4] * 2)

# --- the image size, and the hyperparameters explained --------------------------------------------------------


@pytest.mark.parametrize("backbone,strategy", [("test_resnet.r160_in1k", "linear"), ("test_vit.r160_in1k", "lora")])
def test_image_size_trains_records_and_saves_at_that_size(backbone, strategy, hub, datasets, tmp_path):
    run = tmp_path / "run"
    record = api.adapt(backbone, str(datasets["image-cls"]), output=run, val_fraction=0.25, registry_files=REGISTRY,
                       config=small_config(strategy, epochs=1, image_size=32), store=False)
    assert record["status"] == "finished" and record["image_size"] == 32 and record["config"]["image_size"] == 32
    assert record["choices"]["image_size"] == {"value": 32, "rule": "set with --image-size", "set": True}
    assert "--image-size 32" in shlex.join(record["command"])
    # The saved preprocessing is 32x32 with the whole image kept, so timm alone loads it that way...
    saved = json.loads((run / "config.json").read_text())["pretrained_cfg"]
    assert saved["input_size"] == [3, 32, 32] and saved["crop_pct"] == 1.0
    inputs = [str(ex.input) for ex in _val_examples(record, datasets["image-cls"], "image-cls")[:3]]
    ours = api.predict(run, inputs, top_k=len(record["labels"]))
    native = native_predictions("timm", "image-cls", f"local-dir:{run}", inputs, env={"HF_HUB_OFFLINE": "1"})
    # ...and its predictions are zoo predict's.
    for prediction, scores in zip(ours, native, strict=True):
        for entry in prediction.labels:
            assert entry["score"] == pytest.approx(scores[entry["label"]], abs=1e-4)


def test_image_size_defaults_to_the_backbones_and_is_explained(hub, datasets, tmp_path):
    record = api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=tmp_path / "run",
                       val_fraction=0.25, config=AdaptConfig(strategy="linear", epochs=1), registry_files=REGISTRY,
                       store=False)
    assert record["image_size"] == 160
    assert record["choices"]["image_size"] == {"value": 160, "rule": "default: the backbone's input size",
                                               "set": False}


def test_a_size_the_backbone_cannot_take_is_refused_before_the_run(hub, datasets, tmp_path):
    from zoo.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"--image-size 40: test_vit.*patch size"):
        api.adapt("test_vit.r160_in1k", str(datasets["image-cls"]), output=tmp_path / "run",
                  config=small_config("linear", image_size=40), registry_files=REGISTRY, store=False)
    assert not (tmp_path / "run").exists()


def test_defaulted_values_are_recorded_with_their_rules(hub, datasets, tmp_path, monkeypatch):
    import zoo.engine.run

    # auto tries linear and full on this small data set; linear is made the winner, so its defaults are recorded
    monkeypatch.setattr(zoo.engine.run, "_candidate_score",
                        lambda strategy, metrics, metric: {"linear": 0.9, "full": 0.5}[strategy])
    run = tmp_path / "run"
    record = api.adapt("tiny-bert", str(datasets["text-cls"]), output=run, config=AdaptConfig(epochs=1),
                       registry_files=REGISTRY, store=False)
    choices = record["choices"]
    assert set(choices) == {"strategy", "epochs", "lr", "batch_size", "warmup_ratio", "patience", "workers"}, \
        "no image size"
    assert choices["workers"]["value"] == 0 and "cached features" in choices["workers"]["rule"]
    assert choices["strategy"]["value"] == "linear" and not choices["strategy"]["set"]
    assert "training examples (at most 20000): both a linear probe and full" in choices["strategy"]["rule"]
    assert choices["strategy"]["candidates"] == {"linear": 0.9, "full": 0.5}
    assert choices["lr"] == {"value": 1e-2, "rule": "default for the linear strategy", "set": False}
    assert choices["epochs"] == {"value": 1, "rule": "set with --epochs", "set": True}
    assert choices["batch_size"] == {"value": 32, "rule": "default", "set": False}
    assert choices["warmup_ratio"]["value"] == 0.06 and choices["patience"]["value"] == 3
    assert record["config"]["batch_size"] == 32 and record["config_requested"]["batch_size"] is None
    card = (run / "README.md").read_text()
    assert "## How it was trained" in card and "| learning rate | 0.01 | default for the linear strategy |" in card
    assert shlex.join(record["command"]) in card


def test_the_cards_command_reproduces_the_resolved_config(hub, datasets, tmp_path):
    from typer.testing import CliRunner

    from zoo.cli import app

    first = tmp_path / "first"
    adapted = CliRunner().invoke(app, ["adapt", "tiny-bert", "--data", str(datasets["text-cls"]), "--output",
                                       str(first), "--strategy", "full", "--epochs", "1", "--lr", "1e-3",
                                       "--warmup-ratio", "0.1", "--registry", str(FIXTURE_REGISTRY), "--no-store"])
    assert adapted.exit_code == 0, adapted.output
    summary = " ".join(adapted.stdout.split())   # rich wraps lines at the terminal's width
    assert "strategy full (set with --strategy): epochs 1 (set), lr 0.001 (set), batch size 8," in summary
    record = json.loads((first / "zoo_run.json").read_text())
    assert record["choices"]["lr"] == {"value": 1e-3, "rule": "set with --lr", "set": True}
    assert record["choices"]["epochs"]["rule"] == "set with --epochs"
    assert record["choices"]["patience"] == {"value": 3, "rule": "default: stop after 3 evaluations (epoch ends) "
                                             "without improvement: a quarter of the 1 planned epochs, at least 3",
                                             "set": False}
    card = (first / "README.md").read_text()
    command = card.split("```bash\n", 1)[1].split("\n```", 1)[0]
    args = shlex.split(command)
    assert args == record["command"]
    assert args[:2] == ["zoo", "adapt"] and "--lr" in args and "--batch-size" in args and "--seed" in args
    again = CliRunner().invoke(app, [*args[1:], "--output", str(tmp_path / "again"), "--no-store"])
    assert again.exit_code == 0, again.output
    reproduced = json.loads((tmp_path / "again" / "zoo_run.json").read_text())
    assert reproduced["config"] == record["config"] and reproduced["command"] == record["command"]
    # every value is given explicitly, but for the data-loading workers, which the machine that repeats it chooses
    assert all(choice["set"] for name, choice in reproduced["choices"].items() if name != "workers")


# --- defaults that scale with the data, and auto decided on validation --------------------------------------------


def test_workers_auto_loads_in_other_processes_only_where_there_is_decoding_to_hand_over():
    from zoo.engine.config import plan_workers

    image = {"input_kind": "image", "batches": 100}
    assert plan_workers("full", device="cuda", cpu_count=16, **image)[0] == 8
    assert plan_workers("lora", device="cuda", cpu_count=16, processes=4, **image)[0] == 3   # cores shared
    assert plan_workers("full", device="cpu", cpu_count=2, **image)[0] == 1
    assert plan_workers("full", device="cpu", cpu_count=16, **image)[0] == 4
    assert plan_workers("full", device="cpu", cpu_count=1, **image)[0] == 0
    assert plan_workers("full", device="cuda", cpu_count=16, input_kind="image", batches=5)[0] == 0
    assert plan_workers("linear", device="cuda", cpu_count=16, **image) == (
        0, "auto: the linear head trains on cached features, with nothing left to decode")
    assert plan_workers("full", device="cuda", cpu_count=16, input_kind="text", batches=100)[0] == 0
    assert AdaptConfig(workers="2").workers == 2 and "--workers" not in AdaptConfig(workers=2).command_options()[0]


@pytest.mark.parametrize("num_train,batch_size,epochs,patience,warmup", [
    (100, None, 47, 12, 0.06), (480, None, 10, 3, 0.06), (2000, None, 10, 3, 0.06), (50000, None, 3, 3, 0.06),
    (480, 32, 40, 10, 0.06), (32, 32, 50, 13, 0.2)])
def test_fine_tuning_defaults_follow_the_data_size(num_train, batch_size, epochs, patience, warmup):
    choices = AdaptConfig(batch_size=batch_size).choices("full", "", num_train=num_train)
    assert choices["epochs"].value == epochs and not choices["epochs"].set
    assert choices["patience"].value == patience and choices["warmup_ratio"].value == warmup
    assert choices["lr"].value == 5e-5 and choices["lr"].rule == "default for the full strategy"
    if num_train == 480 and batch_size is None:
        assert choices["epochs"].rule.startswith("480 training examples at batch 8 are 60 optimizer steps per "
                                                 "epoch; the full strategy aims for 600 steps: 10 epochs make 600")
    if num_train == 480 and batch_size == 32:
        assert choices["epochs"].rule.startswith("480 training examples at batch 32 are 15 optimizer steps per "
                                                 "epoch; the full strategy aims for 600 steps: 40 epochs make 600")


def test_a_familys_preferred_rate_and_explicit_values_win_in_that_order():
    preferred = {"full": 1e-4}
    chosen = AdaptConfig().choices("full", "", num_train=480, family="timm", family_lr=preferred)
    assert chosen["lr"].value == 1e-4 and chosen["lr"].rule == "the timm family's default for the full strategy"
    assert AdaptConfig().choices("lora", "", num_train=480, family="timm", family_lr=preferred)["lr"].value == 5e-4
    given = AdaptConfig(epochs=7, lr=3e-3, patience=1, warmup_ratio=0.5).choices("full", "", num_train=480,
                                                                                  family_lr=preferred)
    assert {name: (c.value, c.set) for name, c in given.items() if name != "strategy"} == {
        "epochs": (7, True), "lr": (3e-3, True), "batch_size": (8, False), "warmup_ratio": (0.5, True),
        "patience": (1, True), "workers": (0, False)}
    # a patience from the planned epochs follows --epochs
    assert AdaptConfig(epochs=40).choices("lora", "", num_train=10)["patience"].value == 10


def test_auto_tries_both_on_small_data_and_keeps_the_size_rule_above():
    from zoo.engine.config import auto_candidates, choose_by_validation

    assert auto_candidates(480, 5, "cuda")[0] == ("linear", "full")
    assert auto_candidates(5000, 90, "cuda")[0] == ("linear", "lora")
    assert auto_candidates(480, 90, "cpu")[0] == ("linear",), "fine-tuning a large backbone on a CPU is too slow"
    plan, reason = auto_candidates(50000, 5, "cuda")
    assert plan == ("full",) and "size rule" in reason
    assert choose_by_validation({"linear": 0.82, "full": 0.88}, "accuracy") == (
        "full", "linear 0.82 vs full 0.88 on validation accuracy: full")
    assert choose_by_validation({"linear": 0.8, "full": 0.8}, "accuracy")[0] == "linear", "a tie goes to linear"


@pytest.mark.parametrize("winner", ["linear", "full"])
def test_auto_trains_both_records_both_scores_and_keeps_the_winner(winner, hub, datasets, tmp_path, monkeypatch):
    import zoo.engine.run

    forced = {"linear": 0.5, "full": 0.5}
    forced[winner] = 0.9
    monkeypatch.setattr(zoo.engine.run, "_candidate_score", lambda strategy, metrics, metric: forced[strategy])
    run = tmp_path / "run"
    record = api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25,
                       config=AdaptConfig(epochs=1, batch_size=8, image_size=32), registry_files=REGISTRY,
                       store=False)
    assert record["status"] == "finished" and record["strategy"] == winner
    strategy = record["choices"]["strategy"]
    assert strategy["value"] == winner and strategy["candidates"] == forced and not strategy["set"]
    assert record["strategy_reason"].endswith(f"linear {forced['linear']:.4g} vs full {forced['full']:.4g} on "
                                              f"validation accuracy: {winner}")
    assert record["config"]["strategy"] == winner and f"--strategy {winner}" in shlex.join(record["command"])
    # one finished model, the winner's: re-scored, it gives the recorded validation metrics
    assert not (run / ".zoo").exists() and len(list(run.glob("*.safetensors"))) == 1
    val = _val_examples(record, datasets["image-cls"], "image-cls")
    predictions = api.predict(run, [str(ex.input) for ex in val], top_k=1)
    correct = [p.labels[0]["label"] == record["labels"][ex.labels[0]] for p, ex in zip(predictions, val, strict=True)]
    assert record["metrics"]["best"]["accuracy"] == pytest.approx(np.mean(correct))


def test_auto_killed_during_its_second_candidate_resumes_it(hub, datasets, tmp_path, monkeypatch):
    import zoo.engine.run
    from zoo.engine.checkpoint import candidates_dir

    monkeypatch.setattr(zoo.engine.run, "_candidate_score",
                        lambda strategy, metrics, metric: {"linear": 0.9, "full": 0.5}[strategy])
    real_train = zoo.engine.run._train

    def killed_in_full(*args, **kwargs):
        if args[4] == "full":
            raise KeyboardInterrupt("killed in the second candidate")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(zoo.engine.run, "_train", killed_in_full)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25,
                  config=AdaptConfig(epochs=1, batch_size=8, image_size=32), registry_files=REGISTRY, store=False)
    left = json.loads((run / "zoo_run.json").read_text())
    assert left["strategy"] == "full" and left["choices"]["strategy"]["candidates"] == {"linear": 0.9, "full": None}
    assert (candidates_dir(run) / "linear.safetensors").is_file()
    monkeypatch.setattr(zoo.engine.run, "_train", real_train)
    trained = []
    monkeypatch.setattr(zoo.engine.run, "_train", lambda *a, **k: trained.append(a[4]) or real_train(*a, **k))
    record = api.resume(run, store=False)
    assert trained == ["full"], "the finished candidate is not trained again"
    assert record["status"] == "finished" and record["strategy"] == "linear" and record["resumed"] == 1
    assert record["choices"]["strategy"]["candidates"] == {"linear": 0.9, "full": 0.5}
    assert record["strategy_reason"].count(" vs full ") == 1, "the verdict is drawn once"
    assert not (run / ".zoo").exists()


def test_explicit_epochs_and_lr_are_recorded_as_set(hub, datasets, tmp_path):
    record = api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "run",
                       config=AdaptConfig(strategy="full", epochs=2, lr=2e-3), registry_files=REGISTRY, store=False)
    assert record["choices"]["epochs"] == {"value": 2, "rule": "set with --epochs", "set": True}
    assert record["choices"]["lr"] == {"value": 2e-3, "rule": "set with --lr", "set": True}
    assert "candidates" not in record["choices"]["strategy"]
    assert record["choices"]["patience"]["value"] == 3 and "a quarter of the 2 planned epochs" in \
        record["choices"]["patience"]["rule"]


@pytest.mark.parametrize(("backbone", "pooling"), [("tiny-bert", "mean-tokens-layers"),
                                                   ("tiny-wav2vec2", "mean-frames-layers")])
def test_a_linear_head_on_another_pooling_wins_auto_and_loads_as_recorded(backbone, pooling, hub, datasets,
                                                                          tmp_path, monkeypatch):
    """When the linear probe reads a pooling other than the native head's and wins `auto`, the saved model is that
    head: `zoo predict` re-scores it to the recorded validation metric, and the family's library loads it (natively,
    or as the recorded load note says)."""
    from zoo_transformers.family import TransformersClassifier

    import zoo.engine.run

    offered = TransformersClassifier.linear_heads
    monkeypatch.setattr(TransformersClassifier, "linear_heads",
                        lambda self: [head for head in offered(self) if head.pooling == pooling])
    monkeypatch.setattr(zoo.engine.run, "_candidate_score",
                        lambda strategy, metrics, metric: {"linear": 0.9, "full": 0.5}[strategy])
    spec = next(s for s in FIXTURES if s.name == backbone)
    task = spec.tasks[0]
    run = tmp_path / "run"
    record = api.adapt(backbone, str(datasets[task]), output=run, val_fraction=0.25, registry_files=REGISTRY,
                       config=AdaptConfig(epochs=1, batch_size=8), store=False)
    fit = record["head_fit"]
    assert record["strategy"] == "linear" and fit["pooling"] == pooling and list(fit["poolings"]) == [pooling]
    assert fit["native"] == (task == "audio-cls")
    assert pooling in (run / "README.md").read_text()
    val = [ex for ex in _val_examples(record, datasets[task], task)
           if task == "text-cls" or _rate(ex.input) == 16000]
    inputs = [str(ex.input) for ex in val]
    ours = api.predict(run, inputs, top_k=len(record["labels"]))
    if task == "text-cls":   # every validation example: the saved model is the one scored
        correct = [p.labels[0]["label"] == record["labels"][ex.labels[0]] for p, ex in zip(ours, val, strict=True)]
        assert record["metrics"]["best"]["accuracy"] == pytest.approx(np.mean(correct))
    native = native_predictions(spec.family, task, str(run), inputs[:3], env={"HF_HUB_OFFLINE": "1"},
                                pooled=not fit["native"])
    for prediction, scores in zip(_scores(ours[:3]), native, strict=True):
        assert prediction == pytest.approx(scores, abs=1e-4)


@pytest.mark.parametrize(("num_train", "batch", "epochs"), [(100, 8, 47), (200, 8, 24), (400, 8, 12), (800, 16, 12),
                                                            (1600, 32, 12), (5000, 32, 4), (100000, 32, 3)])
def test_full_and_lora_take_smaller_batches_and_more_passes_on_small_data(num_train, batch, epochs):
    """Full and LoRA plan about 600 optimizer steps within 3 to 50 epochs, at the largest batch of 32, 16 and 8 that
    gives 50 steps per epoch; linear keeps batch 32. Each value's rule says how it was reached."""
    for strategy in ("full", "lora"):
        made = AdaptConfig().choices(strategy, "", num_train=num_train, family="transformers", family_lr={})
        assert (made["batch_size"].value, made["epochs"].value) == (batch, epochs)
        assert f"{num_train} training examples" in made["batch_size"].rule and not made["batch_size"].set
    assert AdaptConfig().choices("linear", "", num_train=num_train)["batch_size"].value == 32
    assert AdaptConfig(batch_size=64).choices("full", "", num_train=num_train)["batch_size"].rule == \
        "set with --batch-size"


def test_the_validation_split_does_not_move_with_the_training_seed(datasets):
    """Runs that differ only in --seed are scored on the same examples (soups and ensembles choose among them
    there); a record from before split_seed was kept draws its split with its training seed, as it did then."""
    from zoo.engine.run import SPLIT_SEED, AdaptRequest

    request = AdaptRequest(backbone="tiny-bert", task="text-cls", data=str(datasets["text-cls"]), val_fraction=0.25,
                           split_seed=SPLIT_SEED)
    ids = [[ex.id for ex in request.read_data(seed=seed).val] for seed in (0, 1, 2)]
    assert ids[0] == ids[1] == ids[2]
    older = AdaptRequest(backbone="tiny-bert", task="text-cls", data=str(datasets["text-cls"]), val_fraction=0.25)
    assert [ex.id for ex in older.read_data(seed=1).val] != ids[0]
