"""`zoo export` on a CPU: ONNX Runtime fp32 and int8 against torch eager, the size on disk, and what int8 costs.

Two parts, nothing downloaded:

1. **Speed** of two architectures with random weights, saved in their family's native layout and loaded back with
   `zoo.api.load_saved_classifier`, so the ONNX file comes from `Classifier.export_graph` and
   `zoo.export.graph.to_onnx` exactly as `zoo export` makes it: a BERT-base-shaped text classifier (transformers
   `BertConfig()` defaults: 12 layers, 768 wide, 2 labels; sequence 128) and timm's ResNet-50 (10 classes,
   224×224). Each runs as torch eager fp32 (the classifier's forward under `torch.inference_mode`), ONNX Runtime
   fp32, and ONNX Runtime int8: dynamic for BERT; static QDQ (calibrated on 32 random inputs) and dynamic for
   ResNet-50 (dynamic covers only the final Gemm of a CNN, so it should change little). Batch 1 and batch 32, on
   one thread and on all threads (`torch.set_num_threads` and the session's intra-op threads set alike). The
   runtimes are timed side by side in alternating rounds (`zoo.timing.time_calls`), so a change in the load of
   the shared machine falls on all of them; the figure is the median over every round.
2. **Accuracy** of int8 on runs that learned their task: the text and image tasks and pretrained surrogate encoders
   of `benchmarks/quality.py` (imported, not copied), `zoo.api.adapt` with its defaults, then
   `zoo.api.export(run, quantize=...)` with none, dynamic and (image) static, checked on the held-out test split;
   the figures are the parity each export records in zoo_export.json (or, for an export that fails its gate, the
   figures of the error).

Targets: ONNX Runtime fp32 ≥ 1.2× torch eager at batch 1; dynamic int8 BERT-base ≥ 1.7× torch eager at batch 1 on
one thread (the published anchor: 1.78× at 0.41× the size with an unchanged F1) at ≤ 0.45× the fp32 ONNX size;
int8 macro-F1 within one point of the torch model's. A speed target missed is shown with the operators that take
the time on each side (ONNX Runtime's profiler, `torch.profiler`).

    python benchmarks/export_speed.py [--write] [--quick]

It took 11 to 13 minutes on a 2-core CPU shared with other work. `--quick` is a smoke run of under 2 minutes
(a 2-layer BERT at sequence 32, ResNet-18 at 112×112, batch 4, few calls, tiny pretraining); its figures mean
nothing and --write refuses them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _report import machine, table, write_section
from quality import QUICK_EPOCHS, THREADS, ImageModality, Modality, TextModality, isolate

FP32_SPEEDUP_TARGET = 1.2          # ONNX Runtime fp32 against torch eager, batch 1
INT8_SPEEDUP_TARGET = 1.7          # dynamic int8 BERT-base against torch eager, batch 1, one thread
INT8_SIZE_TARGET = 0.45            # int8 ONNX size / fp32 ONNX size
F1_POINTS_TARGET = 1.0             # |Δ macro-F1| of an int8 export, in points
CALIBRATION = (4, 8)               # static int8 of the speed part: 4 batches of 8 random inputs
PROFILE_CALLS = 3                  # calls profiled to explain a missed speed target


# --- the speed part ---------------------------------------------------------------------------------------------

@dataclass
class Subject:
    """One architecture of the speed part: a zoo classifier with random weights and how to feed it."""

    name: str
    summary: str
    classifier: Any
    weights_mb: float                       # the family's native safetensors file
    make_batch: Callable[[int], dict[str, Any]]
    int8: tuple[str, ...]                   # int8 methods to time, the family's choice first
    files: dict[str, Path] = field(default_factory=dict)      # runtime -> ONNX file
    sizes_mb: dict[str, float] = field(default_factory=dict)  # runtime -> size on disk
    seconds: dict[str, float] = field(default_factory=dict)   # export and quantization wall times


def bert_subject(work: Path, *, quick: bool) -> Subject:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from zoo import api

    config = BertConfig(num_hidden_layers=2) if quick else BertConfig()
    sequence = 32 if quick else 128
    folder = work / "bert"
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    # The family's native layout needs a tokenizer beside the weights; timing feeds token ids directly.
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, model_max_length=sequence).save_pretrained(folder)
    model.save_pretrained(folder)
    classifier = api.load_saved_classifier(folder)
    classifier.model.eval()

    def make_batch(n: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(n)
        return {"input_ids": torch.randint(0, config.vocab_size, (n, sequence), generator=generator),
                "token_type_ids": torch.zeros(n, sequence, dtype=torch.long),
                "attention_mask": torch.ones(n, sequence, dtype=torch.long)}

    params = sum(p.numel() for p in model.parameters()) / 1e6
    summary = (f"BERT{'' if quick else '-base'} (`BertConfig()`{' with 2 layers' if quick else ''}: "
               f"{config.num_hidden_layers} layers, {config.hidden_size} wide, {params:.0f}M parameters, 2 labels), "
               f"sequence {sequence}")
    return Subject("BERT-base" if not quick else "BERT (2 layers)", summary, classifier,
                   _mb(folder / "model.safetensors"), make_batch, ("dynamic",))


def resnet_subject(work: Path, *, quick: bool) -> Subject:
    import timm
    import torch
    from timm.models import save_for_hf

    from zoo import api

    arch, size = ("resnet18", 112) if quick else ("resnet50", 224)
    folder = work / arch
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    save_for_hf(model, str(folder), model_config={"label_names": [f"class-{i}" for i in range(10)]},
                safe_serialization=True)
    classifier = api.load_saved_classifier(folder)
    classifier.model.eval()

    def make_batch(n: int) -> dict[str, Any]:
        return {"pixel_values": torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n))}

    params = sum(p.numel() for p in model.parameters()) / 1e6
    name = "ResNet-18" if quick else "ResNet-50"
    return Subject(name, f"timm `{arch}` ({params:.1f}M parameters, 10 classes), {size}×{size}", classifier,
                   _mb(folder / "model.safetensors"), make_batch, ("static", "dynamic"))


def export_subject(subject: Subject, work: Path) -> None:
    """The fp32 ONNX file as `zoo export` traces it, and each int8 version of it."""
    from zoo.export.graph import to_onnx
    from zoo.export.quantize import quantize

    folder = work / f"onnx-{subject.name}"
    folder.mkdir(parents=True)
    started = time.monotonic()
    graph = to_onnx(subject.classifier, subject.make_batch(2), folder / "fp32.onnx")
    subject.seconds[f"export ({graph.exporter})"] = time.monotonic() - started
    subject.files["ORT fp32"] = folder / "fp32.onnx"
    subject.sizes_mb = {"torch eager": subject.weights_mb, "ORT fp32": _mb(folder / "fp32.onnx")}
    rng = np.random.default_rng(0)
    template = subject.make_batch(CALIBRATION[1])
    calibration = [{name: (rng.standard_normal(value.shape).astype(np.float32) if value.is_floating_point()
                           else value.numpy()) for name, value in template.items()}
                    for _ in range(CALIBRATION[0])]
    for method in subject.int8:
        started = time.monotonic()
        quantize(folder / "fp32.onnx", folder / f"{method}.onnx", method,
                 calibration=calibration if method == "static" else None)
        subject.seconds[f"{method} int8"] = time.monotonic() - started
        subject.files[f"ORT int8 {method}"] = folder / f"{method}.onnx"
        subject.sizes_mb[f"ORT int8 {method}"] = _mb(folder / f"{method}.onnx")


def _mb(path: Path) -> float:
    """A model's size on disk, with an ONNX external-data side file if there is one."""
    side = [path.with_name(path.name + ".data")]
    return sum(p.stat().st_size for p in (path, *side) if p.is_file()) / 2**20


