"""`zoo bench`: latency, throughput, memory, FLOPs, model FLOPs utilisation and accuracy of a model on this machine.

Method, as timm's benchmark does it: the model in eval mode under `torch.inference_mode`, inputs prepared on the
device beforehand (so only the forward pass is timed), warm-up calls first, the device synchronised around every
timed call, and many calls timed one by one: percentiles of them for latency, total samples over total time for
throughput.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo import loading
from zoo.better.ensembled import is_ensemble_dir
from zoo.data import load_scored
from zoo.errors import InvalidInputError
from zoo.export.runtime import OnnxClassifier, is_export_dir
from zoo.hardware import check_device, fingerprint
from zoo.plugins import get_plugin_manager
from zoo.precision import autocast, resolve_precision
from zoo.registry import BackboneSpec, Registry
from zoo.runs.record import has_record, read_finished_record, weight_files
from zoo.tasks import Task, get_task
from zoo.timing import Timing, busy_warnings, cpu_sample, load_warning, time_calls

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
    weights: str                                   # pretrained | random | adapted (a run) | saved | exported
    input: dict[str, Any]
    params_m: float
    gflops: float | None                           # measured forward GFLOPs per example at this input (None: an
                                                   # ONNX model whose architecture torch could not count)
    latency_ms: dict[str, float]                   # batch 1: p50, p95, mean, min, calls
    throughput: list[dict[str, Any]]               # per batch size: samples_per_s, ms_per_batch, calls
    peak_memory_mb: float | None
    peak_memory_kind: str                          # "cuda max allocated" | "process peak RSS"
    mfu: float | None = None                       # model FLOPs utilisation at the largest batch (GPU only)
    spread: dict[str, dict[str, Any]] = field(default_factory=dict)   # per figure, over the rounds: median, low,
                                                   # high, rounds (latency_p50_ms, latency_p95_ms, throughput_bN)
    warnings: list[str] = field(default_factory=list)   # a busy machine, rounds that disagree
    accuracy: dict[str, Any] | None = None         # with --data: accuracy, macro-F1, confusion
    fingerprint: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    runtime: str = "torch"                         # torch | onnxruntime (an export folder)
    size_mb: float | None = None                   # the weights on disk (safetensors, or the ONNX model)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _reset_peak_rss() -> None:
    """Start the process's peak RSS afresh from what it holds now (Linux: writing 5 to /proc/self/clear_refs), so
    that a target benched after others reports the peak while it ran, not theirs; elsewhere the peak stays the
    process's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:   # the high-water mark since the last reset (Linux)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB on Linux


