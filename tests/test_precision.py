"""Precision: one table resolves auto|bf16|fp16|fp32 for a device, and what was resolved is what records say."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FIXTURE_REGISTRY

from zoo import api
from zoo.engine.config import AdaptConfig
from zoo.errors import InvalidInputError
from zoo.precision import accelerate_mixed_precision, autocast, resolve_precision

REGISTRY = [str(FIXTURE_REGISTRY)]
FAST = {"warmup": 1, "iters": 3, "min_seconds": 0.0, "batch_sizes": (1,), "store": False}


@pytest.mark.parametrize("requested,expected", [("auto", "fp32"), ("fp32", "fp32"), ("bf16", "bf16")])
@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")], ids=["str", "torch.device"])
def test_resolution_on_a_cpu(requested, expected, device):
    assert resolve_precision(requested, device) == expected


def test_fp16_on_a_cpu_is_refused_with_the_way_on():
    with pytest.raises(InvalidInputError, match="--precision fp16 needs a CUDA device; use bf16 or fp32 on a CPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(InvalidInputError, match="--precision"):
        resolve_precision("fp8", "cpu")


def test_resolution_on_a_gpu(monkeypatch):
    for supported, expected in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert resolve_precision("auto", "cuda:0") == expected
    assert resolve_precision("fp16", "cuda") == "fp16" and resolve_precision("fp32", "cuda") == "fp32"


def test_autocast_and_accelerate_follow_the_resolved_precision():
    with autocast("fp32", "cpu")():
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", "cpu")():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert [accelerate_mixed_precision(p) for p in ("fp32", "bf16", "fp16")] == ["no", "bf16", "fp16"]


def test_bench_reports_the_precision_it_used(hub):
    assert api.bench("test_resnet.r160_in1k", precision="auto", registry_files=REGISTRY, **FAST).precision == "fp32"
    assert api.bench("test_resnet.r160_in1k", precision="bf16", registry_files=REGISTRY, **FAST).precision == "bf16"


def test_run_record_and_card_say_the_precision_used(hub, datasets, tmp_path, monkeypatch):
    run = tmp_path / "run"
    api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25, store=False,
              config=AdaptConfig(strategy="full", epochs=1, batch_size=8, patience=0), registry_files=REGISTRY)
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["config_requested"]["precision"] == "auto" and record["precision_used"] == "fp32"
    assert "precision fp32" in (run / "README.md").read_text()
    # predict is handed the precision the run used (and runs it on a GPU; see the test below for a CPU)
    handed = {}
    monkeypatch.setattr(api, "predict_inputs", lambda classifier, inputs, **options: handed.update(options) or [])
    api.predict(run, ["an image"])
    assert handed["precision"] == "fp32"


class _AutocastProbe:
    """A classifier that notes whether its forward pass ran under autocast."""

    task, labels, multi_label, sample_rate = "text-cls", ["a", "b"], False, None

    def __init__(self) -> None:
        self.model = torch.nn.Linear(2, 2)
        self.autocast_seen: list[bool] = []

    def preprocess(self, example, *, train=False):
        return {"x": torch.tensor([float(len(example)), 1.0])}

    def batch_key(self, item):
        return None

    def collate(self, items):
        return {"x": torch.stack([item["x"] for item in items])}

    def forward(self, batch):
        self.autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return self.model(batch["x"])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_predict_runs_in_fp32_on_a_cpu_whatever_the_run_used(precision):
    from zoo.engine.predict import predict_inputs

    probe = _AutocastProbe()
    predictions = predict_inputs(probe, ["one", "three"], top_k=1, precision=precision)
    assert len(predictions) == 2 and probe.autocast_seen == [False]
