"""zoo's fine-tuning engine against timm's own training recipe (train.py), on a ResNet and a ViT.

timm's `train.py` is not part of the timm package, so its loop is rebuilt here from the library pieces it calls:
`create_dataset` and `create_loader` (timm's transforms and augmentation), `create_optimizer_v2` (AdamW with no
weight decay on biases and norms), `create_scheduler_v2` (cosine with warm-up, stepped per update), the
cross-entropy loss, gradient clipping by norm, and autocast for bf16 or fp16 (a loss scaler for fp16 only). Both
sides fine-tune the same timm model (random initial weights, saved as a local folder that zoo loads through a
registry entry) on the same synthetic images, with the same augmentation (zoo's `light` preset, which is timm's
random-resized crop, flip and colour jitter), batch, learning rate, warm-up and cosine schedule, clipping,
precision, data-loading workers and epochs. Reported: training samples/s (training loop only, evaluation
excluded) and validation accuracy after the last epoch, with the ratio zoo / timm.

    python benchmarks/engine_vs_timm.py [--device cuda --precision bf16] [--repeats 2] [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _report import machine, table, timm_local_entry, write_section
from linear_vs_full import make_images

# (row name, timm architecture, millions of parameters and GFLOPs at 224 px for the registry entry)
MODELS = (("ResNet-18", "resnet18", 11.69, 1.82), ("ViT-Ti/16", "vit_tiny_patch16_224", 5.72, 1.26))
# zoo's `light` augmentation preset, as timm's loader takes it (zoo_timm.family._AUGMENT_PRESETS)
LIGHT = {"scale": (0.5, 1.0), "hflip": 0.5, "color_jitter": 0.1}


def input_overlay(image_size: int) -> dict:
    """The pretrained-config fields that build the model for ``image_size`` px, as zoo's `--image-size` does."""
    return {"input_size": (3, image_size, image_size), "crop_pct": 1.0, "crop_mode": "center",
            "test_input_size": None, "test_crop_pct": None}


def warmup_steps(total: int, ratio: float) -> int:
    return round(ratio * total)


def run_zoo(name: str, registry: Path, train: Path, val: Path, args, work: Path) -> tuple[float, float]:
    from zoo import api
    from zoo.engine.config import AdaptConfig

    config = AdaptConfig(strategy="full", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         warmup_ratio=args.warmup_ratio, precision=args.precision, patience=0, augment="light",
                         image_size=args.image_size, workers=args.workers, checkpoint_every=10**9, seed=0,
                         explain_card=0)
    output = Path(tempfile.mkdtemp(prefix="zoo-run-", dir=work)) / "run"   # one run per folder
    record = api.adapt(name, str(train), val=str(val), output=output, config=config, device=args.device,
                       registry_files=[registry], store=False)
    epochs = record["metrics"]["epochs"]
    seconds = sum(e["seconds"] for e in epochs)
    return record["data"]["sizes"]["train"] * len(epochs) / seconds, epochs[-1]["val"]["accuracy"]


