"""How the cost of `zoo adapt`, `zoo recommend --data` and the transferability estimators grows with their size.

Three curves, each timed at several sizes and fitted by least squares on log time against log size (the exponent:
1 is linear, the goal):

- adapt: one epoch of full fine-tuning of a tiny BERT (2 layers, 128 wide, random initial weights, built here and
  loaded through a registry entry with a local-dir source) on 1k, 4k and 16k synthetic sentences of 8 to 40 words,
  batch 32; the training loop's seconds (as the run records them) and the whole `zoo.api.adapt` call (reading and
  tokenising the data, building the model, evaluating 200 validation sentences, writing the run directory).
- recommend --data: `zoo.api.recommend_with_data` with its defaults (30 bootstrap subsamples, successive halving)
  against the number of candidates (2, 4, 8 tiny BERTs of that shape, each with its own random weights) at a sample
  of 1000, and against the sample size (250, 1000, 4000) with 4 candidates; each call with an empty feature cache,
  split into feature extraction and the rest (estimators on the sample and subsamples, combination).
- estimators: each one of :mod:`zoo.recommend.estimators` on random normal features with 10 classes, against N
  (D = 768) and against D (N = 2000); median of ``--repeats``, the estimators interleaved.

Plots (PNG, matplotlib) go to docs/img/scaling-*.png with ``--write``, which also writes the section of
docs/performance.md; ``--quick`` is a smoke run at small sizes. ``--only`` measures some of the curves, and
``--results FILE`` keeps every measured curve in a JSON file, so the curves can be measured one run at a time and
reported together. On a machine with other work on it, set ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` (see
the note in the doc).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/scaling.py [--quick]
        [--only adapt,recommend,estimators] [--results FILE] [--device cpu] [--precision fp32] [--write]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from _report import machine, table, transformers_local_entry, write_section

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "img"
TOPICS = {
    "sport": "match goal team coach league score player season win referee",
    "tech": "software chip laptop code cloud server update battery screen app",
    "food": "recipe dinner flavor kitchen spicy bread cheese sauce oven taste",
    "travel": "flight hotel beach ticket museum island train passport tour map",
}
FILLER = "the a and of to in is it was very this that with for on at by from really quite".split()
VAL_ROWS = 200
HIDDEN, LAYERS = 128, 2


@dataclass
class Curve:
    """One measured curve: time against size, and its fitted exponent."""

    label: str
    sizes: list[int]
    seconds: list[float]
    extra: dict[str, list[float]] = field(default_factory=dict)   # other columns of the table, per size

    @property
    def exponent(self) -> float:
        return fitted_exponent(self.sizes, self.seconds)


def fitted_exponent(sizes, seconds) -> float:
    """The slope of the least-squares line through (log size, log seconds): time ∝ size^slope."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


# --- data and backbones -----------------------------------------------------------------------------------------


