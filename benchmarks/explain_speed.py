"""`zoo explain` on a CPU: seconds per input of integrated gradients, occlusion and SHAP, against Captum as its
tutorials call it.

Nothing downloaded; random weights (the time does not depend on them, the completeness error and so the steps
`auto` takes do). Two subjects, each a zoo classifier built as its family builds it:

- **text**: transformers `BertForSequenceClassification(BertConfig())` (12 layers, 768 wide, 109M parameters,
  2 labels) in zoo's `TransformersClassifier`, with a WordPiece tokenizer built here over a vocabulary of whole
  English words, and a text of 126 of those words: exactly 128 tokens with [CLS] and [SEP], 126 word units;
- **image**: timm `vit_base_patch16_224` (`pretrained=False`, 2 classes, 86M parameters) in zoo's
  `TimmClassifier`, a random 224×224 RGB image through timm's eval transform; 64 regions (8 × 8).

Each configuration is `zoo.explain.attribute.explain_example` on that input, explaining the predicted label:
`ig` with `steps="auto"` (zoo's default: 4, 8, 16, 32, 64 steps in turn, a rung skipped while the sum is off by
more than the change, stopping at the first whose completeness error is under 5%) and with 8, 16 and 32 steps
(`--steps`), `occlusion`, and `shap` (its default budget of 256 evaluations), all at zoo's default internal batch
of 16. The peer is what a user would write from Captum's
tutorials: `LayerIntegratedGradients(forward, model.bert.embeddings)` for the text, `IntegratedGradients(model)`
for the image, called with its defaults (`n_steps=50`, no `internal_batch_size`, so all 50 steps in one batch) and
`return_convergence_delta=True`, on the same model, input, label and baseline ([CLS] and [SEP] around pad tokens;
zeros after normalisation). `--methods` picks which of occlusion, shap and the peer run besides `ig`.

Each configuration runs `--repeats` times (occlusion, shap and the peer, which take longest, `--slow-repeats`
times) after one warm-up explanation (one step) per subject; the figure is the median wall time of the whole call
(the input's preprocessing included), beside the process's CPU time. The completeness error is
|Σ attributions − (f(x) − f(baseline))| relative to |f(x) − f(baseline)| (occlusion's need not add up: none).
"Memory" is the growth of the process's resident memory during the call, sampled every 5 ms.

Targets (issue 17): ≤ 2 s per 128-token text on a BERT-base-sized model and ≤ 5 s per 224×224 image on a ViT-B-
sized model, for the default method (`ig`, steps auto); the other rows show what each choice costs.

    python benchmarks/explain_speed.py [--write] [--quick] [--repeats 3] [--slow-repeats 1] [--threads N]
                                       [--subjects text,image] [--methods occlusion,shap,peer] [--steps auto,8,16,32]

The full run takes about 12 minutes on a quiet 2-core CPU. `--quick` is a smoke run of about a
minute (2-layer models, a 32-token text, a 64×64 image, one run of each); its figures mean nothing and --write
refuses them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _report import machine, table, write_section

from zoo.explain.attribute import AUTO_STEPS

TEXT_TARGET_S = 2.0     # per 128-token text on BERT-base
IMAGE_TARGET_S = 5.0    # per 224×224 image on ViT-B
IG_STEPS = ("auto", 8, 16, 32)
PEER_STEPS = 50         # Captum's default n_steps
PEER = "peer:"
BUSY_LOAD = 1.0         # a load average from which the report says its figures need a quiet machine
METHODS = ("ig", "occlusion", "shap", "peer")   # what --methods picks from; peer: Captum as its tutorials call it
# Whole words, each one WordPiece token: a text of N of them is N + 2 tokens.
WORDS = ("the a an and or but not very quite this that it is was be have had do did go went come came see saw "
         "good great fine poor bad awful slow fast late early price bill charge refund account order item box "
         "card bank money paid pay week day month year time again still never always please thanks help "
         "service support team email phone call reply answer problem issue error broken works working wrong "
         "right new old first last next my your our their we you they i he she").split()


@dataclass
class Subject:
    """One model and input to explain: a zoo classifier, the raw example, and the Captum peer's call."""

    name: str
    summary: str
    classifier: Any
    example: Any
    target_s: float
    peer: Callable[[int], tuple[float, float]]   # label -> (relative completeness error, evaluations)
    peer_summary: str


