"""zoo bench: what is measured, where results go, and the errors; never how fast (no timed assertions)."""

from __future__ import annotations

import json
import os

import data_factory as factory
import pytest
from conftest import FIXTURE_REGISTRY, run_zoo

from zoo import api
from zoo.bench import gpu_peak_tflops
from zoo.engine.config import AdaptConfig
from zoo.errors import InvalidInputError, ModelLoadError
from zoo.registry import read_registry_file

FIXTURES = read_registry_file(FIXTURE_REGISTRY)
REGISTRY = [str(FIXTURE_REGISTRY)]
FAST = {"warmup": 1, "iters": 3, "min_seconds": 0.0, "batch_sizes": (1, 2), "store": False}


@pytest.mark.parametrize("spec", FIXTURES, ids=lambda s: s.name)
def test_bench_every_fixture_backbone(spec, hub):
    result = api.bench(spec.name, registry_files=REGISTRY, **FAST)
    assert result.weights == "pretrained" and result.task == spec.tasks[0]
    assert 0 < result.latency_ms["min"] <= result.latency_ms["p50"] <= result.latency_ms["p95"]
    assert [t["batch_size"] for t in result.throughput] == [1, 2]
    assert all(t["samples_per_s"] > 0 for t in result.throughput)
    assert result.peak_memory_mb > 0 and result.peak_memory_kind == "process peak RSS"
    assert result.mfu is None, "no MFU without a GPU"
    assert result.fingerprint["cpu"] and result.fingerprint["torch"] and result.fingerprint["threads"] >= 1
    # Every speed figure has its spread over the rounds (5 by default), which the calls are shared out over.
    assert set(result.spread) == {"latency_p50_ms", "latency_p95_ms", "throughput_b1", "throughput_b2"}
    assert all(len(f["rounds"]) == 5 and f["low"] <= f["median"] <= f["high"] for f in result.spread.values())
    assert result.method["rounds"] == 5 and isinstance(result.warnings, list)
    # FLOPs at the registry's default input: the registry counts the encoder as published, bench the whole
    # classifier (audio heads project every frame); images differ only by the head's size.
    if spec.tasks[0] == "image-cls":
        assert result.gflops == pytest.approx(spec.gflops, rel=0.02)
    elif spec.tasks[0] == "audio-cls":
        assert spec.gflops * 0.98 <= result.gflops <= spec.gflops * 1.2


def test_random_weights_need_no_download(hub):
    result = api.bench("test_vit.r160_in1k", weights="random", registry_files=REGISTRY, **FAST)
    assert result.weights == "random" and result.params_m > 0


def test_input_size_options_change_the_cost(hub):
    small = api.bench("tiny-bert", seq_len=8, registry_files=REGISTRY, **FAST)
    large = api.bench("tiny-bert", seq_len=48, registry_files=REGISTRY, **FAST)
    assert small.input["shapes"]["input_ids"] == [1, 8] and large.input["shapes"]["input_ids"] == [1, 48]
    assert large.gflops > small.gflops
    image = api.bench("test_resnet.r160_in1k", image_size=96, registry_files=REGISTRY, **FAST)
    assert image.input["shapes"]["pixel_values"] == [1, 3, 96, 96]
    audio = api.bench("tiny-wav2vec2", seconds=0.5, registry_files=REGISTRY, **FAST)
    assert audio.input["shapes"]["input_values"] == [1, 8000]