def make_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """Sentences of 8 to 40 words: filler with a few topic words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        topic = rng.choice(list(TOPICS))
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 40))]
        for _ in range(max(2, len(words) // 8)):
            words[rng.randrange(len(words))] = rng.choice(TOPICS[topic].split())
        rows.append((" ".join(words), topic))
    return rows


def write_csv(path: Path, rows) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def build_backbone(folder: Path, seed: int) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *" ".join(TOPICS.values()).split()]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                        intermediate_size=4 * HIDDEN, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=128).save_pretrained(folder)


def registry_with(work: Path, count: int) -> tuple[Path, list[str]]:
    """A registry file of ``count`` tiny BERTs, each a local folder with its own random weights."""
    entries, names = [], []
    for i in range(count):
        name = f"scaling-bert-{i}"
        folder = work / name
        if not folder.exists():
            build_backbone(folder, seed=i)
        names.append(name)
        entries.append(transformers_local_entry(name, folder, task="text-cls", params_m=0.5,
                                                input_table="max_tokens = 64, seq_len = 32"))
    path = work / f"registry-{count}.toml"
    path.write_text("\n".join(entries))
    return path, names


# --- the three curves -------------------------------------------------------------------------------------------


def adapt_curve(sizes: list[int], work: Path, args) -> list[Curve]:
    from zoo import api
    from zoo.engine.config import AdaptConfig

    registry, (name,) = registry_with(work, 1)
    val = write_csv(work / "adapt-val.csv", make_rows(VAL_ROWS, seed=2))
    config = AdaptConfig(strategy="full", epochs=1, batch_size=32, lr=3e-4, precision=args.precision, patience=0,
                         augment="none", checkpoint_every=10**9, seed=0)

    def one(size: int) -> tuple[float, float]:
        train = write_csv(work / f"adapt-train-{size}.csv", make_rows(size, seed=size))
        output = Path(tempfile.mkdtemp(dir=work, prefix=f"adapt-run-{size}-")) / "run"
        started = time.perf_counter()
        record = api.adapt(name, str(train), val=str(val), output=output, config=config,
                           device=args.device, registry_files=[registry], store=False)
        return record["metrics"]["epochs"][0]["seconds"], time.perf_counter() - started

    one(min(sizes))    # warm-up: first imports and first kernels
    epoch, whole = [], []
    for size in sizes:
        loop, total = one(size)
        epoch.append(loop)
        whole.append(total)
        print(f"adapt {size}: epoch {loop:.1f} s, whole call {total:.1f} s", file=sys.stderr)
    return [Curve("training loop, one epoch", sizes, epoch), Curve("whole `zoo.api.adapt` call", sizes, whole)]


def recommend_curves(candidate_counts: list[int], sample_sizes: list[int], fixed_sample: int, fixed_candidates: int,
                     work: Path, args) -> list[Curve]:
    from zoo import api

    pool = write_csv(work / "recommend-data.csv", make_rows(int(max(sample_sizes) * 1.1) + 10, seed=3))

    def one(count: int, sample: int) -> tuple[float, float]:
        registry, names = registry_with(work, count)
        # An empty feature cache for every call: each one extracts its features, as a first call does.
        os.environ["ZOO_FEATURE_CACHE"] = tempfile.mkdtemp(dir=work, prefix="features-")
        started = time.perf_counter()
        result = api.recommend_with_data("text-cls", data=str(pool), registry_files=[registry], candidates=names,
                                         sample=sample, device=args.device)
        elapsed = time.perf_counter() - started
        return elapsed, sum(c.seconds for c in result.candidates)

    one(2, min(sample_sizes))   # warm-up
    curves = []
    for label, points in (("against candidates", [(c, fixed_sample) for c in candidate_counts]),
                          ("against sample size", [(fixed_candidates, s) for s in sample_sizes])):
        sizes, total, features = [], [], []
        for count, sample in points:
            elapsed, extracting = one(count, sample)
            sizes.append(count if label == "against candidates" else sample)
            total.append(elapsed)
            features.append(extracting)
            print(f"recommend {count} candidates, sample {sample}: {elapsed:.1f} s "
                  f"(features {extracting:.1f} s)", file=sys.stderr)
        curves.append(Curve(label, sizes, total, {"features": features,
                                                  "rest": [t - f for t, f in zip(total, features, strict=True)]}))
    return curves


def estimator_curves(ns: list[int], ds: list[int], fixed_d: int, fixed_n: int, repeats: int) -> list[Curve]:
    from zoo.recommend.estimators import ESTIMATOR_LABELS, ESTIMATORS

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(200, 32)), rng.integers(0, 10, 200)
    for estimator in ESTIMATORS.values():
        estimator(features, labels)                     # warm-up: first imports and first calls

    def timed(points: list[tuple[int, int]]) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
        for n, d in points:
            features, labels = rng.normal(size=(n, d)), rng.integers(0, 10, n)
            runs: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
            for _ in range(repeats):                    # interleaved, so a burst of load hits all of them
                for name, estimator in ESTIMATORS.items():
                    started = time.perf_counter()
                    estimator(features, labels)
                    runs[name].append(time.perf_counter() - started)
            for name in ESTIMATORS:
                found[name].append(statistics.median(runs[name]))
            print(f"estimators N={n} D={d}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in found.items()),
                  file=sys.stderr)
        return found

    by_n = timed([(n, fixed_d) for n in ns])
    by_d = timed([(fixed_n, d) for d in ds])
    return ([Curve(f"{ESTIMATOR_LABELS[k]} against N", ns, v) for k, v in by_n.items()]
            + [Curve(f"{ESTIMATOR_LABELS[k]} against D", ds, v) for k, v in by_d.items()])


# --- report -----------------------------------------------------------------------------------------------------


def plot(curves: list[Curve], path: Path, *, title: str, xlabel: str, panels: list[list[Curve]] | None = None) -> None:
    """Log-log plot of each curve with its fitted exponent, and a dashed slope-1 line through its first point."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = panels or [curves]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, group in zip(axes[0], panels, strict=True):
        for curve in group:
            line, = axis.plot(curve.sizes, curve.seconds, "o-", label=f"{curve.label} (exponent {curve.exponent:.2f})")
            first = curve.sizes[0]
            axis.plot(curve.sizes, [curve.seconds[0] * s / first for s in curve.sizes], "--", color=line.get_color(),
                      alpha=0.4)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(group[0].sizes, [f"{s:g}" for s in group[0].sizes])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel(xlabel if len(panels) == 1 else group[0].label.split("against ")[-1])
        axis.set_ylabel("seconds")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"{title} (dashed: linear from the first point)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def curve_table(curves: list[Curve], size_label: str) -> str:
    header = [size_label, *(c.label for c in curves)]
    rows = [[f"{size:,}", *(seconds(c.seconds[i]) for c in curves)] for i, size in enumerate(curves[0].sizes)]
    rows.append(["**fitted exponent**", *(f"**{c.exponent:.2f}**" for c in curves)])
    return table(header, rows)