@dataclass
class Row:
    subject: str
    config: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    steps: int | None = None
    error: float | None = None
    evaluations: int | None = None
    memory_mb: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


class PeakMemory:
    """The most the process's resident memory grew above its size at entry, sampled every 5 ms (Linux)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:   # not Linux: no figure
            return 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self._rss_mb() - self._start)

    def __enter__(self) -> PeakMemory:
        self._start = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the subjects -----------------------------------------------------------------------------------------------


def _climbed(row) -> tuple[int, ...]:
    """The step counts steps auto tried, in order: the rungs of AUTO_STEPS up to the last whose sum is the
    integrated-gradients evaluations of the row (a rung may be skipped, so the sum tells which)."""
    import itertools

    if row.steps is None:
        return ()
    rungs = [steps for steps in AUTO_STEPS if steps < row.steps]
    for size in range(len(rungs), -1, -1):
        for tried in itertools.combinations(rungs, size):
            if sum(tried) + row.steps + 2 == row.evaluations:
                return (*tried, row.steps)
    return (row.steps,)

def text_subject(*, quick: bool) -> Subject:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    from zoo_transformers.family import TransformersClassifier

    tokens = 32 if quick else 128
    config = BertConfig(num_hidden_layers=2) if quick else BertConfig()
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS)]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True,
                                  model_max_length=config.max_position_embeddings)
    classifier = TransformersClassifier(model, tokenizer, task="text-cls")
    rng = np.random.default_rng(0)
    text = " ".join(rng.choice(WORDS, tokens - 2))
    count = len(tokenizer(text)["input_ids"])
    if count != tokens:
        raise SystemExit(f"the text is {count} tokens, not {tokens}: a word of WORDS is not one token")

    def peer(label: int) -> tuple[float, float]:
        from captum.attr import LayerIntegratedGradients

        batch = classifier.collate([classifier.preprocess(text)])
        ids = batch["input_ids"]
        special = torch.tensor([int(t) in tokenizer.all_special_ids for t in ids[0].tolist()])[None]
        reference = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))

        def forward(input_ids, token_type_ids, attention_mask):
            return model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).logits

        explainer = LayerIntegratedGradients(forward, model.bert.embeddings)
        others = (batch["token_type_ids"], batch["attention_mask"])
        attributions, delta = explainer.attribute(inputs=ids, baselines=reference, target=label,
                                                  additional_forward_args=others, return_convergence_delta=True)
        with torch.no_grad():
            change = float(forward(ids, *others)[0, label] - forward(reference, *others)[0, label])
        return abs(float(delta)) / max(abs(change), 1e-4), PEER_STEPS

    params = sum(p.numel() for p in model.parameters()) / 1e6
    summary = (f"BERT{'' if quick else '-base'} (`BertConfig()`{' with 2 layers' if quick else ''}: "
               f"{config.num_hidden_layers} layers, {config.hidden_size} wide, {params:.0f}M parameters, 2 labels), "
               f"a {tokens}-token text of {tokens - 2} words")
    return Subject("text" if quick else "text, BERT-base", summary, classifier, text,
                   TEXT_TARGET_S, peer, "Captum `LayerIntegratedGradients(forward, model.bert.embeddings)`")


def image_subject(*, quick: bool) -> Subject:
    import timm
    import torch
    from PIL import Image
    from zoo_timm.family import TimmClassifier

    size = 64 if quick else 224
    # The quick model is built for its small input, as zoo builds a model for `--image-size`.
    options = ({"depth": 2, "img_size": size, "pretrained_cfg_overlay": {"input_size": (3, size, size),
                                                                          "crop_pct": 1.0}} if quick else {})
    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=2, **options).eval()
    classifier = TimmClassifier(model, ["cat", "dog"])
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)

    def peer(label: int) -> tuple[float, float]:
        from captum.attr import IntegratedGradients

        inputs = classifier.collate([classifier.preprocess(image)])["pixel_values"]
        attributions, delta = IntegratedGradients(model).attribute(inputs, target=label,
                                                                   return_convergence_delta=True)
        with torch.no_grad():
            change = float(model(inputs)[0, label] - model(torch.zeros_like(inputs))[0, label])
        return abs(float(delta)) / max(abs(change), 1e-4), PEER_STEPS

    params = sum(p.numel() for p in model.parameters()) / 1e6
    summary = (f"timm `vit_base_patch16_224`{' with 2 blocks' if quick else ''} ({params:.0f}M parameters, "
               f"2 classes), a random {size}×{size} image, 64 regions")
    return Subject("image" if quick else "image, ViT-B/16", summary, classifier, image, IMAGE_TARGET_S, peer,
                   "Captum `IntegratedGradients(model)`")


# --- measuring --------------------------------------------------------------------------------------------------

def measure(subject: Subject, *, ig_steps: list[int | str], methods: list[str], repeats: int,
            slow_repeats: int) -> list[Row]:
    from zoo.explain.attribute import explain_example

    def explain(method: str, steps: int | str = "auto"):
        return explain_example(subject.classifier, subject.example, name=subject.name, method=method,
                               steps=steps)[0]

    warm = explain("ig", 1)   # the first call pays for allocations and kernel choice
    label = subject.classifier.labels.index(warm.label)
    configs: list[tuple[str, Callable[[], tuple[int | None, float | None, int]], int]] = []
    if "ig" in methods:
        configs += [(f"ig, steps {steps}", _zoo(explain, "ig", steps), repeats) for steps in ig_steps]
    if "occlusion" in methods:
        configs.append(("occlusion", _zoo(explain, "occlusion"), slow_repeats))
    if "shap" in methods:
        configs.append(("shap (256 evaluations)", _zoo(explain, "shap"), slow_repeats))
    if "peer" in methods:
        configs.append((f"{PEER} {subject.peer_summary}, n_steps={PEER_STEPS}", _peer(subject.peer, label),
                        slow_repeats))
    rows = []
    for config, call, count in configs:
        row = Row(subject.name, config)
        for _ in range(count):
            with PeakMemory() as memory:
                started, started_cpu = time.perf_counter(), time.process_time()
                row.steps, row.error, row.evaluations = call()
                row.seconds.append(time.perf_counter() - started)
                row.cpu_seconds.append(time.process_time() - started_cpu)
            row.memory_mb.append(memory.peak_mb)
        error = "-" if row.error is None else f"{100 * row.error:.2f}%"
        print(f"{subject.name} | {config}: {row.median_s:.2f} s (CPU {statistics.median(row.cpu_seconds):.2f} s), "
              f"steps {row.steps}, error {error}, {row.evaluations} evaluations, {max(row.memory_mb):.0f} MB",
              file=sys.stderr)
        rows.append(row)
    return rows


def _zoo(explain, method: str, steps: int | str = "auto"):
    def call() -> tuple[int | None, float | None, int]:
        found = explain(method, steps)
        return found.steps, found.completeness_error, found.evaluations
    return call


def _peer(peer, label: int):
    def call() -> tuple[int | None, float | None, int]:
        error, evaluations = peer(label)
        return PEER_STEPS, error, int(evaluations)
    return call


# --- reporting --------------------------------------------------------------------------------------------------

def report(subjects: list[Subject], rows: list[Row], *, load: float, threads: int, repeats: int,
           slow_repeats: int, command: str) -> str:
    lines = ["## `zoo explain`: seconds per input on a CPU", ""]
    lines += [f"- **{subject.name}**: {subject.summary}." for subject in subjects]
    runs = f"{repeats} run{'s' * (repeats != 1)}"
    lines += ["", f"`zoo.explain.attribute.explain_example`, internal batch 16, against Captum as its tutorials "
              f"call it (all {PEER_STEPS} steps in one batch); median of {runs} (occlusion, shap and the peer: "
              f"{slow_repeats}) after one warm-up explanation. Wall time of the whole call; CPU time of the "
              f"process, all threads (on a quiet machine the wall time is about the CPU time divided by the "
              f"threads; on a busy one the wall time grows with the load). Memory: the growth of resident memory "
              f"during the call, a lower bound (memory freed by earlier calls is reused). {machine()}; torch "
              f"threads {threads}; load average {load:.1f} when it started. "
              f"Reproduce: `{command}`.", ""]
    if load >= BUSY_LOAD:
        lines += [f"**Measured on a busy machine** (load average {load:.1f} on {os.cpu_count()} cores): compute "
                  f"threads wait on each other at every operator, so every figure here overstates a quiet "
                  f"machine's, batch-1 forward passes most; re-measure on a quiet machine before reading them "
                  f"against the targets.", ""]
    body = []
    for subject in subjects:
        mine = [row for row in rows if row.subject == subject.name]
        default = next(row for row in mine if row.config == "ig, steps auto")
        for row in mine:
            met = "met" if row.median_s <= subject.target_s else "not met"
            ratio = ("" if row is default else f"{row.median_s / default.median_s:.2f}× zoo's default")
            body.append([subject.name, row.config, f"{row.median_s:.2f} s",
                         f"{statistics.median(row.cpu_seconds):.2f} s", str(row.steps or "-"),
                         "-" if row.error is None else f"{100 * row.error:.2f}%", str(row.evaluations),
                         f"{max(row.memory_mb):.0f} MB", f"≤ {subject.target_s:.0f} s: {met}", ratio])
    lines.append(table(["subject", "configuration", "s per input", "CPU s", "steps", "completeness error",
                        "evaluations", "memory", "target", "time against"], body))
    verdicts = []
    for subject in subjects:
        mine = [row for row in rows if row.subject == subject.name]
        default = next(row for row in mine if row.config == "ig, steps auto")
        short = [str(steps) for steps in _climbed(default) if steps != default.steps]
        tried = f", after {' and '.join(short)} fell short" if short else ""
        verdict = (f"{subject.name}: zoo's default (ig, steps auto: {default.steps} steps{tried}) "
                   f"{default.median_s:.2f} s, target ≤ {subject.target_s:.0f} s "
                   f"{'met' if default.median_s <= subject.target_s else 'not met'}")
        peer = next((row for row in mine if row.config.startswith(PEER)), None)
        if peer is not None:
            verdict += f"; the Captum peer {peer.median_s:.2f} s, {peer.median_s / default.median_s:.1f}× as long"
        verdicts.append(verdict)
    lines += ["", ". ".join(verdicts) + "."]
    return "\n".join(lines)


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each ig configuration")
    parser.add_argument("--slow-repeats", type=int, default=1, help="runs of occlusion, shap and the Captum peer")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: the cores)")
    parser.add_argument("--subjects", default="text,image", help="comma-separated: text, image")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    parser.add_argument("--steps", default=",".join(map(str, IG_STEPS)),
                        help="integrated gradients' steps to time, comma-separated; auto is always timed")
    parser.add_argument("--quick", action="store_true", help="a smoke run on tiny models, one run of each; "
                                                             "--write refuses it")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()
    if args.write and args.quick:
        parser.error("--write refuses --quick: its figures mean nothing")
    if args.quick:
        args.repeats = args.slow_repeats = 1
    builders = {"text": text_subject, "image": image_subject}
    names = _choices(parser, "--subjects", args.subjects, tuple(builders))
    methods = _choices(parser, "--methods", args.methods, METHODS)
    try:
        ig_steps = ["auto"] + [int(s) for s in args.steps.split(",") if s.strip() not in ("", "auto")]
    except ValueError:
        parser.error(f"--steps {args.steps!r}: give whole numbers (and auto), comma-separated")
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    subjects, rows = [], []
    for name in names:
        subject = builders[name](quick=args.quick)
        subjects.append(subject)
        rows += measure(subject, ig_steps=ig_steps, methods=["ig", *methods], repeats=args.repeats,
                        slow_repeats=args.slow_repeats)
    command = " ".join(["python benchmarks/explain_speed.py", *(a for a in sys.argv[1:] if a != "--write"),
                        "--write"])
    body = report(subjects, rows, load=load, threads=args.threads, repeats=args.repeats,
                  slow_repeats=args.slow_repeats, command=command)
    print(body)
    if args.write:
        write_section("explain_speed", body)
    return 0


def _choices(parser: argparse.ArgumentParser, option: str, value: str, known: tuple[str, ...]) -> list[str]:
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    if not chosen or any(name not in known for name in chosen):
        parser.error(f"{option} {value!r}: choose from {', '.join(known)}, comma-separated")
    return chosen


if __name__ == "__main__":
    sys.exit(main())