@dataclass
class Speed:
    subject: str
    batch: int
    threads: int
    runtime: str
    median_ms: float
    calls: int


def time_side_by_side(calls: dict[str, Callable[[], object]], *, warmup: int, rounds: int,
                      per_round: int) -> dict[str, tuple[float, int]]:
    """Median ms and the number of timed calls of each callable, timed in alternating rounds."""
    from zoo.timing import Timing, time_calls

    samples: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        time_calls(fn, warmup=warmup, iters=0)
    for _ in range(rounds):
        for name, fn in calls.items():
            samples[name] += time_calls(fn, warmup=0, iters=per_round).samples_ms
    return {name: (Timing(tuple(values)).median_ms, len(values)) for name, values in samples.items()}


def measure_speed(subject: Subject, *, batches: tuple[int, ...], thread_counts: tuple[int, ...],
                  quick: bool) -> tuple[list[Speed], dict[str, float]]:
    """Every runtime of ``subject`` at each batch and thread count; and the fp32 ONNX model's largest logit
    difference from torch (a sanity check of the file that was timed)."""
    import torch

    from zoo.export.runtime import open_session, ort_forward

    speeds, check = [], {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        forwards = {"torch eager": subject.classifier.forward}
        forwards.update({runtime: ort_forward(open_session(path, threads=threads))
                         for runtime, path in subject.files.items()})
        for batch_size in batches:
            batch = subject.make_batch(batch_size)
            large = batch_size > 1
            rounds, per_round = (2, 1 if large else 2) if quick else ((5, 1) if large else (3, 5))
            calls = {runtime: (lambda forward=forward, batch=batch: forward(batch))
                     for runtime, forward in forwards.items()}
            print(f"  {subject.name}, batch {batch_size}, {threads} thread(s)", file=sys.stderr)
            for runtime, (median, count) in time_side_by_side(calls, warmup=1, rounds=rounds,
                                                               per_round=per_round).items():
                speeds.append(Speed(subject.name, batch_size, threads, runtime, median, count))
            if batch_size == 1 and not check:
                with torch.inference_mode():
                    reference = subject.classifier.forward(batch)
                    exported = forwards["ORT fp32"](batch)
                check["max_abs_diff"] = float((reference - exported).abs().max())
        del forwards
    return speeds, check


def speedup(speeds: list[Speed], subject: str, batch: int, threads: int, runtime: str) -> float:
    by = {s.runtime: s.median_ms for s in speeds if (s.subject, s.batch, s.threads) == (subject, batch, threads)}
    return by["torch eager"] / by[runtime]


# --- explaining a missed speed target ---------------------------------------------------------------------------

def top_ops_ort(path: Path, batch: dict[str, Any], threads: int, work: Path, count: int = 5) -> list[tuple[str, float]]:
    """ONNX Runtime's own profile of a few calls: the operators (as the optimised graph runs them) that take the
    most time, in ms per call, and all of them together."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "ort-profile")
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    feed = {item.name: batch[item.name].numpy() for item in session.get_inputs()}
    session.run(None, feed)                                   # the first call allocates: not profiled alone
    for _ in range(PROFILE_CALLS):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1000 / (PROFILE_CALLS + 1)
    return sorted(totals.items(), key=lambda item: -item[1])[:count] + [("all operators", sum(totals.values()))]


def top_ops_torch(forward: Callable, batch: dict[str, Any], count: int = 5) -> list[tuple[str, float]]:
    """torch.profiler's operators with the most self time, in ms per call, and all of them together."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        forward(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(PROFILE_CALLS):
                forward(batch)
    averages = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return [(e.key, e.self_cpu_time_total / 1000 / PROFILE_CALLS) for e in averages[:count]] + \
        [("all operators", sum(e.self_cpu_time_total for e in averages) / 1000 / PROFILE_CALLS)]


def explain(subject: Subject, runtime: str, threads: int, work: Path) -> str:
    import torch

    torch.set_num_threads(threads)
    batch = subject.make_batch(1)
    ort = top_ops_ort(subject.files[runtime], batch, threads, work)
    eager = top_ops_torch(subject.classifier.forward, batch)
    width = max(len(ort), len(eager))
    def cell(ops: list[tuple[str, float]], i: int) -> str:
        if i >= len(ops):
            return ""
        name, ms = ops[i]
        return f"{'all operators' if i == len(ops) - 1 else f'`{name}`'} {ms:.1f}"

    rows = [[cell(ort, i), cell(eager, i)] for i in range(width)]
    share = (f"The largest operator takes {100 * ort[0][1] / ort[-1][1]:.0f}% of ONNX Runtime's operator time "
             f"(`{ort[0][0]}`, {ort[0][1]:.1f} ms) and {100 * eager[0][1] / eager[-1][1]:.0f}% of torch's "
             f"(`{eager[0][0]}`, {eager[0][1]:.1f} ms).")
    return "\n".join([f"Where the time goes, {subject.name} at batch 1 on {threads} thread(s), ms per call "
                      f"({PROFILE_CALLS} profiled calls):", "",
                      table([f"{runtime} (ONNX Runtime profiler)", "torch eager (torch.profiler, self time)"],
                            rows), "", share])


# --- the accuracy part ------------------------------------------------------------------------------------------

@dataclass
class ExportOutcome:
    task: str
    quantization: str
    passed: bool
    figures: dict[str, Any]            # the parity record, or {"error": message}
    size_mb: float | None = None
    seconds: float = 0.0


def adapt_and_export(modality: Modality, methods: tuple[str, ...], *, quick: bool) -> tuple[str, list[ExportOutcome]]:
    """Pretrain ``modality``'s encoder as quality.py does, adapt it with zoo's defaults, and export the run with
    each of ``methods``, checked on the test split. Returns a line about the run and each export's outcome."""
    from zoo import api
    from zoo.engine.config import AdaptConfig
    from zoo.errors import ExportError

    print(f"{modality.name}: pretraining the encoder, adapting, exporting", file=sys.stderr)
    modality.encoder = modality.build_encoder()
    registry = modality.work / "registry.toml"
    registry.write_text(modality.encoder.registry_block)
    target = modality.make_target(0)
    run_dir = modality.work / "run"
    config = AdaptConfig(seed=0, **({"epochs": QUICK_EPOCHS} if quick else {}))
    record = api.adapt(modality.encoder.name, target.paths["train"], val=target.paths["val"],
                       test=target.paths["test"], output=run_dir, config=config, registry_files=[registry],
                       store=False, device="cpu")
    test = record["metrics"]["test"]
    about = (f"{modality.encoder.summary}; `zoo adapt` with its defaults kept `{record['strategy']}`, test accuracy "
             f"{test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f} ({len(target.labels['test'])} test examples)")
    outcomes = []
    for method in methods:
        started = time.monotonic()
        try:
            result = api.export(run_dir, quantize=method, check=target.paths["test"], output=run_dir / f"onnx-{method}")
        except ExportError as exc:
            outcomes.append(ExportOutcome(modality.name, method, False, figures_of_error(str(exc)),
                                          seconds=time.monotonic() - started))
            continue
        parity = result.record["parity"]["int8" if method != "none" else "fp32"]
        outcomes.append(ExportOutcome(modality.name, method, parity["passed"], parity, result.record["size_mb"],
                                      time.monotonic() - started))
    return about, outcomes


def figures_of_error(message: str) -> dict[str, Any]:
    """The parity figures an ExportError states (`Parity.summary`): agreement, and each metric torch -> ONNX."""
    import re

    figures: dict[str, Any] = {"error": message, "reference": {}, "exported": {}}
    agreement = re.search(r"agreement ([0-9.]+)%", message)
    if agreement:
        figures["agreement"] = float(agreement.group(1)) / 100
    for name, before, after in re.findall(r"(accuracy|macro_f1) ([0-9.]+) -> ([0-9.]+)", message):
        figures["reference"][name], figures["exported"][name] = float(before), float(after)
    diff = re.search(r"max \|Δlogit\| ([0-9.e+-]+)", message)
    if diff:
        figures["max_abs_diff"] = float(diff.group(1))
    return figures


def f1_points(outcome: ExportOutcome) -> float | None:
    figures = outcome.figures
    if "macro_f1" not in figures.get("reference", {}):
        return None
    return 100 * abs(figures["exported"]["macro_f1"] - figures["reference"]["macro_f1"])


def accuracy_rows(outcomes: list[ExportOutcome]) -> list[list[str]]:
    def moved(figures: dict[str, Any], name: str) -> str:
        if name not in figures.get("reference", {}):
            return ""
        return f"{figures['reference'][name]:.4f} → {figures['exported'][name]:.4f}"

    rows = []
    for o in outcomes:
        f = o.figures
        gate = "passed" if o.passed else "**failed**"
        if "error" in f:     # the error's reason, without the figures the other columns show
            gate += ": " + f["error"].split(" on ")[0]
        rows.append([o.task, o.quantization, gate,
                     f"{100 * f['agreement']:.2f}%" if "agreement" in f else "",
                     moved(f, "accuracy"), moved(f, "macro_f1"),
                     f"{f['max_abs_diff']:.2e}" if "max_abs_diff" in f else "",
                     f"{o.size_mb:.2f}" if o.size_mb is not None else "not written", f"{o.seconds:.0f}"])
    return rows


# --- the report -------------------------------------------------------------------------------------------------

def speed_rows(subject: Subject, speeds: list[Speed]) -> list[list[str]]:
    rows = []
    for s in speeds:
        if s.subject != subject.name:
            continue
        ratio = speedup(speeds, s.subject, s.batch, s.threads, s.runtime)
        rows.append([s.subject, str(s.batch), str(s.threads), s.runtime, f"{s.median_ms:.1f}",
                     f"{1000 * s.batch / s.median_ms:.1f}", f"{ratio:.2f}×", f"{subject.sizes_mb[s.runtime]:.1f}",
                     str(s.calls)])
    return rows


def float_weights(subject: Subject) -> str:
    """What of the dynamic int8 file stays float32, and the largest such tensors: dynamic quantization covers
    MatMul and Gemm only."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(subject.files["ORT int8 dynamic"]), load_external_data=False)
    floats = sorted(((numpy_helper.to_array(t).nbytes / 2**20, t.name) for t in model.graph.initializer
                     if t.data_type == onnx.TensorProto.FLOAT), reverse=True)
    total = sum(mb for mb, _ in floats)
    largest = ", ".join(f"`{name}` {mb:.1f} MB" for mb, name in floats[:3])
    return (f"Of the {subject.sizes_mb['ORT int8 dynamic']:.0f} MB of the dynamic int8 {subject.name}, {total:.0f} MB "
            f"are weights left in float32 (largest: {largest}): dynamic quantization covers MatMul and Gemm, not "
            "the embedding tables' Gather.")


def thread_note(speeds: list[Speed], thread_counts: tuple[int, ...]) -> str:
    """Where more threads made a runtime slower: on a small shared machine, a sign of contention, not of kernels."""
    if len(thread_counts) < 2:
        return ""
    one, most = thread_counts[0], thread_counts[-1]
    ms = {(s.subject, s.batch, s.runtime, s.threads): s.median_ms for s in speeds}
    pairs = [(key[:3], ms[key[:3] + (one,)], value) for key, value in ms.items()
             if key[3] == most and key[:3] + (one,) in ms]
    slower = sorted((p for p in pairs if p[2] > p[1]), key=lambda p: -p[2] / p[1])
    if not slower:
        return ""
    worst = "; ".join(f"{subject} batch {batch} {runtime}: {a:.0f} ms on {one}, {b:.0f} ms on {most}"
                      for (subject, batch, runtime), a, b in slower[:3])
    return (f"On {most} threads, {len(slower)} of {len(pairs)} measurements were slower than on {one} (the worst: "
            f"{worst}). On a {most}-core machine shared with other work, a thread that is descheduled holds up "
            "the others at every operator's barrier, torch's more than ONNX Runtime's: the ratios on "
            f"{most} threads measure that contention as much as the runtimes' kernels. The {one}-thread rows "
            "compare the kernels.")


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(subjects: list[Subject], speeds: list[Speed], checks: dict[str, dict[str, float]],
           explanations: list[str], runs: list[str], outcomes: list[ExportOutcome], *, fingerprint: str,
           thread_counts: tuple[int, ...], load: tuple[float, float], total_s: float) -> tuple[str, list[list[str]]]:
    bert, resnet = subjects
    one = thread_counts[0]
    targets = []
    for subject in subjects:
        ratios = {t: speedup(speeds, subject.name, 1, t, "ORT fp32") for t in thread_counts}
        shown = ", ".join(f"{r:.2f}× on {t} thread{'s' if t > 1 else ''}" for t, r in ratios.items())
        met = [t for t, r in ratios.items() if r >= FP32_SPEEDUP_TARGET]
        status = verdict(len(met) == len(ratios)) if len(met) in (0, len(ratios)) else \
            f"met on {met[0]} thread{'s' if met[0] > 1 else ''} only"
        targets.append([f"ORT fp32 ≥ {FP32_SPEEDUP_TARGET}× torch eager, batch 1, {subject.name}", shown, status])
    int8_ratio = speedup(speeds, bert.name, 1, one, "ORT int8 dynamic")
    size_ratio = bert.sizes_mb["ORT int8 dynamic"] / bert.sizes_mb["ORT fp32"]
    targets.append([f"dynamic int8 {bert.name} ≥ {INT8_SPEEDUP_TARGET}× torch eager (batch 1, 1 thread) at ≤ "
                    f"{INT8_SIZE_TARGET}× the fp32 size",
                    f"{int8_ratio:.2f}× at {size_ratio:.3f}× the fp32 ONNX size "
                    f"({bert.sizes_mb['ORT int8 dynamic']:.0f} of {bert.sizes_mb['ORT fp32']:.0f} MB)",
                    verdict(int8_ratio >= INT8_SPEEDUP_TARGET and size_ratio <= INT8_SIZE_TARGET)])
    int8_outcomes = [o for o in outcomes if o.quantization != "none"]
    moves = [(o, f1_points(o)) for o in int8_outcomes]
    def moved(outcome: ExportOutcome, points: float | None) -> str:
        text = f"{outcome.task} {outcome.quantization} " + (f"{points:.2f}" if points is not None else "unknown")
        if not outcome.passed:
            agreement = outcome.figures.get("agreement")
            text += (f" (agreement {100 * agreement:.2f}%" if agreement is not None else " (") + \
                ": fails zoo's gate, not written)"
        return text

    shown = "; ".join(moved(o, p) for o, p in moves)
    targets.append([f"int8 macro-F1 within {F1_POINTS_TARGET:g} point of the torch model (test split)",
                    f"Δ macro-F1 in points: {shown}",
                    verdict(all(p is not None and p <= F1_POINTS_TARGET for _, p in moves))])

    header = ["model", "batch", "threads", "runtime", "median ms / batch", "samples/s", "vs torch eager",
              "size on disk MB", "timed calls"]
    prepared = "; ".join(f"{s.name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in s.seconds.items()) for s in subjects)
    sanity = "; ".join(f"{s.name} {checks[s.name]['max_abs_diff']:.1e}" for s in subjects)
    lines = [
        "## ONNX export: speed against torch eager, size, and int8 accuracy", "",
        f"Machine: {fingerprint}; device cpu; onnxruntime {_ort_version()}. Load average "
        f"{load[0]:.1f} at the start and {load[1]:.1f} at the end (the machine is shared: other work ran beside "
        f"this). Reproduce: `.venv/bin/python benchmarks/export_speed.py --write` ({total_s / 60:.0f} min here).",
        "",
        table(["target", "measured", ""], targets), "",
        "### Speed, random weights", "",
        f"{bert.summary}; {resnet.summary}. Saved in their family's native layout, loaded with "
        "`zoo.api.load_saved_classifier`, exported with `Classifier.export_graph` and `zoo.export.graph.to_onnx` "
        "as `zoo export` does, quantized with `zoo.export.quantize` (static: QDQ, per channel, calibrated on "
        f"{CALIBRATION[0] * CALIBRATION[1]} random inputs). Torch and ONNX Runtime use the same number of threads "
        "(`torch.set_num_threads`, the session's intra-op threads). The runtimes of one row group are timed side "
        "by side in alternating rounds after a warm-up call; the figure is the median of all timed calls. "
        "Size on disk: the family's safetensors weights for torch, the ONNX file for ONNX Runtime. Peak memory "
        "was not measured.", "",
        table(header, speed_rows(bert, speeds) + speed_rows(resnet, speeds)), "",
        f"Export and quantization wall times: {prepared}. Largest |Δlogit| of the fp32 ONNX model against torch "
        f"at batch 1: {sanity}. {float_weights(bert)}", "",
    ]
    note = thread_note(speeds, thread_counts)
    if note:
        lines += [note, ""]
    if explanations:
        lines += ["A speed target missed, and why, from the profilers (a few cheap calls; the profilers' own "
                  "overhead makes these times a little longer than the table's):", ""]
        for text in explanations:
            lines += [text, ""]
    lines += [
        "### int8 accuracy on runs that learned their task", "",
        "The surrogate encoders and tasks of `benchmarks/quality.py` (seed 0), adapted with `zoo.api.adapt` "
        "(defaults), exported with `zoo.api.export(run, quantize=..., check=TEST)`: parity measured on the "
        "held-out test split, as each export records it in zoo_export.json (the gate: fp32 logits within 1e-4 of "
        "the logit scale; int8 top-1 agreement ≥ 99% and macro-F1 within one point).", "",
    ]
    lines += [f"- {about}." for about in runs]
    lines += ["", table(["task", "--quantize", "gate", "agreement", "accuracy torch → ONNX",
                         "macro-F1 torch → ONNX", "max abs Δlogit", "ONNX MB", "export s"], accuracy_rows(outcomes))]
    glance = [[f"`zoo export` (`benchmarks/export_speed.py`): {row[0]}", row[1], row[2]] for row in targets]
    return "\n".join(lines), glance


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# --- main -------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the section into docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small models, batch 4, few calls, tiny "
                        "pretraining; its figures mean nothing and --write is refused")
    args = parser.parse_args()
    if args.quick and args.write:
        parser.error("--quick figures mean nothing: they are not written")

    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    fingerprint = machine()                 # before the thread count is changed below
    all_threads = torch.get_num_threads()
    thread_counts = tuple(sorted({1, all_threads}))
    batches = (1, 4) if args.quick else (1, 32)
    started, load_start = time.monotonic(), os.getloadavg()[0]
    # onnxruntime's symbolic shape inference, when it gives up on a transformer graph, drops a copy of the model
    # (sym_shape_infer_temp.onnx and a weights file) into the current folder: run inside the scratch folder.
    with tempfile.TemporaryDirectory(prefix="zoo-export-speed-") as tmp, contextlib.chdir(tmp):
        work = Path(tmp)
        isolate(work)
        subjects = [bert_subject(work, quick=args.quick), resnet_subject(work, quick=args.quick)]
        speeds, checks, explanations = [], {}, []
        for subject in subjects:
            print(f"{subject.name}: exporting and quantizing", file=sys.stderr)
            export_subject(subject, work)
            measured, checks[subject.name] = measure_speed(subject, batches=batches, thread_counts=thread_counts,
                                                           quick=args.quick)
            speeds += measured
            missed = [(runtime, t) for t in thread_counts for runtime in ("ORT fp32",)
                      if speedup(speeds, subject.name, 1, t, runtime) < FP32_SPEEDUP_TARGET]
            if subject is subjects[0] and speedup(speeds, subject.name, 1, 1, "ORT int8 dynamic") < INT8_SPEEDUP_TARGET:
                missed.append(("ORT int8 dynamic", 1))
            explanations += [explain(subject, runtime, t, work) for runtime, t in missed]
        # The accuracy part trains tiny models: one thread, as quality.py does.
        torch.set_num_threads(THREADS)
        runs, outcomes = [], []
        for modality, methods in ((TextModality(work / "text", quick=args.quick), ("none", "dynamic")),
                                  (ImageModality(work / "image", quick=args.quick), ("none", "dynamic", "static"))):
            about, results = adapt_and_export(modality, methods, quick=args.quick)
            runs.append(about)
            outcomes += results
        body, glance = report(subjects, speeds, checks, explanations, runs, outcomes, fingerprint=fingerprint,
                              thread_counts=thread_counts, load=(load_start, os.getloadavg()[0]),
                              total_s=time.monotonic() - started)
    print(body)
    if args.write:
        write_section("export_speed", body)
    for row in glance:
        print(" | ".join(row), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
