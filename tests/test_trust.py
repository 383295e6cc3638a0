"""A run that says "finished" is sound, one run owns one folder, and bad input is refused before anything is
written: option checks, run-directory claims, the history, strict JSON, finite weights, and a table of bad
command lines across every command."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from conftest import FIXTURE_REGISTRY
from typer.testing import CliRunner

from zoo import api, jsonio
from zoo.cli import app
from zoo.engine.config import AdaptConfig
from zoo.engine.rundir import claim_new
from zoo.errors import DiskFullError, InvalidInputError, NonFiniteWeightsError, PluginError, RunDirectoryBusyError
from zoo.store import RunStore

REGISTRY = [str(FIXTURE_REGISTRY)]


def tiny_config(**overrides) -> AdaptConfig:
    values = {"strategy": "linear", "epochs": 1, "batch_size": 16, "patience": 0}
    values.update(overrides)
    return AdaptConfig(**values)


@pytest.fixture(scope="module")
def finished_run(hub, datasets, tmp_path_factory) -> Path:
    """A finished tiny-bert run."""
    out = tmp_path_factory.mktemp("trust") / "run"
    api.adapt("tiny-bert", str(datasets["text-cls"]), output=out, config=tiny_config(), registry_files=REGISTRY,
              store=False)
    return out


@pytest.fixture(scope="module")
def nan_run(finished_run, tmp_path_factory) -> Path:
    """A copy of the finished run whose saved weights hold a NaN."""
    from safetensors.torch import load_file, save_file

    copy = tmp_path_factory.mktemp("trust") / "nan-run"
    shutil.copytree(finished_run, copy)
    weights = load_file(str(copy / "model.safetensors"))
    name = next(n for n, t in weights.items() if t.is_floating_point())
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    return copy


@pytest.fixture
def history(tmp_path, monkeypatch) -> RunStore:
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv("ZOO_STORE", str(path))
    return RunStore(path)


# --- one run, one folder ----------------------------------------------------------------------------------------


def test_a_held_folder_refuses_a_second_run_at_once_naming_the_holder(hub, datasets, tmp_path):
    out = tmp_path / "run"
    with claim_new(out, default=tmp_path / "unused"):
        started = time.monotonic()
        with pytest.raises(RunDirectoryBusyError) as refused:
            api.adapt("tiny-bert", str(datasets["text-cls"]), output=out, config=tiny_config(),
                      registry_files=REGISTRY, store=False)
        assert f"process {os.getpid()}" in str(refused.value) and str(out) in str(refused.value)
        assert time.monotonic() - started < 30   # refused before the data is read (a bound, not a timing test)
        assert sorted(p.name for p in out.iterdir()) == [".zoo"]      # the holder's lock, nothing of the second
    assert not out.exists(), "the claim made the folder and removes it when no run started in it"


def test_resume_takes_the_same_lock(finished_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    record = json.loads((copy / "zoo_run.json").read_text())
    (copy / "zoo_run.json").write_text(json.dumps({**record, "status": "running"}))
    from zoo.engine.rundir import claim_existing

    with claim_existing(copy), pytest.raises(RunDirectoryBusyError):
        api.resume(copy, store=False)


def test_default_folder_names_never_collide(tmp_path):
    base = tmp_path / "runs" / "data-tiny"
    with claim_new(None, default=base) as first, claim_new(None, default=base) as second:
        assert first.run_dir == base and second.run_dir == base.with_name("data-tiny-2")
    assert not (tmp_path / "runs").exists(), "reserved folders of runs that never started are removed"


def test_output_that_is_a_file_or_not_empty_is_refused(tmp_path):
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        claim_new(a_file, default=tmp_path / "unused")
    with pytest.raises(InvalidInputError, match="cannot create"):
        claim_new(a_file / "run", default=tmp_path / "unused")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        claim_new(folder, default=tmp_path / "unused")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_two_runs_started_together_into_one_folder(hub, datasets, tmp_path, history):
    out = tmp_path / "run"
    command = [shutil.which("zoo", path=str(Path(sys.executable).parent)), "adapt", "tiny-bert",
               "--data", str(datasets["text-cls"]), "--output", str(out), "--registry", str(FIXTURE_REGISTRY),
               "--strategy", "linear", "--epochs", "1", "--json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    refused = next(stderr for code, _, stderr in results if code != 0)
    assert len(refused.strip().splitlines()) == 1 and str(out) in refused, refused
    assert "another run is using this folder" in refused or "already exists" in refused
    assert json.loads((out / "zoo_run.json").read_text())["status"] == "finished"
    assert [r.status for r in history.list_runs()] == ["finished"]


# --- the history ------------------------------------------------------------------------------------------------


def test_the_history_shows_a_run_while_it_trains(hub, datasets, tmp_path, history):
    from zoo.engine.trainer import Reporter

    seen = []

    class Watcher(Reporter):
        def epoch_end(self, record) -> None:
            seen.extend(run.status for run in RunStore(history.path).list_runs())

    record = api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "run",
                       config=tiny_config(strategy="full"), registry_files=REGISTRY, reporter=Watcher())
    assert seen == ["running"]
    assert [r.status for r in history.list_runs()] == ["finished"] and record["store_id"] == 1


def test_a_history_that_cannot_be_opened_stops_the_run_before_it_starts(datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_STORE", str(tmp_path))    # a folder, not a database
    with pytest.raises(Exception, match="cannot use run history"):
        api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "run", config=tiny_config(),
                  registry_files=REGISTRY)
    assert not (tmp_path / "run").exists()


def test_a_full_disk_fails_the_run_cleanly(hub, datasets, tmp_path, history, monkeypatch):
    import errno

    import safetensors.torch

    def full(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")   # what a write cut short by a full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)   # the checkpoint writes through it
    out = tmp_path / "run"
    with pytest.raises(DiskFullError) as failed:
        api.adapt("tiny-bert", str(datasets["text-cls"]), output=out, config=tiny_config(strategy="full"),
                  registry_files=REGISTRY)
    assert str(out) in str(failed.value) and "no space left" in str(failed.value)
    record = json.loads((out / "zoo_run.json").read_text())
    assert record["status"] == "failed" and "DiskFullError" in record["error"]
    assert [r.status for r in history.list_runs()] == ["failed"]
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("checkpoint.tmp"))


# --- the registry snapshot --------------------------------------------------------------------------------------


def test_resume_needs_no_registry_file(hub, datasets, tmp_path):
    from zoo.engine.trainer import Reporter

    class Interrupt(Reporter):
        def epoch_end(self, record) -> None:
            if record["epoch"] == 1:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        api.adapt("tiny-bert", str(datasets["text-cls"]), output=out, config=tiny_config(strategy="full", epochs=2),
                  registry_files=REGISTRY, reporter=Interrupt(), store=False)
    assert json.loads((out / "zoo_run.json").read_text())["status"] == "failed"
    record = api.resume(out, store=False)     # tiny-bert is only in the fixture registry, not given here
    assert record["status"] == "finished" and len(record["metrics"]["epochs"]) == 2
    assert record["backbone"]["name"] == "tiny-bert" and record["backbone"]["source"]
    assert api.predict(out, ["a fine review"])[0].labels


# --- finite weights and strict JSON -----------------------------------------------------------------------------


def test_a_run_with_non_finite_weights_is_refused_everywhere(nan_run):
    with pytest.raises(NonFiniteWeightsError, match="NaN or infinite"):
        api.predict(nan_run, ["some text"])
    with pytest.raises(NonFiniteWeightsError):
        api.bench(str(nan_run), store=False)
    from zoo.hub.push import push_run

    with pytest.raises(NonFiniteWeightsError):
        push_run(nan_run, repo_id="someone/model", token="hf_unused")


def test_strict_json_never_writes_nan():
    data = {"accuracy": float("nan"), "loss": float("inf"), "ok": 0.5, "list": [1.0, float("-inf")],
            "nested": {"f1": float("nan")}, "path": Path("a/b")}
    text = jsonio.dumps(data)
    parsed = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert parsed["accuracy"] is None and parsed["accuracy_note"] == "not a finite number (nan)"
    assert parsed["loss_note"] == "not a finite number (inf)" and parsed["list"] == [1.0, None]
    assert parsed["nested"] == {"f1": None, "f1_note": "not a finite number (nan)"} and parsed["ok"] == 0.5
    assert parsed["path"] == "a/b" and not math.isnan(parsed["ok"])


def test_json_output_of_a_record_with_a_nan_metric_is_strict(finished_run, history):
    record = json.loads((finished_run / "zoo_run.json").read_text())
    record["metrics"]["best"]["macro_f1"] = float("nan")
    run_id = history.record_run(record)
    result = CliRunner().invoke(app, ["runs", "show", str(run_id), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))
    assert shown["metrics"]["best"]["macro_f1"] is None and "macro_f1_note" in shown["metrics"]["best"]


# --- plugins that break the contract ----------------------------------------------------------------------------


def test_a_bad_lora_target_list_names_the_plugin(hub, datasets, tmp_path, monkeypatch):
    from zoo_transformers.family import TransformersClassifier

    for bad in (["no_such_module"], "query"):
        monkeypatch.setattr(TransformersClassifier, "lora_targets", lambda self, bad=bad: bad)
        with pytest.raises(PluginError, match=r"zoo_transformers.*lora_targets\(\)"):
            api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "run",
                      config=tiny_config(strategy="lora"), registry_files=REGISTRY, store=False)
        assert not (tmp_path / "run").exists()


def test_degenerate_features_are_scored_without_failing():
    import numpy as np

    from zoo.recommend.combine import combine
    from zoo.recommend.estimators import ESTIMATORS
    from zoo.recommend.transfer import estimate_all

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    features = {"constant": np.ones((30, 8)), "good": rng.normal(size=(30, 8)) + labels[:, None],
                "zeros": np.zeros((30, 8))}
    estimates = estimate_all(features, labels, estimators=list(ESTIMATORS), bootstrap=3, seed=0)
    combined = combine(np.zeros(3), estimates).combined
    assert np.isfinite(combined).all()
    assert combined[1] > max(combined[0], combined[2])


# --- every command refuses bad input in one line, writing nothing ----------------------------------------------


def _bad_command_lines(data: str, images: str, run: str, nan_run: str, unfinished: str, a_file: str) -> dict:
    adapt = ["adapt", "tiny-bert", "--data", data, "--registry", str(FIXTURE_REGISTRY)]
    nodes = ["--nodes", "2", "--master-addr", "127.0.0.1"]
    rec = ["recommend", "--task", "text-cls"]
    rec_data = [*rec, "--data", data, "--registry", str(FIXTURE_REGISTRY), "--candidates", "tiny-bert"]
    bench = ["bench", "tiny-bert", "--weights", "random", "--registry", str(FIXTURE_REGISTRY)]
    return {
        # adapt: options
        "adapt empty data": (["adapt", "tiny-bert", "--data", ""], "--data"),
        "adapt no backbone": (["adapt", "--data", data], "BACKBONE"),
        "adapt lr inf": ([*adapt, "--lr", "inf"], "--lr"),
        "adapt lr nan": ([*adapt, "--lr", "nan"], "--lr"),
        "adapt lr negative": ([*adapt, "--lr", "-0.1"], "--lr"),
        "adapt lr zero": ([*adapt, "--lr", "0"], "--lr"),
        "adapt lr text": ([*adapt, "--lr", "fast"], "--lr"),
        "adapt label smoothing 1": ([*adapt, "--label-smoothing", "1"], "--label-smoothing"),
        "adapt label smoothing negative": ([*adapt, "--label-smoothing", "-0.1"], "--label-smoothing"),
        "adapt max length 0": ([*adapt, "--max-length", "0"], "--max-length"),
        "adapt max seconds 0": ([*adapt, "--max-seconds", "0"], "--max-seconds"),
        "adapt max seconds nan": ([*adapt, "--max-seconds", "nan"], "--max-seconds"),
        "adapt epochs 0": ([*adapt, "--epochs", "0"], "--epochs"),
        "adapt epochs text": ([*adapt, "--epochs", "many"], "--epochs"),
        "adapt batch size 0": ([*adapt, "--batch-size", "0"], "--batch-size"),
        "adapt workers text": ([*adapt, "--workers", "many"], "--workers"),
        "adapt patience negative": ([*adapt, "--patience", "-1"], "--patience"),
        "adapt warmup ratio 1": ([*adapt, "--warmup-ratio", "1"], "--warmup-ratio"),
        "adapt warmup ratio nan": ([*adapt, "--warmup-ratio", "nan"], "--warmup-ratio"),
        "adapt image size 0": ([*adapt, "--image-size", "0"], "--image-size"),
        "adapt image size too large": ([*adapt, "--image-size", "100000"], "--image-size"),
        "adapt image size for text": ([*adapt, "--image-size", "32"], "--image-size"),
        "adapt image size off the patch": (["adapt", "test_vit.r160_in1k", "--data", images, "--registry",
                                            str(FIXTURE_REGISTRY), "--image-size", "40"], "--image-size 40"),
        "adapt layer decay 0": ([*adapt, "--layer-decay", "0"], "--layer-decay"),
        "adapt layer decay above 1": ([*adapt, "--layer-decay", "1.5"], "--layer-decay"),
        "adapt device tpu": ([*adapt, "--device", "tpu"], "--device"),
        "adapt device cuda without one": ([*adapt, "--device", "cuda"], "--device"),
        "adapt seed negative": ([*adapt, "--seed", "-1"], "--seed"),
        "adapt seed too large": ([*adapt, "--seed", str(2**32)], "--seed"),
        "adapt output is a file": ([*adapt, "--output", a_file], a_file),
        "adapt output under a file": ([*adapt, "--output", a_file + "/run"], "--output"),
        "adapt val fraction 1": ([*adapt, "--val-fraction", "1"], "--val-fraction"),
        "adapt val fraction nan": ([*adapt, "--val-fraction", "nan"], "--val-fraction"),
        "adapt processes 0": ([*adapt, "--processes", "0"], "--processes"),
        "adapt nodes 0": ([*adapt, "--nodes", "0"], "--nodes"),
        "adapt node rank without nodes": ([*adapt, "--node-rank", "1"], "--node-rank"),
        "adapt node rank outside nodes": ([*adapt, *nodes, "--node-rank", "2"], "--node-rank 2"),
        "adapt nodes without node rank": ([*adapt, "--nodes", "2", "--master-addr", "127.0.0.1"], "--node-rank"),
        "adapt nodes without master": ([*adapt, "--nodes", "2", "--node-rank", "0"], "--master-addr"),
        "adapt master port 0": ([*adapt, *nodes, "--node-rank", "0", "--master-port", "0"], "--master-port"),
        "adapt nodes without output": ([*adapt, *nodes, "--node-rank", "0"], "--output"),
        "adapt grad accum 0": ([*adapt, "--grad-accum", "0"], "--grad-accum"),
        "adapt checkpoint every 0": ([*adapt, "--checkpoint-every", "0"], "--checkpoint-every"),
        "adapt strategy": ([*adapt, "--strategy", "magic"], "--strategy"),
        "adapt precision": ([*adapt, "--precision", "fp8"], "--precision"),
        "adapt augment": ([*adapt, "--augment", "heavy"], "--augment"),
        "adapt class weights": ([*adapt, "--class-weights", "balanced"], "--class-weights"),
        "adapt unknown option": ([*adapt, "--learning-rate", "0.1"], "--learning-rate"),
        "adapt unknown backbone": (["adapt", "tiny-bertt", "--data", data, "--registry", str(FIXTURE_REGISTRY)],
                                   "tiny-bertt"),
        "adapt missing data": (["adapt", "tiny-bert", "--data", data + ".missing", "--registry",
                                str(FIXTURE_REGISTRY)], ".missing"),
        "adapt metric": ([*adapt, "--metric", "f1"], "--metric"),
        "adapt task": ([*adapt, "--task", "video-cls"], "video-cls"),
        "adapt wrong task": ([*adapt, "--task", "image-cls"], "image-cls"),
        "adapt label sep empty": ([*adapt, "--label-sep", ""], "--label-sep"),
        "adapt resume missing": (["adapt", "--resume", run + "-missing"], "-missing"),
        "adapt resume finished": (["adapt", "--resume", run], "already finished"),
        "adapt resume a file": (["adapt", "--resume", a_file], a_file),
        "adapt resume in other processes": (["adapt", "--resume", unfinished, "--processes", "2"], "--processes 2"),
        # recommend
        "recommend latency nan": ([*rec, "--max-latency-ms", "nan"], "--max-latency-ms"),
        "recommend latency negative": ([*rec, "--max-latency-ms", "-5"], "--max-latency-ms"),
        "recommend latency inf": ([*rec, "--max-latency-ms", "inf"], "--max-latency-ms"),
        "recommend top 0": ([*rec, "--top", "0"], "--top"),
        "recommend device": ([*rec, "--device", "tpu"], "tpu"),
        "recommend no task": (["recommend"], "--task"),
        "recommend unknown task": (["recommend", "--task", "video-cls"], "video-cls"),
        "recommend max params": ([*rec, "--max-params", "lots"], "lots"),
        "recommend examples 0": ([*rec, "--examples", "0"], "--examples"),
        "recommend budget negative": ([*rec_data, "--budget-s", "-1"], "--budget-s"),
        "recommend bootstrap negative": ([*rec_data, "--bootstrap", "-1"], "--bootstrap"),
        "recommend sample too small": ([*rec_data, "--sample", "5"], "--sample"),
        "recommend layers": ([*rec_data, "--layers", "first"], "--layers"),
        "recommend seed negative": ([*rec_data, "--seed", "-3"], "--seed"),
        "recommend unknown candidate": ([*rec_data[:-1], "tiny-bertt"], "tiny-bertt"),
        # bench
        "bench batch size 0": ([*bench, "--batch-sizes", "0"], "--batch-sizes"),
        "bench batch size negative": ([*bench, "--batch-sizes", "1,-8"], "--batch-sizes"),
        "bench batch size text": ([*bench, "--batch-sizes", "one"], "--batch-sizes"),
        "bench image size 0": ([*bench, "--image-size", "0"], "--image-size"),
        "bench seq len negative": ([*bench, "--seq-len", "-1"], "--seq-len"),
        "bench seconds 0": ([*bench, "--seconds", "0"], "--seconds"),
        "bench warmup negative": ([*bench, "--warmup", "-1"], "--warmup"),
        "bench iters 0": ([*bench, "--iters", "0"], "--iters"),
        "bench weights": ([*bench[:-4], "--weights", "fresh"], "--weights"),
        "bench device": ([*bench, "--device", "tpu"], "--device"),
        "bench precision": ([*bench, "--precision", "int4"], "--precision"),
        "bench unknown target": (["bench", "no-such-model"], "no-such-model"),
        "bench nan weights": (["bench", nan_run, "--no-store"], "NaN"),
        "bench unfinished": (["bench", unfinished, "--no-store"], "has not finished"),
        # predict
        "predict missing run": (["predict", run + "-missing", "text"], "-missing"),
        "predict top k 0": (["predict", run, "text", "--top-k", "0"], "--top-k"),
        "predict nan weights": (["predict", nan_run, "text"], "NaN"),
        "predict unfinished": (["predict", unfinished, "text"], "has not finished"),
        # explain
        "explain missing run": (["explain", run + "-missing", "text"], "-missing"),
        "explain method": (["explain", run, "text", "--method", "lime"], "--method"),
        "explain steps 0": (["explain", run, "text", "--steps", "0"], "--steps"),
        "explain steps text": (["explain", run, "text", "--steps", "many"], "--steps"),
        "explain batch 0": (["explain", run, "text", "--batch", "0"], "--batch"),
        "explain max evals 1": (["explain", run, "text", "--method", "shap", "--max-evals", "1"], "--max-evals"),
        "explain unknown target": (["explain", run, "text", "--target", "no-such-label"], "no-such-label"),
        "explain device": (["explain", run, "text", "--device", "tpu"], "--device"),
        "explain nan weights": (["explain", nan_run, "text"], "NaN"),
        "explain unfinished": (["explain", unfinished, "text"], "has not finished"),
        # export
        # better models: options and runs checked before anything is trained or written
        "tune linear": (["tune", "tiny-bert", "--data", data, "--strategy", "linear",
                         "--registry", str(FIXTURE_REGISTRY)], "--strategy"),
        "tune zero trials": (["tune", "tiny-bert", "--data", data, "--trials", "0",
                              "--registry", str(FIXTURE_REGISTRY)], "--trials"),
        "soup one run": (["soup", run], "two"),
        "soup unfinished": (["soup", run, unfinished], "has not finished"),
        "ensemble one run": (["ensemble", run], "two"),
        "ensemble size zero": (["ensemble", run, run + "-missing", "--size", "0"], "--size"),
        "distill alpha": (["distill", "--teacher", run, "--student", "tiny-bert", "--data", data, "--alpha", "2",
                           "--registry", str(FIXTURE_REGISTRY)], "--alpha"),
        "distill unfinished teacher": (["distill", "--teacher", unfinished, "--student", "tiny-bert", "--data", data,
                                        "--registry", str(FIXTURE_REGISTRY)], "has not finished"),
        "export missing run": (["export", run + "-missing"], "-missing"),
        "export nan weights": (["export", nan_run], "NaN"),
        "export unfinished": (["export", unfinished], "has not finished"),
        "export quantize": (["export", run, "--quantize", "int4"], "--quantize"),
        "export format": (["export", run, "--format", "tflite"], "--format"),
        "export opset too low": (["export", run, "--opset", "3"], "--opset"),
        "export calib 0": (["export", run, "--calib", "0"], "--calib"),
        "export output is a file": (["export", run, "-o", a_file], a_file),
        "export missing check data": (["export", run, "--check", data + ".missing"], ".missing"),
        # serve (refused before any model loads or a port is bound)
        "serve missing run": (["serve", run + "-missing"], "-missing"),
        "serve nan weights": (["serve", nan_run], "NaN"),
        "serve unfinished": (["serve", unfinished], "has not finished"),
        "serve backend": (["serve", run, "--backend", "tensorrt"], "--backend"),
        "serve onnx without an export": (["serve", run, "--backend", "onnx"], "zoo export"),
        "serve port negative": (["serve", run, "--port", "-1"], "--port"),
        "serve port too large": (["serve", run, "--port", "70000"], "--port"),
        "serve max batch 0": (["serve", run, "--max-batch", "0"], "--max-batch"),
        "serve max wait nan": (["serve", run, "--max-wait-ms", "nan"], "--max-wait-ms"),
        "serve max wait negative": (["serve", run, "--max-wait-ms", "-1"], "--max-wait-ms"),
        "serve top k 0": (["serve", run, "--top-k", "0"], "--top-k"),
        "serve workers 0": (["serve", run, "--workers", "0"], "--workers"),
        "serve max body 0": (["serve", run, "--max-body-mb", "0"], "--max-body-mb"),
        "serve empty host": (["serve", run, "--host", ""], "--host"),
        "serve name with a slash": (["serve", run, "--name", "a/b"], "--name"),
        "serve print config": (["serve", run, "--print-config", "helm"], "--print-config"),
        # push and fetch
        "push nan weights": (["push", nan_run, "--repo-id", "someone/model", "--token", "hf_unused"], "NaN"),
        "push unfinished": (["push", unfinished, "--repo-id", "someone/model", "--token", "hf_unused"],
                            "has not finished"),
        "push bad repo id": (["push", run, "--repo-id", "no-namespace", "--token", "hf_unused"], "no-namespace"),
        "fetch unknown": (["fetch", "no-such-model"], "no-such-model"),
        "fetch top 0": (["fetch", "--task", "text-cls", "--top", "0"], "--top"),
        # runs, info, list
        "runs status": (["runs", "--status", "bogus"], "--status"),
        "runs limit negative": (["runs", "--limit", "-1"], "--limit"),
        "runs task": (["runs", "--task", "video-cls"], "video-cls"),
        "runs show unknown": (["runs", "show", "99999"], "99999"),
        "runs show text": (["runs", "show", "abc"], "ID"),
        "info unknown": (["info", "no-such-model"], "no-such-model"),
        "plugins bad registry": (["plugins", "--registry", a_file], a_file),
        "list unknown task": (["list", "--task", "video-cls"], "video-cls"),
        "unknown command": (["adaptt"], "adaptt"),
    }


@pytest.fixture(scope="module")
def bad_input_world(finished_run, nan_run, datasets, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    unfinished = root / "unfinished"
    shutil.copytree(finished_run, unfinished)
    record = json.loads((unfinished / "zoo_run.json").read_text())
    (unfinished / "zoo_run.json").write_text(json.dumps({**record, "status": "running"}))
    a_file = root / "a-file.txt"
    a_file.write_text("not a folder")
    return {"data": str(datasets["text-cls"]), "images": str(datasets["image-cls"]), "run": str(finished_run),
            "nan_run": str(nan_run), "unfinished": str(unfinished), "a_file": str(a_file)}


BAD_CASES = list(_bad_command_lines(*["X"] * 6))


def test_every_command_has_bad_input_cases():
    commands = set(typer.main.get_command(app).commands)   # read from the app: a new command needs cases too
    covered = {args[0] for args, _ in _bad_command_lines(*["X"] * 6).values()}
    assert commands <= covered, f"no bad-input case for {sorted(commands - covered)}"


def _tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")} if path.exists() else {}


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_command_lines_are_one_line_and_write_nothing(case, hub, bad_input_world, tmp_path, monkeypatch):
    assert len(BAD_CASES) >= 60
    args, named = _bad_command_lines(**bad_input_world)[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_STORE", str(tmp_path / "history.sqlite"))
    watched = [Path(bad_input_world[key]) for key in ("run", "nan_run", "unfinished")]
    before = [_tree(path) for path in watched]
    result = CliRunner().invoke(app, args)
    stderr = result.stderr
    assert result.exit_code not in (0, None), (case, result.output)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), (case, stderr)
    assert named in lines[0], (case, lines[0])
    assert "Traceback" not in stderr and "unexpected" not in stderr, (case, stderr)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "history.sqlite")
    assert left == [], f"{case}: wrote {left}"
    if (tmp_path / "history.sqlite").exists():
        assert RunStore(tmp_path / "history.sqlite").list_runs() == [], case
    assert [_tree(path) for path in watched] == before, f"{case}: changed a run directory"


def test_a_really_full_disk_fails_the_run_cleanly(hub, datasets, tmp_path, history):
    # A small tmpfs that holds the run record but not a checkpoint: the writers' own errors (safetensors' and
    # torch's do not say ENOSPC) must still come out as a full disk.
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    try:
        out = small / "run"
        with pytest.raises(DiskFullError) as failed:
            api.adapt("tiny-bert", str(datasets["text-cls"]), output=out, config=tiny_config(strategy="full"),
                      registry_files=REGISTRY)
        assert "no space left" in str(failed.value) and "free" in str(failed.value)
        record = json.loads((out / "zoo_run.json").read_text())
        assert record["status"] == "failed" and "DiskFullError" in record["error"]
        assert [r.status for r in history.list_runs()] == ["failed"]
        assert not list(out.rglob("*.tmp")) and not list(out.rglob("checkpoint.tmp"))
        result = CliRunner().invoke(app, ["predict", str(out), "some text"])
        assert result.exit_code == 2 and "failed" in result.stderr
    finally:
        subprocess.run(["umount", str(small)], check=False)
