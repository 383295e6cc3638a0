"""The `linear` strategy (head on cached features) against `full` fine-tuning: time per epoch, time to accuracy.

Both adapt the same timm ResNet-18 (random initial weights, saved as a local folder) on the same synthetic colour
images, through `zoo adapt`. Reported: seconds per training epoch (for `linear`, whose head is solved rather than
trained for epochs, the whole solve), the one-time feature extraction of `linear`, and the wall time until
validation accuracy first reaches the target.

    python benchmarks/linear_vs_full.py [--device cuda] [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _report import machine, table, timm_local_entry, write_section

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 40), "blue": (40, 40, 200), "yellow": (210, 200, 40)}


def make_images(root: Path, per_class: int, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (96, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--target", type=float, default=0.9, help="validation accuracy to reach")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()

    import timm
    import torch
    from timm.models import save_for_hf

    from zoo import api
    from zoo.engine.config import AdaptConfig

    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        save_for_hf(timm.create_model("resnet18", pretrained=False), str(work / "resnet18"), safe_serialization=True)
        registry = work / "registry.toml"
        registry.write_text(timm_local_entry("bench-resnet18", "resnet18", work / "resnet18", params_m=11.69,
                                             gflops=3.63, image_size=224))
        train = make_images(work / "train", args.per_class, seed=1)
        val = make_images(work / "val", max(8, args.per_class // 4), seed=2)
        import os

        os.environ["ZOO_FEATURE_CACHE"] = str(work / "features")     # a cold cache: extraction is timed
        runs = {}
        for strategy, epochs, lr in (("linear", None, None), ("full", 4, 1e-3)):   # linear solves its head
            config = AdaptConfig(strategy=strategy, epochs=epochs, lr=lr, batch_size=32, patience=0, augment="none",
                                 checkpoint_every=10**9)
            runs[strategy] = api.adapt("bench-resnet18", str(train), val=str(val), output=work / strategy,
                                       config=config, device=args.device, registry_files=[registry], store=False)
    rows, per_epoch = [], {}
    for strategy, record in runs.items():
        epochs = record["metrics"]["epochs"]
        per_epoch[strategy] = sum(e["seconds"] for e in epochs) / len(epochs)
        setup = record["wall_s"] - sum(e["seconds"] for e in epochs)   # loading, extraction, evaluation, saving
        elapsed, reached = 0.0, None
        for epoch in epochs:
            elapsed += epoch["seconds"]
            if reached is None and epoch["val"]["accuracy"] >= args.target:
                reached = (epoch["epoch"], elapsed)
        best = record["metrics"]["best"]["accuracy"]
        rows.append([strategy, f"{per_epoch[strategy]:.3f}", f"{setup:.1f}",
                     f"epoch {reached[0]}, {reached[1]:.2f} s of training" if reached else "not reached",
                     f"{best:.3f}"])
    ratio = per_epoch["full"] / per_epoch["linear"]
    for row in rows:
        print("  ".join(row), file=sys.stderr)
    body = "\n".join([
        "## Linear probe on cached features against full fine-tuning", "",
        f"Machine: {machine()}; device {args.device}. timm ResNet-18 (random initial weights), "
        f"{args.per_class * len(COLOURS)} training images of {len(COLOURS)} noisy colours, batch 32. Reproduce: "
        "`.venv/bin/python benchmarks/linear_vs_full.py --write`.", "",
        table(["strategy", "s / training epoch (linear: the solve)", "other wall time (load, features, eval, save)",
               f"first val accuracy ≥ {args.target}", "best val accuracy"], rows), "",
        f"Solving the linear head takes **{ratio:.0f}×** less time than one full epoch (target ≥ 10×): it fits "
        "the head on features the frozen backbone computed once (the extraction is part of linear's other wall "
        "time, paid once per backbone and dataset and reused by later runs).",
    ])
    print(body)
    if args.write:
        write_section("linear_vs_full", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
