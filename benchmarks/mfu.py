"""Model FLOPs utilisation of training through zoo's engine: ViT-B/16 and BERT-base, with and without --compile.

Each model is built here with random initial weights (timm `vit_base_patch16_224`; transformers `BertConfig()`
defaults: 12 layers, 768 wide), saved as a local folder and reached through a registry entry with a `local-dir:`
source, then fine-tuned in full by `zoo.api.adapt` on synthetic data: 224×224 JPEG images of two classes, and
sentences long enough that every one is cut to 128 tokens. The throughput is the last epoch's training samples/s
from the run record (the first epoch carries compilation and warm-up); the FLOPs of a training step are taken as
3 × the forward FLOPs of one example, counted by torch.utils.flop_counter (zoo.bench.count_gflops); MFU is that
rate against the device's dense peak in the precision used (zoo.bench.gpu_peak_tflops). Target: ≥ 40% on an
H100/H200-class GPU in bf16; for scale, a published ResNet-50 AMP training run on an A100 reaches about 20%.

On a CPU no dense peak is known (benchmarks/roofline.py measures what a CPU attains): MFU is left empty and the
achieved TFLOP/s shown. `--smoke` swaps in tiny shapes (ViT-Ti/16, a 2-layer 128-wide BERT at 32 tokens, a few
dozen examples) to check the wiring in a minute on a CPU; its figures mean nothing and --write refuses them.

    python benchmarks/mfu.py --device cuda --precision bf16 [--write] [--out DIR]
    python benchmarks/mfu.py --device cpu --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from _report import machine, table, timm_local_entry, transformers_local_entry, write_section

TARGET_MFU = 0.40
WORDS = "the a model zoo train batch token image device memory kernel epoch layer head signal noise".split()


@dataclass
class Shape:
    """One model as this benchmark trains it."""

    label: str
    kind: str                  # vit | bert
    arch: str                  # timm architecture (vit) or "" (bert)
    batch_size: int
    train: int                 # training examples per epoch
    seq_len: int = 128         # bert
    layers: int = 12           # bert
    width: int = 768           # bert


def shapes(smoke: bool, device: str) -> list[Shape]:
    if smoke:
        return [Shape("ViT-Ti/16 (smoke)", "vit", "vit_tiny_patch16_224", 8, 16),
                Shape("BERT 2×128 (smoke)", "bert", "", 8, 32, seq_len=32, layers=2, width=128)]
    many = device.startswith("cuda")
    return [Shape("ViT-B/16", "vit", "vit_base_patch16_224", 128 if many else 32, 8192 if many else 256),
            Shape("BERT-base", "bert", "", 64 if many else 32, 16384 if many else 256)]


@dataclass
class Result:
    model: str
    compile: bool
    batch_size: int
    samples_per_s: float
    forward_gflops: float      # per example
    train_tflops: float        # achieved: 3 × forward FLOPs × samples/s
    peak_tflops: float | None
    mfu: float | None
    epoch_seconds: float
    first_epoch_seconds: float
    workers: int | str | None = None   # data loader worker processes the run used (its record's config)
    error: str | None = None


@dataclass
class Inference:
    """`zoo bench` of the eager run just trained: what `zoo predict` and `zoo serve` run, on this device."""

    model: str
    p50_ms: float               # batch 1
    batch_size: int
    samples_per_s: float        # at batch_size
    mfu: float | None           # zoo bench's: forward FLOPs × samples/s against the dense peak
    error: str | None = None


# --- models and data --------------------------------------------------------------------------------------------

def build_vit(shape: Shape, folder: Path) -> tuple[float, float]:
    """Save the timm model in its native layout; returns (forward GFLOPs per example, parameters in millions)."""
    import timm
    import torch
    from timm.models import save_for_hf

    from zoo.bench import count_gflops

    torch.manual_seed(0)
    model = timm.create_model(shape.arch, pretrained=False, num_classes=2)
    save_for_hf(model, str(folder), safe_serialization=True)
    model.eval()
    image = torch.randn(1, 3, 224, 224)
    return count_gflops(lambda: model(image)), sum(p.numel() for p in model.parameters()) / 1e6


def build_bert(shape: Shape, folder: Path) -> tuple[float, float]:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from zoo.bench import count_gflops

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=shape.layers, hidden_size=shape.width,
                        num_attention_heads=max(2, shape.width // 64), intermediate_size=4 * shape.width,
                        num_labels=2)
    model = BertForSequenceClassification(config)
    model.bert.save_pretrained(folder)
    BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512).save_pretrained(folder)
    model.eval()
    ids = torch.randint(5, len(vocab), (1, shape.seq_len))
    return count_gflops(lambda: model(input_ids=ids)), sum(p.numel() for p in model.parameters()) / 1e6


def write_images(root: Path, count: int, seed: int) -> Path:
    """``count`` 224×224 JPEGs in two class folders: 64 distinct pictures per class, linked over and over (a
    page-cache read, like any data set that fits in memory; decoding and preprocessing still run per example)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(("warm", "cool")):
        folder = root / name
        folder.mkdir(parents=True)
        distinct = []
        for i in range(min(64, count // 2)):
            base = np.zeros((224, 224, 3), np.float32) + (np.array([200, 80, 40]) if c == 0 else [40, 90, 210])
            picture = np.clip(base + rng.normal(0, 40, (28, 28, 3)).repeat(8, 0).repeat(8, 1), 0, 255)
            path = folder / f"{i:05d}.jpg"
            Image.fromarray(picture.astype(np.uint8)).save(path, quality=90)
            distinct.append(path)
        for i in range(len(distinct), count // 2):
            os.link(distinct[i % len(distinct)], folder / f"{i:05d}.jpg")
    return root


def write_sentences(path: Path, count: int, words: int, seed: int) -> Path:
    """A CSV of ``count`` sentences of ``words`` words (longer than the token limit, so every one is cut to it)."""
    import csv

    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(count):
            label = i % 2
            text = " ".join(rng.choice(WORDS[:8] if label else WORDS[8:]) for _ in range(words))
            writer.writerow([text, ["no", "yes"][label]])
    return path


# --- one measurement --------------------------------------------------------------------------------------------

def run_dir(work: Path, shape: Shape, compile: bool) -> Path:
    return work / f"run-{shape.kind}-{'compiled' if compile else 'eager'}"


def train(shape: Shape, *, compile: bool, work: Path, registry: Path, train_data: Path, val_data: Path,
          args) -> dict:
    from zoo import api
    from zoo.engine.config import AdaptConfig

    config = AdaptConfig(strategy="full", epochs=args.epochs, batch_size=shape.batch_size, lr=1e-4,
                         precision=args.precision, compile=compile, augment="none", patience=0,
                         checkpoint_every=10**9, explain_card=0, workers=args.workers,
                         eval_batch_size=256,
                         max_length=shape.seq_len if shape.kind == "bert" else None, seed=0)
    return api.adapt(f"mfu-{shape.kind}", str(train_data), val=str(val_data), output=run_dir(work, shape, compile),
                     config=config,
                     device=args.device, registry_files=[registry], store=False)


def bench(shape: Shape, work: Path, args) -> Inference:
    """Inference speed of the eager run through zoo.api.bench (latency at batch 1, throughput at the batch)."""
    from zoo import api

    try:
        quick = {"warmup": 1, "iters": 2, "min_seconds": 0.0} if args.smoke else {}
        result = api.bench(str(run_dir(work, shape, False)), device=args.device, precision=args.precision,
                           batch_sizes=(1, shape.batch_size), seq_len=shape.seq_len, store=False, **quick)
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Inference(shape.label, 0.0, shape.batch_size, 0.0, None, error=f"{type(exc).__name__}: {detail}")
    return Inference(shape.label, result.latency_ms["p50"], shape.batch_size,
                     result.throughput[-1]["samples_per_s"], result.mfu)


@dataclass
class Prepared:
    """A model saved behind a registry entry, with its data: what every configuration of it trains on."""

    shape: Shape
    work: Path
    registry: Path
    train_data: Path
    val_data: Path
    gflops: float              # forward, per example


def prepare(shape: Shape, work: Path) -> Prepared:
    folder = work / shape.kind
    registry = work / f"{shape.kind}.toml"
    if shape.kind == "vit":
        gflops, params_m = build_vit(shape, folder)
        registry.write_text(timm_local_entry(f"mfu-{shape.kind}", shape.arch, folder, params_m=params_m,
                                             gflops=gflops, image_size=224))
        train_data = write_images(work / "images-train", shape.train, seed=1)
        val_data = write_images(work / "images-val", max(16, shape.batch_size), seed=2)
    else:
        gflops, params_m = build_bert(shape, folder)
        registry.write_text(transformers_local_entry(f"mfu-{shape.kind}", folder, task="text-cls",
                                                     params_m=params_m,
                                                     input_table=f"max_tokens = 512, seq_len = {shape.seq_len}"))
        train_data = write_sentences(work / "train.csv", shape.train, 2 * shape.seq_len, seed=1)
        val_data = write_sentences(work / "val.csv", max(16, shape.batch_size), 2 * shape.seq_len, seed=2)
    return Prepared(shape, work, registry, train_data, val_data, gflops)


def measure(model: Prepared, *, compile: bool, peak: float | None, args) -> Result:
    shape, gflops = model.shape, model.gflops
    print(f"{shape.label}, compile {compile}: training", file=sys.stderr, flush=True)
    try:
        record = train(shape, compile=compile, work=model.work, registry=model.registry,
                       train_data=model.train_data, val_data=model.val_data, args=args)
    except Exception as exc:   # one failed configuration leaves the others' figures
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"  failed: {type(exc).__name__}: {detail}", file=sys.stderr)
        return Result(shape.label, compile, shape.batch_size, 0.0, round(gflops, 3), 0.0, peak, None, 0.0, 0.0,
                      error=f"{type(exc).__name__}: {detail}")
    epochs = record["metrics"]["epochs"]
    rate = epochs[-1]["samples_per_s"]
    achieved = 3 * gflops * rate / 1000
    print(f"  {rate:.1f} samples/s, {achieved:.3g} TFLOP/s" + (f", MFU {achieved / peak:.1%}" if peak else ""),
          file=sys.stderr)
    return Result(shape.label, compile, shape.batch_size, rate, round(gflops, 3), float(f"{achieved:.4g}"), peak,
                  round(achieved / peak, 4) if peak else None, epochs[-1]["seconds"], epochs[0]["seconds"],
                  workers=record["config"]["workers"])


# --- report -----------------------------------------------------------------------------------------------------

def report(results: list[Result], inference: list[Inference], args, fingerprint: str, total_s: float) -> str:
    rows = []
    for r in results:
        if r.error:
            rows.append([r.model, "on" if r.compile else "off", str(r.batch_size), "failed", "", "", "", r.error])
            continue
        mfu = f"{r.mfu:.1%}" if r.mfu is not None else "no known peak"
        rows.append([r.model, "on" if r.compile else "off", str(r.batch_size), f"{r.samples_per_s:.1f}",
                     f"{r.train_tflops:.3g}", mfu, f"{r.first_epoch_seconds:.1f} / {r.epoch_seconds:.1f}",
                     str(r.workers)])
    peak = next((r.peak_tflops for r in results if r.peak_tflops), None)
    best = max((r.mfu for r in results if r.mfu is not None), default=None)
    served = [[i.model, "failed", "", "", i.error] if i.error else
              [i.model, f"{i.p50_ms:.2f}", str(i.batch_size), f"{i.samples_per_s:.1f}",
               f"{i.mfu:.1%}" if i.mfu is not None else "no known peak"] for i in inference]
    verdict = ("no dense peak is known for this device, so MFU is not computed" if best is None else
               f"best {best:.1%}: target {'met' if best >= TARGET_MFU else 'missed'}")
    return "\n".join([
        "## Training MFU through the engine: ViT-B/16 and BERT-base", "",
        f"Machine: {fingerprint}; device {args.device}, {args.precision}"
        + (f", dense peak {peak:g} TFLOP/s" if peak else "") + f"; --workers {args.workers}; "
        f"{args.epochs} epoch{'s' if args.epochs > 1 else ''} per configuration, the last one timed; "
        f"whole script {total_s:.0f} s. "
        "Reproduce: `.venv/bin/python benchmarks/mfu.py --device cuda --precision bf16 --write` (or "
        "`benchmarks/gpu_suite.sh --write`).", "",
        table(["model", "--compile", "batch", "train samples/s", "achieved TFLOP/s", "MFU",
               "first / timed epoch s", "loader workers"], rows), "",
        f"Target: ≥ {TARGET_MFU:.0%} MFU on an H100/H200-class GPU in bf16 ({verdict}). For scale, a published "
        "ResNet-50 AMP training run on an A100 reaches about 20%. Training FLOPs are 3 × the forward FLOPs of one "
        "example (torch.utils.flop_counter, attention counted through its math kernel), times samples/s; the "
        "samples/s is the engine's end to end (data loading, forward, backward, optimizer, logging), so a data "
        "loader that cannot keep up lowers it (`benchmarks/data_pipeline.py` measures the data-wait share).", "",
        "Inference on the same device (`zoo bench RUN --device ... --precision ...` of the eager run: the forward "
        "pass `zoo predict` runs; zoo bench's MFU counts forward FLOPs only):", "",
        table(["model", "batch-1 p50 ms", "batch", "samples/s", "MFU"], served),
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per configuration (default 2; smoke 1)")
    parser.add_argument("--workers", default="auto",
                        help="data loader worker processes, or auto (the engine's choice for the device)")
    parser.add_argument("--compile", choices=["both", "on", "off"], default="both", dest="compile_choice")
    parser.add_argument("--only", choices=["vit", "bert"], help="one model only")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes to check the wiring; figures mean nothing")
    parser.add_argument("--out", type=Path, help="also write mfu.json and mfu.md into this folder")
    parser.add_argument("--write", action="store_true", help="write the section into docs/performance.md")
    args = parser.parse_args()
    if args.smoke and args.write:
        parser.error("--smoke figures mean nothing: they are not written")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is visible (use --device cpu)")
    args.epochs = args.epochs or (1 if args.smoke else 2)
    if args.workers != "auto":
        args.workers = int(args.workers)
    args.compile_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.compile_choice]

    from transformers.utils import logging

    logging.set_verbosity_error()
    fingerprint, started = machine(), time.monotonic()
    import torch

    from zoo.bench import gpu_peak_tflops

    peak = gpu_peak_tflops(torch.cuda.get_device_name(), args.precision) if args.device == "cuda" else None
    results: list[Result] = []
    inference: list[Inference] = []

    def save() -> None:
        """Written after every measurement, so a run stopped by a time limit still leaves what it measured."""
        body = report(results, inference, args, fingerprint, time.monotonic() - started)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "mfu.json").write_text(json.dumps({
                "machine": fingerprint, "device": args.device, "precision": args.precision, "smoke": args.smoke,
                "training": [asdict(r) for r in results], "inference": [asdict(i) for i in inference]}, indent=2))
            (args.out / "mfu.md").write_text(body + "\n")
        if args.write:
            write_section("mfu", body)

    with tempfile.TemporaryDirectory(prefix="zoo-mfu-") as tmp:
        os.environ.setdefault("ZOO_FEATURE_CACHE", str(Path(tmp) / "features"))
        models = []
        for shape in shapes(args.smoke, args.device):
            if not args.only or shape.kind == args.only:
                (Path(tmp) / shape.kind).mkdir()
                models.append(prepare(shape, Path(tmp) / shape.kind))
        # Eager first (and its inference), compiled after: compiling is the slow part, so a time limit that
        # stops the script takes the compiled figures first.
        for compile in args.compile_modes:
            for model in models:
                results.append(measure(model, compile=compile, peak=peak, args=args))
                if not compile and not results[-1].error:
                    inference.append(bench(model.shape, model.work, args))
                save()
    print(report(results, inference, args, fingerprint, time.monotonic() - started))
    return 1 if any(r.error for r in [*results, *inference]) else 0


if __name__ == "__main__":
    sys.exit(main())