def split_table(curve: Curve, size_label: str) -> str:
    """Total, feature extraction and the rest of a recommend curve, with an exponent for each."""
    columns = [curve.seconds, curve.extra["features"], curve.extra["rest"]]
    rows = [[f"{size:,}", *(seconds(column[i]) for column in columns)] for i, size in enumerate(curve.sizes)]
    rows.append(["**fitted exponent**", *(f"**{fitted_exponent(curve.sizes, column):.2f}**" for column in columns)])
    return table([size_label, "total", "features", "rest"], rows)


ADAPT_WHY = (
    "An epoch is one pass of batches of the same size and the same length distribution, so its time is linear in "
    "the number of examples; the whole call adds a fixed part (building the model, evaluating the same 200 "
    "validation sentences, writing the run directory), which pulls its exponent below 1 at small sizes.")
RECOMMEND_WHY = (
    "Each candidate costs its own feature extraction and estimator calls, so time grows in proportion to the "
    "candidates; reading the data and the combination are paid once, which keeps the exponent below 1, and above 5 "
    "candidates successive halving scores all of them on half the sample and only the better half on all of it. "
    "Against the sample size, feature extraction is linear; the rest is the four estimators on the sample and on 30 "
    "subsamples of 80% of it (for the intervals), for every candidate. LogME, H-score and SFDA grow at most "
    "linearly in N; k-NN's leave-one-out vote compares every pair of examples (N²·D, and an N × N partial sort), "
    "so it is the one quadratic term, and it is what steepens the rest at the largest sample. That is the method "
    "(an exact leave-one-out neighbour vote), not an accident of the code.")
ESTIMATORS_WHY = (
    "Against N: LogME, H-score and SFDA form a D × D matrix from the N examples (N·D²) and factor it (D³); at "
    "D = 768 and these N the factorisation and, for LogME, its fixed-point iterations on the min(N, D) eigenvalues "
    "weigh most, so they grow slower than N (LogME uses the N × N Gram matrix while N < D, hence its step from 500 "
    "to 1000). k-NN is N²·D: quadratic in N by its nature (every example's neighbours among all the others), the "
    "one curve clearly above 1, and not one to fix without changing the score. Against D: k-NN's pairwise "
    "products are linear in D beside its fixed N² partial sort; H-score and SFDA grow as D² to D³ (a covariance and "
    "its Cholesky factor or solve), as any method that whitens the features must; LogME's time is mostly its "
    "iterations at small D and switches to the N × N Gram matrix once D > N, after which it is linear in D.")
THREADS_NOTE = (
    "On a busy machine, run it with one thread (`OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`): torch's and "
    "numpy's thread pools spin while they wait, and with other work on the cores they wait most of the time. At a "
    "load average of 12 on 2 cores, a training step of the tiny BERT below took 0.8 to 2.8 s with 2 threads and "
    "0.15 s with one; an eigendecomposition of a 128 × 128 matrix took 0.54 s instead of milliseconds, and the "
    "estimators of one recommend call on 200 examples took 92 s with numpy's threads and 9.9 s with one.")


