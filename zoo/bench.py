"""`zoo bench`: latency, throughput, memory, FLOPs, model FLOPs utilisation and accuracy of a model on this machine.

Method, as timm's benchmark does it: the model in eval mode under `torch.inference_mode`, inputs prepared on the
device beforehand (so only the forward pass is timed), warm-up calls first, the device synchronised around every
timed call, and many calls timed one by one: percentiles of them for latency, total samples over total time for
throughput.
"""

from __future__ import annotations

import platform
import re
import resource
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from zoo.errors import InvalidInputError
from zoo.hardware import check_device, cpu_name
from zoo.runs.record import has_record

# Dense peak TFLOP/s per GPU (bf16/fp16 tensor cores without sparsity, and plain fp32), from the vendors' data
# sheets, for model FLOPs utilisation. Matched against torch.cuda.get_device_name(), first match wins.
GPU_PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    (r"H200", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    (r"H100.*(SXM|HBM3)", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    (r"H100.*NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0}),
    (r"H100", {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0}),           # PCIe
    (r"A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    (r"L40S", {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6}),
    (r"L4\b", {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3}),
    (r"A10G?\b", {"bf16": 125.0, "fp16": 125.0, "fp32": 31.2}),
    (r"RTX 4090", {"bf16": 165.2, "fp16": 165.2, "fp32": 82.6}),
    (r"V100", {"fp16": 125.0, "fp32": 15.7}),
    (r"T4\b", {"fp16": 65.0, "fp32": 8.1}),
]


def gpu_peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak of a known GPU in this precision, or None."""
    for pattern, peaks in GPU_PEAK_TFLOPS:
        if re.search(pattern, device_name):
            return peaks.get(precision)
    return None


@dataclass
class BenchResult:
    target: str
    backbone: str
    family: str
    task: str
    device: str
    precision: str
    weights: str                                   # pretrained | random | adapted (a run directory)
    input: dict[str, Any]
    params_m: float
    gflops: float                                  # measured forward GFLOPs per example at this input
    latency_ms: dict[str, float]                   # batch 1: p50, p95, mean, min, calls
    throughput: list[dict[str, Any]]               # per batch size: samples_per_s, ms_per_batch, calls
    peak_memory_mb: float | None
    peak_memory_kind: str                          # "cuda max allocated" | "process peak RSS"
    mfu: float | None = None                       # model FLOPs utilisation at the largest batch (GPU only)
    accuracy: dict[str, Any] | None = None         # with --data: accuracy, macro-F1, confusion
    fingerprint: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(device) -> dict[str, Any]:
    """What the numbers depend on: device, driver, library versions, CPU, threads."""
    import torch

    info: dict[str, Any] = {"device": str(device), "cpu": cpu_name(), "threads": torch.get_num_threads(),
                            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                            "platform": platform.platform()}
    for package in ("zoo-hub", "timm", "transformers"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        try:
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def synthetic_example(task: str, *, image_size: int, seq_len: int, seconds: float, sample_rate: int | None):
    """A raw example of the requested size, for timing (content does not change the cost)."""
    import numpy as np

    if task == "image-cls":
        from PIL import Image

        pixels = np.random.default_rng(0).integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
        return Image.fromarray(pixels)
    if task == "text-cls":
        return " ".join(["the quick brown fox jumps over the lazy dog"] * (seq_len // 4 + 1))
    return np.random.default_rng(0).standard_normal(int(seconds * (sample_rate or 16000))).astype(np.float32)


def _make_batch(classifier, example, batch_size: int, image_size: int | None, device):
    import torch

    batch = classifier.collate([classifier.preprocess(example) for _ in range(batch_size)])
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            if image_size and value.ndim == 4 and value.is_floating_point() and value.shape[-1] != image_size:
                # Benchmark another resolution than the model's preprocessing produces.
                value = torch.nn.functional.interpolate(value, size=(image_size, image_size), mode="bilinear")
            value = value.to(device)
        moved[key] = value
    return moved


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB on Linux


def measure(classifier, *, target: str, backbone: str, family: str, weights: str, device: str = "cpu",
            precision: str = "fp32", batch_sizes: tuple[int, ...] = (1, 8, 32), image_size: int | None = None,
            seq_len: int = 128, seconds: float = 1.0, warmup: int = 10, iters: int = 50,
            min_seconds: float = 1.0) -> BenchResult:
    """Time ``classifier`` (already loaded) and count its parameters and FLOPs."""
    import torch

    from zoo.timing import time_calls

    check_device("--device", device, allow_auto=False)
    if precision not in ("fp32", "bf16", "fp16"):
        raise InvalidInputError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    if precision == "fp16" and not device.startswith("cuda"):
        raise InvalidInputError("--precision fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
    if not batch_sizes or min(batch_sizes) < 1:
        raise InvalidInputError("--batch-sizes must be positive integers, e.g. 1,8,32")
    torch_device = torch.device(device)
    model = classifier.model.to(torch_device).eval()
    task = classifier.task
    if task == "text-cls" and hasattr(classifier, "max_length"):
        classifier.max_length = seq_len
    size = image_size or _default_image_size(classifier)
    example = synthetic_example(task, image_size=size, seq_len=seq_len, seconds=seconds,
                                sample_rate=classifier.sample_rate)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(torch_device.type, dtype=dtype)) if dtype else _null

    def run(batch):
        with autocast():
            return classifier.forward(batch)

    one = _make_batch(classifier, example, 1, image_size, torch_device)
    gflops = count_gflops(lambda: run(one))
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    input_desc = _input_description(one, task, seq_len=seq_len, seconds=seconds)

    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    latency = time_calls(lambda: run(one), warmup=warmup, iters=iters, device=device, min_seconds=min_seconds)
    throughput = []
    for batch_size in sorted(set(batch_sizes)):
        batch = one if batch_size == 1 else _make_batch(classifier, example, batch_size, image_size, torch_device)
        timing = latency if batch_size == 1 else time_calls(lambda b=batch: run(b), warmup=max(2, warmup // 2),
                                                             iters=max(5, iters // 4), device=device,
                                                             min_seconds=min_seconds)
        # Throughput over all timed calls (total samples / total time), as timm's benchmark reports it.
        total_ms = sum(timing.samples_ms)
        throughput.append({"batch_size": batch_size,
                           "samples_per_s": round(batch_size * len(timing.samples_ms) / total_ms * 1000, 2),
                           "ms_per_batch": round(timing.median_ms, 3), "calls": len(timing.samples_ms)})
    if torch_device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(torch_device) / 2**20, "cuda max allocated"
    else:
        peak, kind = _peak_rss_mb(), "process peak RSS"
    prints = fingerprint(torch_device)
    mfu = None
    if torch_device.type == "cuda":
        peak_tflops = gpu_peak_tflops(prints.get("device_name", ""), precision)
        if peak_tflops:
            best = throughput[-1]
            mfu = round(gflops * best["samples_per_s"] / (peak_tflops * 1000), 4)
    return BenchResult(
        target=target, backbone=backbone, family=family, task=task, device=device, precision=precision,
        weights=weights, input=input_desc, params_m=round(params_m, 4), gflops=round(gflops, 4),
        latency_ms={"p50": round(latency.median_ms, 3), "p95": round(latency.percentile_ms(95), 3),
                    "mean": round(sum(latency.samples_ms) / len(latency.samples_ms), 3),
                    "min": round(min(latency.samples_ms), 3), "calls": len(latency.samples_ms)},
        throughput=throughput, peak_memory_mb=round(peak, 1), peak_memory_kind=kind, mfu=mfu,
        fingerprint=prints,
        method={"warmup": warmup, "iters": iters, "min_seconds": min_seconds, "inference_mode": True,
                "synchronized": torch_device.type == "cuda", "timed": "forward pass only, inputs on the device"})


def count_gflops(forward) -> float:
    """FLOPs of one call of ``forward``, in billions, by torch.utils.flop_counter.

    Attention runs through PyTorch's math kernel while counting: the fused CPU kernels have no FLOP formula
    and would go uncounted. (no_grad rather than inference_mode: weight-norm parametrisations, as in wav2vec2's
    positional convolution, fail under the counter in inference mode.)
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        forward()
    return counter.get_total_flops() / 1e9


def _null():
    from contextlib import nullcontext

    return nullcontext()


def _default_image_size(classifier) -> int:
    config = getattr(classifier, "data_config", None) or {}
    size = config.get("input_size")
    return int(size[-1]) if size else 224


def _input_description(batch, task: str, *, seq_len: int, seconds: float) -> dict[str, Any]:
    shapes = {key: list(value.shape) for key, value in batch.items() if hasattr(value, "shape")}
    extra = {"image-cls": {}, "text-cls": {"seq_len": seq_len}, "audio-cls": {"seconds": seconds}}[task]
    return {"shapes": shapes, **extra}


def evaluate_on_data(classifier, data_path: str, *, device: str, batch_size: int = 32,
                     max_seconds: float = 10.0) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix of an adapted classifier on a labelled set.

    A dataset with a test split (a test/ folder, an hf: test split) is scored on it; otherwise on all of it.
    """
    from zoo.data import load_data
    from zoo.engine.batches import ExampleDataset, collect_outputs, make_collate
    from zoo.engine.metrics import compute_metrics

    data = load_data(data_path, task=classifier.task, val_fraction=0.0, multi_label=classifier.multi_label or None)
    unknown = sorted(set(data.label_names) - set(classifier.labels))
    if unknown:
        raise InvalidInputError(f"{data_path}: labels the model was not trained on: {', '.join(unknown)}")
    remap = [classifier.labels.index(name) for name in data.label_names]
    scored = data.test or (data.train + data.val)
    examples = [type(ex)(ex.input, tuple(remap[i] for i in ex.labels), ex.id) for ex in scored]
    dataset = ExampleDataset(examples, classifier, train=False, max_seconds=max_seconds,
                             num_labels=len(classifier.labels), multi_label=classifier.multi_label)
    classifier.model.to(device).eval()
    targets, logits = collect_outputs(classifier.forward, dataset, batch_size=batch_size, device=device,
                                      collate=make_collate(classifier, classifier.multi_label))
    metrics = compute_metrics(targets, logits, classifier.labels,
                              multi_label=classifier.multi_label)
    metrics["examples"] = len(examples)
    metrics["data"] = data_path
    metrics["data_fingerprint"] = data.fingerprint
    return metrics


def is_run_dir(target: str) -> bool:
    return has_record(target)
