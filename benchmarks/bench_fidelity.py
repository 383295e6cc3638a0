"""Does `zoo bench` measure what timm's benchmark method measures? Throughput side by side, as ratios.

timm's benchmark script (benchmark.py in pytorch-image-models) times inference like this: the model in eval mode,
a fixed input on the device, a number of warm-up steps, then a loop of steps timed as a whole with the device
synchronised at the end, reporting samples per second. This script runs that loop next to `zoo bench` on the
same models (random weights: speed does not depend on them) and batch sizes, and reports zoo / timm-method.

    python benchmarks/bench_fidelity.py [--device cuda --precision bf16] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _report import machine, table, write_section

MODELS = ["mobilenetv3_large_100.ra_in1k", "resnet18.a1_in1k", "deit_tiny_patch16_224.fb_in1k"]


def timm_method(model, batch_size: int, image_size: int, *, device: str, dtype, warmup: int, steps: int) -> float:
    """Samples/s by timm's benchmark loop: warm up, then time `steps` forward passes as a whole."""
    import torch

    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    autocast = torch.autocast(device, dtype=dtype) if dtype else torch.autocast(device, enabled=False)
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
        elapsed = time.perf_counter() - start
    return batch_size * steps / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch-sizes", default="1,8,16")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model and batch size")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()

    import torch

    from zoo import api

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    import timm

    rows = []
    for name in MODELS:
        model = timm.create_model(name.split(".")[0], pretrained=False).to(args.device).eval()
        for bs in sizes:
            # Alternate the two methods and keep each one's median over the rounds: on a shared machine the
            # load changes from minute to minute, and both should see the same conditions.
            ours, theirs = [], []
            for _ in range(args.rounds):
                result = api.bench(name, weights="random", device=args.device, precision=args.precision,
                                   batch_sizes=(bs,), warmup=5, iters=max(10, 40 // bs), min_seconds=1.0,
                                   store=False)
                ours.append(result.throughput[0]["samples_per_s"])
                size = result.input["shapes"]["pixel_values"][-1]
                theirs.append(timm_method(model, bs, size, device=args.device, dtype=dtype, warmup=5,
                                          steps=max(10, 40 // bs)))
            zoo_rate, timm_rate = statistics.median(ours), statistics.median(theirs)
            ratio = zoo_rate / timm_rate
            spread = max(theirs) / min(theirs) - 1     # how much timm's method disagrees with itself
            rows.append([name, str(bs), f"{zoo_rate:.1f}", f"{timm_rate:.1f}", f"±{100 * spread / 2:.1f}%",
                         f"{ratio:.3f}"])
            print(f"{name:32s} bs {bs:3d}  zoo {zoo_rate:8.1f}/s  timm-method {timm_rate:8.1f}/s  "
                  f"ratio {ratio:.3f}", file=sys.stderr)
    ratios = [float(r[-1]) for r in rows]
    within = sum(abs(r - 1) <= 0.05 for r in ratios)
    body = "\n".join([
        "## Bench fidelity: `zoo bench` against timm's benchmark method", "",
        f"Machine: {machine()}; device {args.device}, {args.precision}. Reproduce: "
        f"`.venv/bin/python benchmarks/bench_fidelity.py --device {args.device} --precision {args.precision} "
        "--write`.", "",
        table(["model (random weights)", "batch", "zoo bench samples/s", "timm method samples/s",
               "timm method, round to round", "zoo / timm"], rows),
        "", f"{within} of {len(ratios)} ratios are within ±5% (range {min(ratios):.3f}–{max(ratios):.3f}, geometric "
        f"mean {statistics.geometric_mean(ratios):.3f}); each "
        f"figure is the median of {args.rounds} alternating rounds. Both report total samples over total time; "
        "zoo synchronises around every call (to get latency percentiles from the same calls), timm only at the end.",
    ])
    print(body)
    if args.write:
        write_section("bench_fidelity", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