def measure(classifier, *, target: str, backbone: str, family: str, weights: str, device: str = "cpu",
            precision: str = "fp32", batch_sizes: tuple[int, ...] = (1, 8, 32), image_size: int | None = None,
            seq_len: int = 128, seconds: float = 1.0, warmup: int = 10, iters: int = 50,
            min_seconds: float = 1.0, rounds: int = 5) -> BenchResult:
    """Time ``classifier`` (already loaded) and count its parameters and FLOPs, in ``precision`` (``auto`` resolved
    for the device by :func:`zoo.precision.resolve_precision`; the result says which was used).

    The ``iters`` calls (and ``min_seconds``) are shared out over ``rounds`` rounds, each timing every batch size in
    turn; the result's ``spread`` gives each figure's median, lowest and highest over the rounds, and ``warnings``
    say when the machine was busy or the rounds disagree."""
    import torch

    check_device("--device", device, allow_auto=False)
    precision = resolve_precision(precision, device)
    if not batch_sizes or min(batch_sizes) < 1:
        raise InvalidInputError("--batch-sizes must be positive integers, e.g. 1,8,32")
    if rounds < 1:
        raise InvalidInputError("--rounds must be a positive integer, e.g. 5")
    exported = getattr(classifier, "runtime", "torch") == "onnxruntime"
    # An ONNX model runs on the device its session was opened for, from inputs on the CPU.
    torch_device = torch.device("cpu" if exported else device)
    model = classifier.model.to(torch_device).eval()
    _reset_peak_rss()
    task = get_task(classifier.task)
    if task.token_limited:   # Classifier.max_length: the tokens preprocessing keeps
        classifier.max_length = seq_len
    size = image_size or _default_image_size(classifier)
    example = task.timing_input(image_size=size, seq_len=seq_len, seconds=seconds,
                                sample_rate=classifier.sample_rate)
    in_precision = autocast(precision, torch_device)

    def run(batch):
        with in_precision():
            return classifier.forward(batch)

    one = _make_batch(classifier, example, 1, image_size, torch_device)
    if exported:
        gflops = _exported_gflops(classifier, one)
        params_m = classifier.parameter_count() / 1e6
    else:
        gflops = count_gflops(lambda: run(one))
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
    input_desc = _input_description(one, task, seq_len=seq_len, seconds=seconds)

    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    threads = 1 if torch_device.type == "cuda" else torch.get_num_threads()   # a GPU is fed by one thread
    warnings = [w for w in [load_warning(threads)] if w]
    sizes = sorted(set(batch_sizes) | {1})   # batch 1 gives the latency
    batches = {size: one if size == 1 else _make_batch(classifier, example, size, image_size, torch_device)
               for size in sizes}
    # The calls are shared out over the rounds, and every round times each batch size in turn, so that a change in
    # the machine's load falls on all of them and shows as a spread between rounds rather than as a figure.
    calls = {size: -(-(iters if size == 1 else max(5, iters // 4)) // rounds) for size in sizes}
    samples: dict[int, list[Timing]] = {size: [] for size in sizes}
    before = cpu_sample()
    for round_index in range(rounds):
        for size in sizes:
            warm = (warmup if size == 1 else max(2, warmup // 2)) if round_index == 0 else 0
            samples[size].append(time_calls(lambda b=batches[size]: run(b), warmup=warm, iters=calls[size],
                                            device=device, min_seconds=min_seconds / rounds))
    warnings += busy_warnings(before, cpu_sample(), threads)
    latency = Timing(tuple(ms for timing in samples[1] for ms in timing.samples_ms))
    spread = {"latency_p50_ms": _spread([t.median_ms for t in samples[1]]),
              "latency_p95_ms": _spread([t.percentile_ms(95) for t in samples[1]])}
    throughput = []
    for batch_size in sorted(set(batch_sizes)):
        timing = Timing(tuple(ms for t in samples[batch_size] for ms in t.samples_ms))
        # Throughput over all timed calls (total samples / total time), as timm's benchmark reports it.
        total_ms = sum(timing.samples_ms)
        throughput.append({"batch_size": batch_size,
                           "samples_per_s": round(batch_size * len(timing.samples_ms) / total_ms * 1000, 2),
                           "ms_per_batch": round(timing.median_ms, 3), "calls": len(timing.samples_ms)})
        spread[f"throughput_b{batch_size}"] = _spread([batch_size * len(t.samples_ms) / sum(t.samples_ms) * 1000
                                                       for t in samples[batch_size]])
    warnings += _spread_warnings(spread)
    if torch_device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(torch_device) / 2**20, "cuda max allocated"
    else:
        peak, kind = _peak_rss_mb(), "process peak RSS"
    libraries = _family_library(family, classifier) + (("onnxruntime",) if exported else ())
    prints = fingerprint(torch.device(device), libraries=libraries)
    mfu = None
    if torch.device(device).type == "cuda" and gflops:
        peak_tflops = gpu_peak_tflops(prints.get("device_name", ""), precision)
        if peak_tflops:
            best = throughput[-1]
            mfu = round(gflops * best["samples_per_s"] / (peak_tflops * 1000), 4)
    return BenchResult(
        target=target, backbone=backbone, family=family, task=task.name, device=device, precision=precision,
        weights=weights, input=input_desc, params_m=round(params_m, 4),
        gflops=None if gflops is None else round(gflops, 4),
        latency_ms={"p50": round(latency.median_ms, 3), "p95": round(latency.percentile_ms(95), 3),
                    "mean": round(sum(latency.samples_ms) / len(latency.samples_ms), 3),
                    "min": round(min(latency.samples_ms), 3), "calls": len(latency.samples_ms)},
        throughput=throughput, peak_memory_mb=round(peak, 1), peak_memory_kind=kind, mfu=mfu,
        fingerprint=prints, runtime="onnxruntime" if exported else "torch", spread=spread, warnings=warnings,
        method={"warmup": warmup, "iters": iters, "min_seconds": min_seconds, "rounds": rounds, "inference_mode": True,
                "synchronized": torch_device.type == "cuda",
                "timed": ("session.run, with the CPU tensors handed over as numpy arrays" if exported else
                          "forward pass only, inputs on the device")})


# Rounds whose figure differs by more than this share of the median (highest minus lowest) make a warning: the
# machine's speed changed while timing, and one figure from it would mislead.
SPREAD_WARNING = 0.2


def _spread(values: list[float]) -> dict[str, Any]:
    """A figure over the rounds: their median, lowest and highest, and each round's value."""
    return {"median": round(statistics.median(values), 3), "low": round(min(values), 3),
            "high": round(max(values), 3), "rounds": [round(v, 3) for v in values]}


def _spread_warnings(spread: dict[str, dict[str, Any]]) -> list[str]:
    wide = {name: (figure["high"] - figure["low"]) / figure["median"] for name, figure in spread.items()
            if len(figure["rounds"]) > 1 and figure["median"] > 0}
    wide = {name: share for name, share in wide.items() if share > SPREAD_WARNING}
    if not wide:
        return []
    worst = max(wide, key=wide.get)
    return [f"the rounds disagree: {worst} ranges {100 * wide[worst]:.0f}% of its median between rounds"
            f"{f' (and {len(wide) - 1} more)' if len(wide) > 1 else ''}; the machine's speed changed "
            "while timing, so rerun on a quiet machine or with more --rounds"]


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


def _exported_gflops(classifier, batch) -> float | None:
    """FLOPs of an exported model, counted on its architecture built without weights (the family's preprocessing
    model, on the meta device): the fp32 network's, which int8 runs as many of. None where the architecture cannot
    run on meta tensors (one that reads input values to build its masks)."""
    import torch

    model = getattr(classifier.preprocessing, "model", None)
    if model is None:
        return None
    try:
        meta = {name: value.to("meta") if isinstance(value, torch.Tensor) else value for name, value in batch.items()}
        return count_gflops(lambda: classifier.preprocessing.forward(meta))
    except Exception:  # architectures raise many types on meta tensors (data-dependent checks)
        return None


def _family_library(family: str, classifier) -> tuple[str, ...]:
    """The library that runs the measured model (Family.library): of the family named, or else (a saved folder) of
    the family from the plugin package the classifier comes from."""
    def package(obj) -> str:
        return type(obj).__module__.split(".")[0]

    families = get_plugin_manager().families
    loaded = families.get(family) or next((f for f in families.values() if package(f) == package(classifier)), None)
    return (loaded.library,) if loaded is not None and loaded.library else ()


def _default_image_size(classifier) -> int:
    return classifier.image_size or 224   # Classifier.image_size: the side its preprocessing produces


def _input_description(batch, task: Task, *, seq_len: int, seconds: float) -> dict[str, Any]:
    shapes = {key: list(value.shape) for key, value in batch.items() if hasattr(value, "shape")}
    lengths = {"seq_len": seq_len, "seconds": seconds}
    return {"shapes": shapes, **({task.bench_length: lengths[task.bench_length]} if task.bench_length else {})}


def evaluate_on_data(classifier, data_path: str, *, device: str, precision: str = "fp32", batch_size: int = 32,
                     max_seconds: float = 10.0) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix of an adapted classifier on a labelled set, in ``precision``
    (the one benchmarked).

    A dataset with a test split (a test/ folder, an hf: test split) is scored on it; otherwise on all of it.
    """
    from zoo.engine.batches import ExampleDataset, collect_outputs, make_collate
    from zoo.engine.metrics import compute_metrics

    examples, data = load_scored(data_path, task=classifier.task, labels=classifier.labels,
                                 multi_label=classifier.multi_label)
    dataset = ExampleDataset(examples, classifier, train=False, max_seconds=max_seconds,
                             num_labels=len(classifier.labels), multi_label=classifier.multi_label)
    if getattr(classifier, "runtime", "torch") == "onnxruntime":
        device = "cpu"   # where its inputs are prepared; the session runs on its own device
    classifier.model.to(device).eval()
    targets, logits = collect_outputs(classifier.forward, dataset, batch_size=batch_size, device=device,
                                      collate=make_collate(classifier, classifier.multi_label),
                                      autocast=autocast(resolve_precision(precision, device), device))
    metrics = compute_metrics(targets, logits, classifier.labels,
                              multi_label=classifier.multi_label)
    metrics["examples"] = len(examples)
    metrics["data"] = data_path
    metrics["data_fingerprint"] = data.fingerprint
    return metrics


def is_run_dir(target: str) -> bool:
    return has_record(target)


# --- what to bench --------------------------------------------------------------------------------------------


@dataclass
class BenchTarget:
    """A loaded model to bench, and how the result names it."""

    classifier: Any
    backbone: str
    family: str
    weights: str                               # adapted (a run directory) | saved | exported | pretrained | random
    run_record: dict[str, Any] | None = None   # a run directory's zoo_run.json, which the result is added to
    size_mb: float | None = None               # the weights on disk (a folder's safetensors, an ONNX model)


def load_target(target: str, *, plugins, registry: Callable[[], Registry], task: str | None = None,
                family: str | None = None, weights: str = "pretrained", data: str | None = None,
                device: str = "cpu") -> BenchTarget:
    """Load what ``target`` names: a finished run directory, a folder holding a saved model, an export folder
    (`zoo export`: run by onnxruntime on ``device``), a registry name, or a Hub id / ``local-dir:`` path with
    ``family`` (and ``task``). A folder must be written as a path (``./NAME``,
    ``/abs/NAME`` or with a separator inside), so that a folder in the working directory never stands in for the
    registry entry of the same name. ``registry`` is called only when a registry is needed.

    Raises:
        zoo.errors.InvalidInputError, zoo.errors.UnknownBackboneError, zoo.errors.ModelLoadError.
    """
    folder = _written_as_path(target) and Path(target).is_dir()
    if not folder and target.startswith(("./", "../", "/", f".{os.sep}", f"..{os.sep}")):
        raise InvalidInputError(f"{target}: no such folder")
    if folder and is_run_dir(target):
        record = read_finished_record(Path(target)).to_dict()
        return BenchTarget(loading.load_saved(target, plugins.families), record["backbone"]["name"],
                           record["backbone"]["family"], "adapted", record, size_mb=_weights_mb(target))
    if folder and is_export_dir(target):
        classifier = OnnxClassifier(target, families=plugins.families, device=device)
        return BenchTarget(classifier, classifier.record.get("backbone", Path(target).name),
                           classifier.record.get("family", ""), "exported", size_mb=classifier.size_on_disk_mb())
    if folder and (is_ensemble_dir(target) or loading.saved_family(target, plugins.families) is not None):
        classifier = loading.load_saved(target, plugins.families)
        return BenchTarget(classifier, Path(target).name, type(classifier).__module__.split(".")[0], "saved",
                           size_mb=_weights_mb(target))
    spec = _spec(target, task=task, family=family, registry=registry(), plugins=plugins)
    if data is not None:
        raise InvalidInputError("--data measures accuracy of an adapted model: give a run directory (the "
                                f"classification head of {spec.name} is untrained)")
    classifier = loading.load_classifier(spec, plugins.family(spec.family, backbone=spec.name),
                                         task=task or spec.tasks[0], labels=["0", "1"],
                                         pretrained=weights == "pretrained").classifier
    return BenchTarget(classifier, spec.name, spec.family, weights)


def _weights_mb(folder: str | os.PathLike) -> float:
    """The size of a saved model's weights (its safetensors files; an ensemble's, its members')."""
    return round(sum(path.stat().st_size for path in weight_files(folder)) / 2**20, 3)


def _written_as_path(target: str) -> bool:
    """Whether ``target`` is written as a path (``.``, ``./NAME``, ``/abs/NAME``, anything with a separator) rather
    than as a registry name."""
    return target in (".", "..") or any(separator and separator in target for separator in ("/", os.sep, os.altsep))


def _spec(target: str, *, task: str | None, family: str | None, registry: Registry, plugins) -> BackboneSpec:
    """The registry entry ``target``, or with ``family`` a spec for a Hub id or ``local-dir:`` path that is not in
    the registry: its input the task's default, its parameters and FLOPs unknown (bench measures them)."""
    if target not in registry and family is None and Path(target).is_dir():
        raise InvalidInputError(f"{target!r} is not a registry backbone; to bench the folder of that name, write it "
                                f"as a path: ./{target}")
    if target in registry or family is None:
        return registry.get(target)   # raises with close names when unknown
    if task is None:
        task = plugins.family(family).tasks[0]
    return BackboneSpec(name=target, family=family, source=target, tasks=(task,),
                        input=dict(get_task(task).default_input), origin="command line")
