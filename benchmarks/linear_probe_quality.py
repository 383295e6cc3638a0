"""The `linear` strategy's solved head against the epoch loop it replaced and scikit-learn, on the same features.

A timm ResNet-18 (random initial weights, saved as a local folder) gives the cached features of scikit-learn's
bundled 8×8 digits (10 classes), drawn as images. On those cached features the validation accuracy of:

- `zoo adapt --strategy linear` as it is: standardised features, L-BFGS over the L2 grid, chosen on validation;
- the epoch loop the linear strategy ran before (AdamW, its defaults: learning rate 1e-2, 30 epochs, patience 3),
  reached by telling the run the head is not one linear layer;
- scikit-learn's `LogisticRegression` fitted to convergence on the same cached features, standardised, with the
  best `C` over the same grid (the reference).

    python benchmarks/linear_probe_quality.py [--device cuda] [--write]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _report import machine, table, timm_local_entry, write_section


def make_digits(root: Path, *, train_per_class: int, val_per_class: int) -> tuple[Path, Path]:
    """scikit-learn's digits as 64×64 PNGs in class folders: the first images of each class train, the next validate."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: dict[int, int] = {}
    for image, label in zip(digits.images, digits.target, strict=True):
        index = seen.get(int(label), 0)
        seen[int(label)] = index + 1
        split = "train" if index < train_per_class else "val" if index < train_per_class + val_per_class else None
        if split is None:
            continue
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image / 16.0 * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((64, 64), Image.NEAREST).convert("RGB").save(folder / f"{index:03d}.png")
    return root / "train", root / "val"


def sklearn_reference(cache: Path, name: str) -> tuple[float, float, float]:
    """Best validation accuracy of LogisticRegression over the solver's L2 grid on the cached features; its C; s."""
    from safetensors.torch import load_file
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from zoo.engine.probe import L2_GRID

    def split(which: str):
        (path,) = cache.glob(f"{name}-{which}-*.safetensors")
        tensors = load_file(str(path))
        return tensors["features"].double().numpy(), tensors["targets"].numpy()

    (train_x, train_y), (val_x, val_y) = split("train"), split("val")
    scaler = StandardScaler().fit(train_x)
    started, best = time.perf_counter(), (-1.0, 0.0)
    for l2 in sorted(L2_GRID, reverse=True):
        c = 1 / (l2 * len(train_y))
        model = LogisticRegression(C=c, max_iter=20000, tol=1e-8).fit(scaler.transform(train_x), train_y)
        accuracy = float((model.predict(scaler.transform(val_x)) == val_y).mean())
        if accuracy > best[0]:
            best = (accuracy, c)
    return best[0], best[1], time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()

    import timm
    import torch
    from timm.models import save_for_hf

    import zoo.family
    from zoo import api
    from zoo.engine.config import AdaptConfig

    name = "bench-resnet18"
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        save_for_hf(timm.create_model("resnet18", pretrained=False), str(work / "resnet18"), safe_serialization=True)
        registry = work / "registry.toml"
        registry.write_text(timm_local_entry(name, "resnet18", work / "resnet18", params_m=11.69, gflops=3.63,
                                             image_size=224))
        train, val = make_digits(work / "digits", train_per_class=args.train_per_class,
                                 val_per_class=args.val_per_class)
        os.environ["ZOO_FEATURE_CACHE"] = str(work / "features")
        options = {"val": str(val), "device": args.device, "registry_files": [registry], "store": False,
                   "config": AdaptConfig(strategy="linear", augment="none")}
        solved = api.adapt(name, str(train), output=work / "solved", **options)
        # The epoch loop, with the defaults the linear strategy used: the run is told the head is not one layer.
        linear_head = zoo.family.Classifier.linear_head
        zoo.family.Classifier.linear_head = lambda self: None
        try:
            looped = api.adapt(name, str(train), output=work / "looped", **options)
        finally:
            zoo.family.Classifier.linear_head = linear_head
        reference, best_c, reference_s = sklearn_reference(work / "features", name)

    fit = solved["head_fit"]
    loop_epochs = looped["metrics"]["epochs"]
    rows = [
        ["`zoo adapt --strategy linear` (L-BFGS, L2 chosen on validation)",
         f"{solved['metrics']['best']['accuracy']:.3f}",
         f"{fit['seconds']:.2f} s, {fit['iterations']} iterations over {len(fit['grid'])} L2 strengths "
         f"(chosen {fit['l2']:g})"],
        ["the epoch loop it replaced (AdamW, lr 1e-2, 30 epochs, patience 3)",
         f"{looped['metrics']['best']['accuracy']:.3f}",
         f"{sum(e['seconds'] for e in loop_epochs):.2f} s, {len(loop_epochs)} epochs"
         f"{' (stopped early)' if looped['metrics']['stopped_early'] else ''}"],
        ["scikit-learn LogisticRegression, standardised, best C over the same grid",
         f"{reference:.3f}", f"{reference_s:.2f} s for the 8 fits (best C {best_c:.3g})"],
    ]
    for row in rows:
        print("  ".join(row), file=sys.stderr)
    body = "\n".join([
        "## Linear probe quality: solved head against the epoch loop and scikit-learn", "",
        f"Machine: {machine()}; device {args.device}. timm ResNet-18 (random initial weights) features of "
        f"scikit-learn's digits (10 classes, {args.train_per_class} training and {args.val_per_class} validation "
        "images per class, 64×64), cached once and shared by all three. Reproduce: "
        "`.venv/bin/python benchmarks/linear_probe_quality.py --write`.", "",
        table(["head fitted by", "validation accuracy", "fit time on cached features"], rows),
    ])
    print(body)
    if args.write:
        write_section("linear_probe_quality", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