@pytest.fixture(scope="module")
def finished_run(hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    images = factory.make_image_folder(root / "images", per_class=10)
    held_out = factory.make_image_folder(root / "held_out", per_class=4, seed=7)
    api.adapt("test_resnet.r160_in1k", str(images), output=root / "run", registry_files=REGISTRY, store=False,
              config=AdaptConfig(strategy="full", epochs=3, batch_size=6, lr=1e-3, patience=0))
    return root / "run", held_out


def test_bench_a_run_with_data_updates_record_card_and_history(finished_run):
    run, held_out = finished_run
    result = run_zoo("bench", str(run), "--data", str(held_out), "--batch-sizes", "1,4", "--iters", "5",
                     "--warmup", "1", "--rounds", "2", "--json", check=True)
    data = json.loads(result.stdout)
    assert len(data["spread"]["throughput_b4"]["rounds"]) == 2 and isinstance(data["warnings"], list)
    assert result.stderr.count("warning: ") == len(data["warnings"])   # each one on stderr too, JSON kept clean
    assert data["weights"] == "adapted" and data["run_dir"] == str(run.resolve())
    assert data["accuracy"]["examples"] == 12 and len(data["accuracy"]["confusion"]) == 3
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["status"] == "finished" and record["bench"][-1]["created_at"] == data["created_at"]
    card = (run / "README.md").read_text()
    assert "## Speed" in card and "model-index" in card
    history = json.loads(run_zoo("runs", "--json", check=True).stdout)
    assert isinstance(history, list)
    from zoo.store import RunStore

    assert any(b["created_at"] == data["created_at"] for b in RunStore().list_benches(run_dir=run))


def test_compare_shows_targets_side_by_side(finished_run, hub):
    run, _ = finished_run
    result = run_zoo("bench", "--compare", str(run), "test_vit.r160_in1k", "--batch-sizes", "1", "--iters", "3",
                     "--warmup", "1", "--registry", str(FIXTURE_REGISTRY), "--json", "--no-store", check=True)
    data = json.loads(result.stdout)
    assert [d["backbone"] for d in data] == ["test_resnet.r160_in1k", "test_vit.r160_in1k"]
    table = run_zoo("bench", str(run), "test_vit.r160_in1k", "--batch-sizes", "1", "--iters", "3", "--warmup", "1",
                    "--registry", str(FIXTURE_REGISTRY), "--no-store", check=True).stdout
    assert "test_resnet.r160_in1k" in table and "test_vit.r160_in1k" in table and "latency p50" in table


@pytest.mark.parametrize("args,message", [
    (["test_resnet.r160_in1k", "--data", "x"], "give a run directory"),
    (["test_resnet.r160_in1k", "--batch-sizes", "one"], "--batch-sizes"),
    (["test_resnet.r160_in1k", "--device", "cuda"], "no CUDA device"),
    (["test_resnet.r160_in1k", "--precision", "fp16"], "needs a CUDA device"),
    (["test_resnett"], "Did you mean"),
    (["test_resnet.r160_in1k", "--rounds", "0"], "--rounds"),
])
def test_bench_errors_are_one_line(args, message, hub):
    result = run_zoo("bench", *args, "--registry", str(FIXTURE_REGISTRY), "--no-store")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_unfinished_run_is_refused(finished_run, tmp_path):
    run, _ = finished_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    record = json.loads((copy / "zoo_run.json").read_text())
    record["status"] = "running"
    (copy / "zoo_run.json").write_text(json.dumps(record))
    result = run_zoo("bench", str(copy), "--no-store")
    assert result.returncode != 0 and "has not finished" in result.stderr


# --- Numbers that know their noise ---------------------------------------------------------------------------------


def test_a_busy_machine_is_detected_while_timing():
    import subprocess
    import sys
    import time

    from zoo.timing import busy_warnings, cpu_sample

    before = cpu_sample()
    if before is None:
        pytest.skip("no /proc/stat on this system: the check stays silent (tested below)")
    cores = os.cpu_count() or 1
    # One CPU-burning process per core for a second, bounded by its own clock, while this process sleeps.
    burners = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.0\n"
                                 "while time.time() < end: pass"]) for _ in range(cores)]
    for burner in burners:
        burner.wait(timeout=30)
    time.sleep(0.05)
    warnings = busy_warnings(before, cpu_sample(), threads=cores)
    assert any(w.startswith("other processes used") for w in warnings), warnings
    assert busy_warnings(None, before, threads=1) == [] and busy_warnings(before, None, threads=1) == []


def test_load_and_spread_warnings(monkeypatch):
    from zoo import timing
    from zoo.bench import _spread, _spread_warnings

    cores = os.cpu_count() or 1
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (cores + 4.0, 0.0, 0.0))
    assert "load average" in timing.load_warning(threads=1)
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert timing.load_warning(threads=cores) is None

    def unknown():
        raise OSError("no load average here")

    monkeypatch.setattr(timing.os, "getloadavg", unknown)
    assert timing.load_warning(threads=1) is None
    steady, jumpy = _spread([10.0, 10.2, 9.9]), _spread([10.0, 30.0, 10.1])
    assert (steady["median"], steady["low"], steady["high"]) == (10.0, 9.9, 10.2)
    assert _spread_warnings({"latency_p50_ms": steady}) == []
    [warning] = _spread_warnings({"latency_p50_ms": steady, "throughput_b8": jumpy})
    assert "throughput_b8 ranges 198% of its median" in warning and "--rounds" in warning


def test_the_table_shows_the_spread_and_stderr_the_warnings(hub, monkeypatch):
    from typer.testing import CliRunner

    from zoo import bench
    from zoo.cli import app

    monkeypatch.setattr(bench, "load_warning", lambda threads: "the machine was busy (test)")
    result = CliRunner().invoke(app, ["bench", "test_resnet.r160_in1k", "--batch-sizes", "1", "--iters", "4",
                                      "--warmup", "1", "--rounds", "2", "--registry", str(FIXTURE_REGISTRY),
                                      "--no-store"])
    assert result.exit_code == 0, result.output
    assert "warning: test_resnet.r160_in1k: the machine was busy (test)" in result.stderr
    assert "over 2 rounds" in result.stdout and "ms (" in result.stdout