def last_step(curve: Curve) -> str:
    """How much the features and the rest grew between the two largest samples, and the exponent of that step."""
    (small, large), parts = curve.sizes[-2:], []
    for name in ("features", "rest"):
        before, after = curve.extra[name][-2:]
        exponent = math.log(after / before) / math.log(large / small)
        parts.append(f"{name} {after / before:.1f}× (exponent {exponent:.2f})")
    return f" From {small:,} to {large:,} examples: " + ", ".join(parts) + "."


def render(parts: dict[str, list[Curve]], header: str) -> str:
    lines = [header]
    if "adapt" in parts:
        curves = parts["adapt"]
        lines += ["", "### `zoo adapt`: time per epoch against the dataset size", "",
                  f"A tiny BERT ({LAYERS} layers, {HIDDEN} wide, random initial weights, a local folder behind a "
                  "registry entry), full fine-tuning, one epoch, batch 32, length grouping on; synthetic sentences "
                  f"of 8 to 40 words on 4 topics, {VAL_ROWS} validation sentences at every size. The training loop "
                  "is the epoch's seconds as the run records them; the whole call adds reading and tokenising the "
                  "data, building the model, evaluation and writing the run.", "",
                  curve_table(curves, "training examples"), "", ADAPT_WHY, "",
                  "![adapt time against dataset size](img/scaling-adapt.png)"]
    if "recommend" in parts:
        by_count, by_sample = parts["recommend"]
        lines += ["", "### `zoo recommend --data`: time against candidates and sample size", "",
                  f"Tiny BERTs of the adapt shape ({HIDDEN}-dimensional features), each with its own random "
                  "weights; `zoo.api.recommend_with_data` with its defaults (30 bootstrap subsamples, successive "
                  "halving above 5 candidates) and an empty feature cache for every call. Features: the "
                  "candidates' feature extraction (loading each backbone included); the rest: loading the data, "
                  "the estimators on the sample and its subsamples, the combination.", "",
                  split_table(by_count, f"candidates (sample {by_count.extra['fixed'][0]:,})"), "",
                  split_table(by_sample, f"sample size ({by_sample.extra['fixed'][0]:g} candidates)"), "",
                  RECOMMEND_WHY + last_step(by_sample), "",
                  "![recommend --data time against candidates and sample size](img/scaling-recommend.png)"]
    if "estimators" in parts:
        curves = parts["estimators"]
        half = len(curves) // 2
        by_n, by_d = curves[:half], curves[half:]
        fixed_d, fixed_n = by_n[0].extra["fixed"][0], by_d[0].extra["fixed"][0]
        lines += ["", "### Transferability estimators against N and D", "",
                  "Random normal features, 10 classes; the median of several timings, the estimators "
                  "interleaved.", "",
                  curve_table([Curve(c.label.split(" against ")[0], c.sizes, c.seconds) for c in by_n],
                              f"N (D = {fixed_d:g})"), "",
                  curve_table([Curve(c.label.split(" against ")[0], c.sizes, c.seconds) for c in by_d],
                              f"D (N = {fixed_n:g})"), "", ESTIMATORS_WHY, "",
                  "![estimator time against N and D](img/scaling-estimators.png)"]
    return "\n".join(lines)