def run_timm(folder: Path, train: Path, val: Path, args) -> tuple[float, float]:
    """timm train.py's train_one_epoch, from the same library calls, with the settings zoo's run takes."""
    from contextlib import nullcontext

    import timm
    import torch
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import dispatch_clip_grad

    device = torch.device(args.device)
    torch.manual_seed(0)
    train_set, val_set = create_dataset("", root=str(train)), create_dataset("", root=str(val))
    classes = len(train_set.reader.class_to_idx)
    model = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=classes,
                              pretrained_cfg_overlay=input_overlay(args.image_size)).to(device)
    data = resolve_data_config({}, model=model)
    on_cuda = device.type == "cuda"
    # train.py's loader: its prefetcher normalises on the GPU; on a CPU the plain loader does it in the workers
    loader = create_loader(train_set, input_size=data["input_size"], batch_size=args.batch_size, is_training=True,
                           interpolation=data["interpolation"], mean=data["mean"], std=data["std"],
                           num_workers=args.workers, pin_memory=on_cuda, use_prefetcher=on_cuda, device=device,
                           persistent_workers=args.workers > 0, **LIGHT)
    val_loader = create_loader(val_set, input_size=data["input_size"], batch_size=64, is_training=False,
                               interpolation=data["interpolation"], mean=data["mean"], std=data["std"],
                               crop_pct=data["crop_pct"], crop_mode=data["crop_mode"], num_workers=args.workers,
                               use_prefetcher=on_cuda, device=device)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=args.lr, weight_decay=0.01)
    updates = len(loader)
    schedule, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=args.epochs, warmup_lr=0.0,
                                      warmup_epochs=warmup_steps(updates * args.epochs, args.warmup_ratio) / updates,
                                      warmup_prefix=True, step_on_epochs=False, updates_per_epoch=updates)
    loss_fn = torch.nn.CrossEntropyLoss().to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
    scaler = torch.amp.GradScaler(device.type) if args.precision == "fp16" else None
    seconds, num_updates = 0.0, 0
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for inputs, target in loader:
            if not on_cuda:
                inputs, target = inputs.to(device), target.to(device)
            with autocast():
                loss = loss_fn(model(inputs), target)
            optimizer.zero_grad()
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                dispatch_clip_grad(model.parameters(), value=1.0, mode="norm")
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                dispatch_clip_grad(model.parameters(), value=1.0, mode="norm")
                optimizer.step()
            num_updates += 1
            schedule.step_update(num_updates=num_updates)
            loss.item()   # train.py's running loss meter reads it every step
        if on_cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for inputs, target in val_loader:
            inputs, target = inputs.to(device), target.to(device)
            with autocast():
                correct += int((model(inputs).argmax(-1) == target).sum())
            total += len(target)
    return len(train_set) * args.epochs / seconds, correct / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--per-class", type=int, default=64, help="training images per class (4 classes)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--workers", type=int, default=0, help="data-loading worker processes, both sides")
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of every trainer, interleaved; each keeps its fastest round")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()

    import timm
    import torch
    from timm.models import save_for_hf

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(tmp)
        train = make_images(work / "train", args.per_class, seed=1)
        val = make_images(work / "val", max(8, args.per_class // 4), seed=2)
        registry = work / "registry.toml"
        entries = []
        for _, arch, params_m, gflops in MODELS:
            torch.manual_seed(0)
            # A ViT's position embeddings fix its input size: build and save it for the run's, as a checkpoint
            # fine-tuned at that size would be (a CNN takes any size).
            model_args = {"img_size": args.image_size} if arch.startswith("vit") else {}
            save_for_hf(timm.create_model(arch, pretrained=False, **model_args), str(work / arch),
                        safe_serialization=True, model_args=model_args)
            entries.append(timm_local_entry(f"bench-{arch}", arch, work / arch, params_m=params_m, gflops=gflops,
                                            image_size=args.image_size if model_args else 224))
        registry.write_text("\n".join(entries))
        # Rounds interleave the trainers, so a busy spell of the machine slows all of them rather than one.
        for round_index in range(args.repeats):
            for label, arch, *_ in MODELS:
                for trainer in ("zoo adapt (engine)", "timm train.py recipe"):
                    if trainer.startswith("zoo"):
                        result = run_zoo(f"bench-{arch}", registry, train, val, args, work)
                    else:
                        result = run_timm(work / arch, train, val, args)
                    results.setdefault((label, trainer), []).append(result)
                    print(f"round {round_index + 1}: {label}, {trainer}: {result[0]:.1f} samples/s, "
                          f"val accuracy {result[1]:.3f}", file=sys.stderr)
    best = {key: max(rounds) for key, rounds in results.items()}   # the fastest round of each
    target = 1.3 if args.device.startswith("cuda") else 1.1
    rows, ratios = [], []
    for label, *_ in MODELS:
        ours = best[(label, "zoo adapt (engine)")][0]
        ratios.append(ours / best[(label, "timm train.py recipe")][0])
        for trainer in ("zoo adapt (engine)", "timm train.py recipe"):
            rate, accuracy = best[(label, trainer)]
            rows.append([label, trainer, f"{rate:.1f}", f"{accuracy:.3f}", f"{ours / rate:.2f}"])
    classes = 4
    body = "\n".join([
        "## Engine against timm's training recipe: samples/s and accuracy", "",
        f"Machine: {machine()}; device {args.device}, {args.precision}. timm models with random initial weights, "
        f"{args.per_class * classes} training and {max(8, args.per_class // 4) * classes} validation images of 4 "
        f"noisy colours at {args.image_size} px, augmentation: random-resized crop (scale 0.5 to 1), flip and colour "
        f"jitter 0.1 (zoo's `light`), batch {args.batch_size}, AdamW at {args.lr} (weight decay 0.01, none on biases "
        f"and norms) with {args.warmup_ratio:.0%} warm-up and cosine schedule, gradient norm clipped at 1, "
        f"{args.epochs} epochs, {args.workers} data-loading workers; the fastest of {args.repeats} interleaved "
        "rounds. Reproduce: `.venv/bin/python benchmarks/engine_vs_timm.py --write`.", "",
        table(["model", "trainer", "train samples/s", "val accuracy", "zoo / this"], rows), "",
        f"zoo against timm's recipe: **{min(ratios):.2f}×** at worst (ResNet {ratios[0]:.2f}×, ViT "
        f"{ratios[1]:.2f}×; target ≥ {target}× on {'GPU' if target > 1.1 else 'CPU'}).", "",
        "The timm side is train.py's loop rebuilt from the library calls it makes (the script is not in the timm "
        "package): `create_dataset` and `create_loader`, `create_optimizer_v2`, `create_scheduler_v2` stepped per "
        "update, cross-entropy, `dispatch_clip_grad`, autocast for bf16 and fp16. Throughput counts the training "
        "loop only (no evaluation).",
    ])
    print(body)
    if args.write:
        write_section("engine_vs_timm", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