def test_gpu_peak_table_and_mfu_inputs():
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert gpu_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert gpu_peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert gpu_peak_tflops("Tesla T4", "bf16") is None        # no bf16 tensor cores
    assert gpu_peak_tflops("Some Future GPU", "bf16") is None


# --- What a target means, and weights zoo will not load ------------------------------------------------------------


def _saved_timm_folder(folder):
    """A saved timm model, as `zoo bench` finds a folder of a run's native files."""
    import timm
    from timm.models import save_for_hf

    save_for_hf(timm.create_model("test_resnet", num_classes=2), str(folder), model_config={"label_names": ["a", "b"]},
                safe_serialization=True)
    return folder


def test_a_bare_name_is_the_registry_entry_and_a_folder_is_written_as_a_path(hub, tmp_path, monkeypatch):
    name = "test_resnet.r160_in1k"
    _saved_timm_folder(tmp_path / name)              # a folder in the working directory with a backbone's name
    _saved_timm_folder(tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    registry = api.bench(name, weights="random", registry_files=REGISTRY, **FAST)
    assert (registry.backbone, registry.weights) == (name, "random")
    folder = api.bench(f"./{name}", registry_files=REGISTRY, **FAST)
    assert (folder.backbone, folder.weights) == (name, "saved")
    assert api.bench(str(tmp_path / "mine"), **FAST).weights == "saved"
    with pytest.raises(InvalidInputError, match=r"not a registry backbone.*write it as a path: \./mine"):
        api.bench("mine", registry_files=REGISTRY, **FAST)
    with pytest.raises(InvalidInputError, match="no such folder"):
        api.bench("./missing", registry_files=REGISTRY, **FAST)


def test_a_backbone_named_with_its_family_has_its_size_measured_not_invented(tmp_path):
    from zoo.bench import _spec
    from zoo.plugins import get_plugin_manager
    from zoo.registry import Registry

    folder = _saved_timm_folder(tmp_path / "weights")
    spec = _spec(f"local-dir:{folder}", task=None, family="timm", registry=Registry([]),
                 plugins=get_plugin_manager())
    assert spec.params_m is None and spec.gflops is None and spec.input == {"image_size": 224}
    result = api.bench(f"local-dir:{folder}", family="timm", **FAST)
    assert (result.weights, result.task) == ("pretrained", "image-cls")
    assert result.params_m > 0 and result.gflops > 0 and result.input["shapes"]["pixel_values"][-1] > 0


def _pickle_only(folder):
    """Swap a model folder's safetensors weights for a pickled state dict that, as old training checkpoints do,
    holds an object besides tensors (so torch refuses it with weights_only=True)."""
    from pathlib import PurePosixPath

    import torch
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    state = {**load_file(str(weights)), "data_root": PurePosixPath("/data")}
    weights.unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_refused_pickle_says_zoo_loads_safetensors_and_how_to_convert(tmp_path):
    from tiny_models import build_bert

    timm_folder = _pickle_only(_saved_timm_folder(tmp_path / "timm"))
    bert_folder = tmp_path / "bert"
    build_bert(bert_folder)
    _pickle_only(bert_folder)
    registry = tmp_path / "pickled.toml"
    registry.write_text("".join(f'''
[[backbone]]
name = "{name}"
family = "{family}"
source = "local-dir:{folder}"
tasks = ["{task}"]
params_m = 0.1
gflops = 0.1
input = {inputs}
license = "apache-2.0"
pretrain = "random weights (test fixture)"
''' for name, family, folder, task, inputs in [
        ("pickled-resnet", "timm", timm_folder, "image-cls", "{ image_size = 160 }"),
        ("pickled-bert", "transformers", bert_folder, "text-cls", "{ max_tokens = 64, seq_len = 16 }")]))
    messages = []
    for target, convert in [("pickled-resnet", "save_for_hf(model, DIR, safe_serialization=True)"),
                            ("pickled-bert", "save_pretrained(DIR, safe_serialization=True)"),
                            (str(timm_folder), "save_for_hf"), (str(bert_folder), "save_pretrained")]:
        with pytest.raises(ModelLoadError) as caught:
            api.bench(target, registry_files=[registry], **FAST)
        message = str(caught.value)
        assert "zoo loads safetensors" in message and convert in message and "PurePosixPath" in message, message
        messages.append(message)
    assert not any("weights_only=False" in message or "\n" in message for message in messages)