def draw(parts: dict[str, list[Curve]], images: Path) -> None:
    if "adapt" in parts:
        plot(parts["adapt"], images / "scaling-adapt.png", title="zoo adapt, one epoch, full fine-tuning",
             xlabel="training examples")
    if "recommend" in parts:
        plot(parts["recommend"], images / "scaling-recommend.png", title="zoo recommend --data", xlabel="",
             panels=[[c] for c in parts["recommend"]])
    if "estimators" in parts:
        curves = parts["estimators"]
        half = len(curves) // 2
        plot(curves, images / "scaling-estimators.png", title="transferability estimators", xlabel="",
             panels=[curves[:half], curves[half:]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--only", default="adapt,recommend,estimators",
                        help="comma-separated curves to measure: adapt, recommend, estimators (none: only report those "
                             "in --results)")
    parser.add_argument("--results", type=Path,
                        help="a JSON file of measured curves: those measured now are added to it, and those in it "
                             "that are not measured now are reported from it (to measure the curves one at a time)")
    parser.add_argument("--repeats", type=int, default=3, help="estimator timings per size (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures")
    parser.add_argument("--write", action="store_true",
                        help="write the plots into docs/img and the section into docs/performance.md")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))      # empty: report what --results holds
    unknown = only - {"adapt", "recommend", "estimators"}
    if unknown:
        parser.error(f"--only {','.join(sorted(unknown))}: use adapt, recommend or estimators")
    if args.quick:
        adapt_sizes, counts, samples, ns, ds = [100, 200, 400], [2, 4], [100, 200, 400], [250, 500, 1000], \
            [32, 64, 128]
        fixed_sample, fixed_candidates = 200, 2
    else:
        adapt_sizes, counts, samples, ns, ds = [1000, 4000, 16000], [2, 4, 8], [250, 1000, 4000], \
            [500, 1000, 2000, 4000], [64, 128, 256, 512, 1024]
        fixed_sample, fixed_candidates = 1000, 4
    fixed_n, fixed_d = 2000, 768
    load = os.getloadavg()[0]
    images = IMAGES if args.write else Path(tempfile.mkdtemp(prefix="zoo-scaling-plots-"))
    images.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    saved = json.loads(args.results.read_text()) if args.results and args.results.exists() else {}
    parts: dict[str, list[Curve]] = {}
    with tempfile.TemporaryDirectory(prefix="zoo-scaling-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        saved_cache = os.environ.get("ZOO_FEATURE_CACHE")
        if "estimators" in only:
            parts["estimators"] = estimator_curves(ns, ds, fixed_d=fixed_d, fixed_n=fixed_n, repeats=args.repeats)
            for curve in parts["estimators"]:
                curve.extra["fixed"] = [fixed_d if curve.label.endswith(" N") else fixed_n]
        if "recommend" in only:
            by_count, by_sample = recommend_curves(counts, samples, fixed_sample, fixed_candidates, work, args)
            by_count.extra["fixed"], by_sample.extra["fixed"] = [fixed_sample], [fixed_candidates]
            parts["recommend"] = [by_count, by_sample]
            if saved_cache is None:
                os.environ.pop("ZOO_FEATURE_CACHE", None)
            else:
                os.environ["ZOO_FEATURE_CACHE"] = saved_cache
        if "adapt" in only:
            parts["adapt"] = adapt_curve(adapt_sizes, work, args)
    # The thread settings the figures were taken with, so the reproduce commands carry them.
    prefix = "".join(f"{name}={os.environ[name]} " for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                     if name in os.environ)
    measured = {name: {"curves": [asdict(c) for c in curves], "machine": machine(), "load": round(load, 1),
                       "command": f"{prefix}python benchmarks/scaling.py{' --quick' if args.quick else ''}"
                                  f" --only {name}"}
                for name, curves in parts.items()}
    saved.update(measured)
    if args.results:
        args.results.write_text(json.dumps(saved, indent=1))
    every = {name: [Curve(**c) for c in saved[name]["curves"]] for name in ("adapt", "recommend", "estimators")
             if name in saved}
    draw(every, images)
    runs = "; ".join(f"{name}: `{entry['command']}`, load average {entry['load']} when it started"
                     for name, entry in saved.items())
    threads = f"thread settings `{prefix.strip()}`" if prefix else "threads: as many as cores"
    header = "\n".join([
        "## How cost grows: adapt, `recommend --data` and the estimators against their size", "",
        f"{machine()}; device {args.device}, {args.precision}; {threads}. Each "
        "curve is fitted by least squares on log time against log size; the exponent is the slope (1: linear, the "
        "goal; the dashed lines in the plots are linear from the first point). The machine had other work on it "
        f"(the load average when each curve started is given), so single points are noisy. Measured: {runs}. "
        f"Reproduce all: `{prefix}python benchmarks/scaling.py{' --quick' if args.quick else ''} --write`.", "",
        THREADS_NOTE])
    body = render(every, header)
    print(body)
    print(f"plots in {images}; {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    if args.write:
        write_section("scaling", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
