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


def test_run_record_and_card_say_the_precision_used(hub, datasets, tmp_path):
    run = tmp_path / "run"
    api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25, store=False,
              config=AdaptConfig(strategy="full", epochs=1, batch_size=8, patience=0), registry_files=REGISTRY)
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["config_requested"]["precision"] == "auto" and record["precision_used"] == "fp32"
    assert "precision fp32" in (run / "README.md").read_text()
