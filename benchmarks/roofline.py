"""How close zoo's training and inference come to this machine's limit: the attainable matrix-multiply rate.

The limit is measured, not taken from a data sheet: torch.mm on large square matrices with the thread count in
use (fp32, and bf16 where the device computes it natively). Two models with random initial weights, saved as local
folders and reached through registry entries as a user's would be: a BERT-base-shaped encoder (12 layers, 768 wide,
12 heads, 3072 FFN) at sequence 128, and timm's ResNet-50 at 224 px, both at batch 32. For each:

- training: `zoo adapt` (full fine-tuning) for one warm-up step and ``--steps`` timed steps, under torch.profiler;
  FLOPs per sample ≈ 3 × the forward FLOPs (forward, and a backward of about twice the forward);
- inference: `zoo bench` at batch 32 (its throughput and its FLOP count, torch.utils.flop_counter).

Both are reported as fractions of the attainable rate. The profile splits a step into the engine's labelled phases
(forward, backward, optimizer) and the rest (loading, collating and copying the batch, reporting), and lists the
operators that cost the most.

    python benchmarks/roofline.py [--device cuda --precision bf16] [--steps 1] [--write]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _report import machine, table, timm_local_entry, transformers_local_entry, write_section

BATCH = 32
SEQ_LEN = 128
IMAGE_SIZE = 224
WORDS = ("the quick brown fox jumps over lazy dog match goal team code cloud server recipe dinner flight hotel beach "
         "ticket bread cheese sauce oven train map tour chip laptop screen app season coach").split()
# Operators that run a matrix multiply or a convolution (the work the GEMM rate bounds), by the name their time is
# recorded under in a CPU or CUDA profile.
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
            "aten::mkldnn_convolution", "aten::convolution_backward", "aten::cudnn_convolution",
            "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
            "aten::_scaled_dot_product_cudnn_attention")


# --- the limit ----------------------------------------------------------------------------------------------


def native_bf16(device: str) -> bool:
    """Whether the device multiplies bf16 in hardware (CPU: AVX512-BF16 or AMX; otherwise torch emulates it, far
    slower than fp32)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def gemm_rate(dtype_name: str, device: str, sizes: tuple[int, ...], seconds: float = 2.0) -> tuple[float, int]:
    """The best torch.mm rate (GFLOP/s) over square sizes ``sizes``, each timed for about ``seconds`` after one
    warm-up call; returns (rate, the size that reached it)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = (0.0, 0)
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        torch.mm(a, b)
        sync()
        calls, started = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - started < seconds:
            torch.mm(a, b)
            calls += 1
            sync()
        rate = 2 * n**3 * calls / (time.perf_counter() - started) / 1e9
        best = max(best, (rate, n))
    return best


# --- the models and their data ------------------------------------------------------------------------------


def build_bert(folder: Path, layers: int = 12) -> float:
    """A BERT-base-shaped encoder (random weights) and a word-level tokenizer; returns its parameters (millions)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    # BERT-base: 12 layers, 768 wide, 12 heads, 3072 FFN, 30522 tokens
    config = BertConfig(num_hidden_layers=layers)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS)]
    words += [f"[unused{i}]" for i in range(config.vocab_size - len(words))]
    torch.manual_seed(0)
    model = BertModel(config)
    model.save_pretrained(folder)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True,
                      model_max_length=512).save_pretrained(folder)
    return sum(p.numel() for p in model.parameters()) / 1e6


def build_resnet50(folder: Path) -> float:
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False)
    save_for_hf(model, str(folder), safe_serialization=True)
    return sum(p.numel() for p in model.parameters()) / 1e6


def text_data(path: Path, count: int, seed: int) -> Path:
    """Sentences longer than SEQ_LEN tokens, so every training batch is cut to exactly BATCH x SEQ_LEN."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(count):
            writer.writerow([" ".join(rng.choice(WORDS) for _ in range(SEQ_LEN + 20)), f"topic{i % 4}"])
    return path


def image_data(root: Path, count: int, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


def adamw_step_ms(folder: Path, device: str, rounds: int = 2) -> dict[str, float]:
    """One AdamW step over the BERT model's parameters (its weight-decay groups, random gradients): torch's
    per-tensor loop (its default on a CPU) against the fused kernel zoo uses, interleaved, best of ``rounds``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from zoo.engine.trainer import parameter_groups

    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=4).to(device)
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    optimizers = {kind: torch.optim.AdamW(parameter_groups(model.named_parameters(), lr=1e-4, weight_decay=0.01),
                                          lr=1e-4, **options)
                  for kind, options in (("per-tensor loop", {"foreach": False}), ("fused", {"fused": True}))}
    best = dict.fromkeys(optimizers, float("inf"))
    for round_ in range(rounds + 1):   # the first round warms up (allocates the moment buffers)
        for kind, optimizer in optimizers.items():
            started = time.perf_counter()
            optimizer.step()
            sync()
            if round_:
                best[kind] = min(best[kind], (time.perf_counter() - started) * 1000)
    return best


