"""Fit the recommender's CPU device profile to measured batch-1 latencies of real registry architectures.

`zoo recommend` estimates latency as ``overhead_ms + gflops / effective_gflops_per_s``. This script builds a
spread of registry backbones without weights (each family's `architecture()`, random init), times each at its
default input on this machine (warm-up, then the median of repeated calls, as timm's benchmark does), fits the two
numbers by relative least squares, and prints measured against predicted latency with the machine fingerprint.

    python benchmarks/device_profile.py [--threads N] [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = [
    "lcnet_050.ra2_in1k", "mobilenetv3_large_100.ra_in1k", "efficientnet_b0.ra_in1k", "resnet18.a1_in1k",
    "resnet50.a1_in1k", "convnext_tiny.in12k_ft_in1k", "deit_small_patch16_224.fb_in1k",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k", "electra-small-discriminator", "MiniLM-L12-H384-uncased",
    "distilbert-base-uncased", "bert-base-uncased", "distilhubert", "wav2vec2-base",
]


def fingerprint() -> str:
    import torch

    from zoo.hardware import cpu_name

    return f"{cpu_name()}; {torch.get_num_threads()} threads; torch {torch.__version__}; " \
           f"Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()

    import torch

    from zoo import api
    from zoo.plugins import get_plugin_manager
    from zoo.recommend.cost import DEVICE_PROFILES
    from zoo.timing import time_calls

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = tomllib.loads((ROOT / "tests" / "data" / "transformers_architectures.toml").read_text())
    registry, plugins = api.load_registry(), get_plugin_manager()
    points = []
    for name in MODELS:
        spec = registry.get(name)
        family = plugins.family(spec.family)
        arch = family.architecture(spec, task=spec.tasks[0], config=configs.get(name), device="cpu")
        inputs = {k: (torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v)
                  for k, v in arch.example_inputs.items()}
        timing = time_calls(lambda arch=arch, inputs=inputs: arch.model(**inputs), warmup=5, iters=args.iters,
                            min_seconds=1.0)
        points.append((name, spec.gflops, timing.median_ms))
        print(f"  {name:45s} {spec.gflops:7.2f} GFLOPs  {timing.median_ms:8.1f} ms", file=sys.stderr)

    # Weighted least squares of t = c + g * s with weights 1/t^2: minimises relative error.
    w = [1 / t**2 for _, _, t in points]
    sw = sum(w)
    sg = sum(wi * g for wi, (_, g, _) in zip(w, points, strict=True))
    st = sum(wi * t for wi, (_, _, t) in zip(w, points, strict=True))
    sgg = sum(wi * g * g for wi, (_, g, _) in zip(w, points, strict=True))
    sgt = sum(wi * g * t for wi, (_, g, t) in zip(w, points, strict=True))
    slope = (sw * sgt - sg * st) / (sw * sgg - sg * sg)
    overhead = (st - slope * sg) / sw
    print(f"\nmachine: {fingerprint()}")
    print(f"fit: overhead_ms = {overhead:.1f}, effective_gflops_per_s = {1000 / slope:.0f}")
    shipped = DEVICE_PROFILES["cpu"]
    print(f"shipped cpu profile: overhead_ms = {shipped.overhead_ms}, "
          f"effective_gflops_per_s = {shipped.effective_gflops_per_s}\n")
    print("| backbone | GFLOPs | measured ms | fitted ms | shipped-profile ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, g, t in points:
        shipped_ms = shipped.overhead_ms + g / shipped.effective_gflops_per_s * 1000
        print(f"| {name} | {g:.2f} | {t:.1f} | {overhead + g * slope:.1f} | {shipped_ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