# --- training under the profiler ----------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    ms_per_step: float


@dataclass
class Op:
    name: str
    ms_per_step: float
    calls_per_step: float


@dataclass
class TrainProfile:
    samples_per_s: float
    step_ms: float
    phases: list[Phase]                  # forward, backward, optimizer, data loading, other (the rest)
    top_ops: list[Op]                    # by self time
    gemm_ms_per_step: float              # self time of the matrix-multiply and convolution operators
    matmul_gflops_per_s: float | None    # the rate of the mm / addmm / bmm calls (None: a model without them)
    outside: float = field(init=False)   # fraction of a step outside forward, backward and optimizer

    def __post_init__(self) -> None:
        inside = sum(p.ms_per_step for p in self.phases if p.name in ("forward", "backward", "optimizer"))
        self.outside = 1 - inside / self.step_ms


def profile_training(name: str, data: Path, val: Path, *, registry: Path, work: Path, args, text: bool) -> TrainProfile:
    """`zoo adapt` for 1 + ``args.steps`` steps; the steps after the first are timed and profiled."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from zoo import api
    from zoo.engine.config import AdaptConfig
    from zoo.engine.trainer import PHASES, Reporter

    cuda = args.device.startswith("cuda")

    class StepClock(Reporter):
        """Notes when each step ends and moves the profiler on: step 1 warms up, the next ``steps`` are recorded."""

        def __init__(self, profiler) -> None:
            self.profiler, self.ends = profiler, []

        def step(self, **_) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())
            self.profiler.step()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    steps = schedule(wait=0, warmup=1, active=args.steps, repeat=1)
    with profile(activities=activities, schedule=steps, with_flops=True) as prof:
        clock = StepClock(prof)
        config = AdaptConfig(strategy="full", epochs=1, batch_size=BATCH, lr=1e-4, precision=args.precision,
                             patience=0, checkpoint_every=10**9, seed=0, max_length=SEQ_LEN if text else None)
        api.adapt(name, str(data), val=str(val), output=work / f"run-{name}", config=config, device=args.device,
                  registry_files=[registry], store=False, reporter=clock)
    window_ms = (clock.ends[args.steps] - clock.ends[0]) * 1000
    step_ms = window_ms / args.steps
    events = prof.key_averages()

    def self_ms(event) -> float:
        return (event.self_device_time_total if cuda else event.self_cpu_time_total) / 1000

    def total_ms(label: str) -> float:
        return sum(e.cpu_time_total for e in events if e.key.startswith(label)) / 1000 / args.steps

    phases = [Phase(phase, total_ms(label)) for phase, label in PHASES.items()]
    phases.append(Phase("data loading (next batch)", total_ms("enumerate(DataLoader)")))
    phases.append(Phase("other (device copy, reporting, Python)", step_ms - sum(p.ms_per_step for p in phases)))
    ops = sorted((e for e in events if not e.key.startswith(("zoo::", "enumerate(DataLoader)", "ProfilerStep"))),
                 key=self_ms, reverse=True)
    top = [Op(e.key, self_ms(e) / args.steps, e.count / args.steps) for e in ops[:args.top]]
    gemm = sum(self_ms(e) for e in events if e.key in GEMM_OPS) / args.steps
    # The rate the model's own matrix multiplies reach (the profiler counts FLOPs of mm, addmm, bmm).
    counted = [e for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm") and e.flops]
    flops, seconds = sum(e.flops for e in counted), sum(self_ms(e) for e in counted) / 1000
    return TrainProfile(samples_per_s=BATCH * 1000 / step_ms, step_ms=step_ms, phases=phases, top_ops=top,
                        gemm_ms_per_step=gemm, matmul_gflops_per_s=flops / seconds / 1e9 if seconds else None)


def bench_inference(name: str, *, registry: Path, args, text: bool):
    from zoo import api

    return api.bench(name, device=args.device, precision=args.precision, batch_sizes=(1, BATCH),
                     seq_len=SEQ_LEN, image_size=None if text else IMAGE_SIZE, warmup=1, iters=3, min_seconds=0,
                     registry_files=[registry], store=False)


# --- the report ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=1, help="timed training steps after one warm-up step")
    parser.add_argument("--layers", type=int, default=12, help="BERT layers (fewer for a quick check)")
    parser.add_argument("--top", type=int, default=8, help="operators listed per model")
    parser.add_argument("--models", default="bert,resnet50", help="comma-separated: bert, resnet50")
    parser.add_argument("--write", action="store_true", help="write the section into docs/performance.md")
    args = parser.parse_args()

    import torch

    cuda = args.device.startswith("cuda")
    sizes = (4096, 8192) if cuda else (2048, 4096)
    limits = {"fp32": gemm_rate("fp32", args.device, sizes)}
    bf16_native = native_bf16(args.device)
    # Without native bf16 the emulated kernel is timed at a small size only (a large one would take minutes).
    limits["bf16"] = gemm_rate("bf16", args.device, sizes if bf16_native else (512,), seconds=1.0)
    if args.precision == "fp16":
        limits["fp16"] = gemm_rate("fp16", args.device, sizes if cuda else (512,), seconds=1.0)
    best_size = limits[args.precision][1] or 512
    print(f"attainable torch.mm: {limits}", file=sys.stderr)

    results, optimizer_ms = {}, {}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(tmp)
        samples = BATCH * (1 + args.steps)
        models = args.models.split(",")
        for model in models:
            text = model == "bert"
            folder = work / model
            registry = work / f"{model}.toml"
            if text:
                params = build_bert(folder, args.layers)
                registry.write_text(transformers_local_entry(
                    "roofline-bert-base", folder, task="text-cls", params_m=params,
                    input_table=f"max_tokens = {SEQ_LEN}, seq_len = {SEQ_LEN}"))
                name = "roofline-bert-base"
                train, val = text_data(work / "train.csv", samples, 1), text_data(work / "val.csv", 8, 2)
            else:
                params = build_resnet50(folder)
                registry.write_text(timm_local_entry("roofline-resnet50", "resnet50", folder, params_m=params,
                                                     gflops=4.11, image_size=IMAGE_SIZE))
                name = "roofline-resnet50"
                train, val = image_data(work / "train", samples, 1), image_data(work / "val", 8, 2)
            # The limit again just before and after this model's runs: on a shared machine the rate moves with
            # the neighbours' load, and a fraction means something only against the rate of the same minutes.
            before = gemm_rate(args.precision, args.device, (best_size,), seconds=1.0)[0]
            inference = bench_inference(name, registry=registry, args=args, text=text)
            training = profile_training(name, train, val, registry=registry, work=work, args=args, text=text)
            after = gemm_rate(args.precision, args.device, (best_size,), seconds=1.0)[0]
            if text:
                optimizer_ms = adamw_step_ms(folder, args.device)
            results[model] = (params, inference, training, max(before, after))
            limits[args.precision] = max(limits[args.precision], (max(before, after), best_size))
            print(f"{model}: {inference.gflops} GFLOP/sample, inference {inference.throughput[-1]}, "
                  f"training {training.samples_per_s:.2f} samples/s", file=sys.stderr)

    body = report(results, limits, bf16_native, args, threads=torch.get_num_threads(),
                  optimizer_ms=optimizer_ms if "bert" in results else None)
    print(body)
    if args.write:
        write_section("roofline", body)
    return 0


def report(results, limits, bf16_native: bool, args, *, threads: int, optimizer_ms: dict | None) -> str:
    label = {"bert": f"BERT-base shape, batch {BATCH} x {SEQ_LEN} tokens",
             "resnet50": f"ResNet-50, batch {BATCH} x {IMAGE_SIZE} px"}
    limits = dict(limits)
    limit_rows = [["fp32", f"{limits['fp32'][0]:.1f}", f"{limits['fp32'][1]}", "yes"],
                  ["bf16", f"{limits['bf16'][0]:.1f}", f"{limits['bf16'][1]}",
                   "yes" if bf16_native else "no (emulated)"]]
    if "fp16" in limits:
        limit_rows.append(["fp16", f"{limits['fp16'][0]:.1f}", f"{limits['fp16'][1]}", "-"])
    rows, profiles, explain = [], [], []
    attainable = limits[args.precision][0]
    for model, (params, inference, training, meanwhile) in results.items():
        gflops = inference.gflops or 0.0
        best = inference.throughput[-1]
        infer_rate = gflops * best["samples_per_s"]
        train_rate = 3 * gflops * training.samples_per_s
        rows.append([label[model], f"{params:.1f}", "inference (`zoo bench`)", f"{gflops:.2f}",
                     f"{best['samples_per_s']:.2f}", f"{infer_rate:.1f}", f"**{infer_rate / attainable:.0%}**",
                     f"{meanwhile:.1f}"])
        rows.append([label[model], f"{params:.1f}", "training (`zoo adapt`, full)", f"{3 * gflops:.2f}",
                     f"{training.samples_per_s:.2f}", f"{train_rate:.1f}", f"**{train_rate / attainable:.0%}**",
                     f"{meanwhile:.1f}"])
        split = table(["part of a training step", "ms per step", "share"],
                      [[p.name, f"{p.ms_per_step:.0f}", f"{p.ms_per_step / training.step_ms:.1%}"]
                       for p in training.phases] + [["whole step", f"{training.step_ms:.0f}", "100%"]])
        ops = table(["operator (self time)", "ms per step", "share of step", "calls per step"],
                    [[f"`{op.name}`", f"{op.ms_per_step:.0f}", f"{op.ms_per_step / training.step_ms:.1%}",
                      f"{op.calls_per_step:.0f}"] for op in training.top_ops])
        gemm_share = training.gemm_ms_per_step / training.step_ms
        gemm_rate_inside = 3 * gflops * BATCH / (training.gemm_ms_per_step / 1000) if training.gemm_ms_per_step else 0
        profiles += [f"### {label[model]}: where a training step goes", "", split, "",
                     f"Outside forward, backward and optimizer: **{training.outside:.1%}** of a step "
                     "(target ≤ 10%).", "", ops, ""]
        matmul = training.matmul_gflops_per_s
        explain.append(
            f"{label[model]}: matrix multiplies and convolutions take {gemm_share:.0%} of a step, at "
            f"{gemm_rate_inside:.0f} GFLOP/s if all of the step's ≈ 3 × forward FLOPs are theirs "
            f"({gemm_rate_inside / attainable:.0%} of the attainable rate)"
            + (f"; the profiler's own count for the mm / addmm / bmm calls: {matmul:.0f} GFLOP/s "
               f"({matmul / attainable:.0%})" if matmul and model == "bert" else "")
            + f". The other {1 - gemm_share:.0%} of the step (normalisation, activations, softmax, the "
            "optimizer's element-wise updates, copies) moves memory and does few FLOPs.")
    device = "CUDA" if args.device.startswith("cuda") else "CPU"
    verdicts = []
    for model, (_, inference, training, _) in results.items():
        fraction = 3 * (inference.gflops or 0.0) * training.samples_per_s / attainable
        verdicts.append(f"- {label[model]}: time outside forward, backward and optimizer **{training.outside:.1%}** "
                        f"of a step (target ≤ 10%: {'met' if training.outside <= 0.10 else 'not met'}); training "
                        f"at **{fraction:.0%}** of the attainable rate"
                        + (f" (target ≥ 50%: {'met' if fraction >= 0.5 else 'not met'})" if model == "bert" else "")
                        + ".")
    optimizer_lines = []
    if optimizer_ms:
        loop, fused = optimizer_ms["per-tensor loop"], optimizer_ms["fused"]
        optimizer_lines = [
            f"The optimizer step over the BERT-shaped model's parameters: torch's per-tensor AdamW loop (its default "
            f"on a CPU, which zoo used before) {loop:.0f} ms, the fused kernel zoo now uses {fused:.0f} ms "
            f"({loop / fused:.1f}× faster; interleaved, best of 2).", ""]
    return "\n".join([
        "## Roofline: the machine's matrix-multiply rate, and how close zoo comes to it", "",
        f"Machine: {machine()}; device {args.device}, {args.precision}, {threads} threads. Reproduce: "
        f"`.venv/bin/python benchmarks/roofline.py --write` (on a GPU: `--device cuda --precision bf16`).", "",
        f"The limit: the best torch.mm rate on square matrices ({device}, {threads} threads).", "",
        table(["precision", "attainable GFLOP/s", "at size n (n x n)", "native"], limit_rows), "",
        f"Models with random initial weights, loaded through registry entries with local folders. Training: "
        f"`zoo adapt --strategy full` (AdamW, fp32 master weights), one warm-up step then {args.steps} timed "
        f"step{'s' if args.steps > 1 else ''} under torch.profiler, FLOPs per sample ≈ 3 × forward. Inference: "
        "`zoo bench` at batch "
        f"{BATCH}, FLOPs counted by torch.utils.flop_counter (2 per multiply-add). Fractions are of the attainable "
        f"{args.precision} rate above, the best torch.mm rate seen in the run; torch.mm was timed again just "
        "before and after each model's runs (the higher of the two is shown), because a shared machine's rate "
        "moves with its neighbours' load.", "",
        table(["model", "params (M)", "path", "GFLOP / sample", "samples/s", "GFLOP/s", "of attainable",
               "torch.mm meanwhile, GFLOP/s"], rows), "",
        *profiles,
        *verdicts, "",
        *optimizer_lines,
        "### Where the rest of the rate goes", "",
        *[f"- {line}" for line in explain], "",
        "A training step can come near the GEMM rate only as far as its time is spent in large matrix multiplies "
        "running at their best: the rest is memory-bound work (dropout's random draws, normalisation, "
        "activations, copies), which the profile lists.",
    ])


if __name__ == "__main__":
    sys.exit(main())
