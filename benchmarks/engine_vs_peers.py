"""zoo's fine-tuning engine against the HF Trainer and a hand-written PyTorch loop, each also as an experienced user
configures it: the Trainer with `train_sampling_strategy="group_by_length"`, the hand loop with a length-bucketed
sampler.

All fine-tune the same small BERT-like model (random initial weights, built here and saved as a local folder) on
the same synthetic 4-topic text data, with the same batch size, learning rate, warm-up and cosine schedule,
precision and epochs. Reported: training samples/s (training loop only, evaluation excluded) and validation
accuracy after the last epoch, with the ratios zoo / peer; the target is against the best peer.

    python benchmarks/engine_vs_peers.py [--device cuda --precision bf16] [--epochs 2] [--repeats 2] [--write]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

from _report import machine, table, write_section

TOPICS = {
    "sport": "match goal team coach league score player season win referee",
    "tech": "software chip laptop code cloud server update battery screen app",
    "food": "recipe dinner flavor kitchen spicy bread cheese sauce oven taste",
    "travel": "flight hotel beach ticket museum island train passport tour map",
}
FILLER = "the a and of to in is it was very this that with for on at by from really quite".split()


def make_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """Sentences of 8 to 120 words: filler with a few topic words (lengths vary, as real text does)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        topic = rng.choice(list(TOPICS))
        length = int(rng.lognormvariate(3.2, 0.6)) + 8
        words = [rng.choice(FILLER) for _ in range(min(length, 120))]
        for _ in range(max(2, len(words) // 10)):
            words[rng.randrange(len(words))] = rng.choice(TOPICS[topic].split())
        rows.append((" ".join(words), topic))
    return rows


def build_backbone(folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *" ".join(TOPICS.values()).split()]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=256)
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=256).save_pretrained(folder)


def write_csv(path: Path, rows) -> None:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def warmup_steps(total: int, ratio: float) -> int:
    """The warm-up every trainer here takes: zoo's rule for a given ratio (round to whole steps)."""
    return round(ratio * total)


def run_zoo(folder: Path, train_csv: Path, val_csv: Path, args, work: Path, group_by_length: bool = True,
            reporter=None) -> tuple[float, float]:
    from zoo import api
    from zoo.engine.config import AdaptConfig

    registry = work / "registry.toml"
    registry.write_text(f'''[[backbone]]
name = "bench-bert"
family = "transformers"
source = "local-dir:{folder}"
tasks = ["text-cls"]
params_m = 1.0
gflops = 1.0
input = {{ max_tokens = 256, seq_len = 128 }}
license = "mit"
''')
    config = AdaptConfig(strategy="full", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         warmup_ratio=args.warmup_ratio, precision=args.precision, patience=0, augment="none",
                         checkpoint_every=10**9, seed=0, group_by_length=group_by_length, explain_card=0)
    # a fresh run directory each round (one run per folder)
    output = Path(tempfile.mkdtemp(prefix="zoo-run-", dir=work)) / "run"
    record = api.adapt("bench-bert", str(train_csv), val=str(val_csv), output=output, config=config,
                       device=args.device, registry_files=[registry], store=False, reporter=reporter)
    epochs = record["metrics"]["epochs"]
    seconds = sum(e["seconds"] for e in epochs)
    samples = record["data"]["sizes"]["train"] * len(epochs)
    return samples / seconds, epochs[-1]["val"]["accuracy"]


def _labels(rows):
    names = sorted(TOPICS)
    return [names.index(label) for _, label in rows], names


def run_hf_trainer(folder: Path, train_rows, val_rows, args, work: Path,
                   group_by_length: bool = False) -> tuple[float, float]:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(folder)
    train_labels, names = _labels(train_rows)
    val_labels, _ = _labels(val_rows)

    class Data(torch.utils.data.Dataset):
        def __init__(self, rows, labels):
            self.items = [dict(tokenizer(text, truncation=True), labels=label)
                          for (text, _), label in zip(rows, labels, strict=True)]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(names))
    total = math.ceil(len(train_rows) / args.batch_size) * args.epochs
    training = TrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs, learning_rate=args.lr,
        lr_scheduler_type="cosine", weight_decay=0.01, eval_strategy="no", save_strategy="no",
        warmup_steps=warmup_steps(total, args.warmup_ratio),
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        logging_strategy="no", report_to=[], use_cpu=args.device == "cpu", bf16=args.precision == "bf16",
        fp16=args.precision == "fp16", dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=training, train_dataset=Data(train_rows, train_labels),
                      processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    # With group_by_length the Trainer also length-groups the evaluation set (_get_eval_sampler), so predictions
    # come back in its order, not the data's: score them against the label_ids that come back with them.
    predictions = trainer.predict(Data(val_rows, val_labels))
    accuracy = float((np.argmax(predictions.predictions, axis=1) == predictions.label_ids).mean())
    return len(train_rows) * args.epochs / elapsed, accuracy


class BucketBatches:
    """A length-bucketed batch sampler, as one writes by hand: shuffle, sort by length inside megabatches of 50
    batches, cut into batches, shuffle the batches (a fresh order each epoch)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0) -> None:
        self.lengths, self.batch_size = lengths, batch_size
        self.rng = random.Random(seed)

    def __iter__(self):
        order = list(range(len(self.lengths)))
        self.rng.shuffle(order)
        window = self.batch_size * 50
        order = [i for start in range(0, len(order), window)
                 for i in sorted(order[start:start + window], key=self.lengths.__getitem__)]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        self.rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def run_hand_loop(folder: Path, train_rows, val_rows, args, bucketed: bool = False) -> tuple[float, float]:
    """What a person writes by hand: DataLoader with dynamic padding (and, bucketed, a length-bucketed batch
    sampler), AdamW, warm-up and cosine schedule, autocast."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = torch.device(args.device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    train_labels, names = _labels(train_rows)
    val_labels, _ = _labels(val_rows)
    encode = [dict(tokenizer(text, truncation=True), labels=label)
              for (text, _), label in zip(train_rows, train_labels, strict=True)]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(names)).to(device)

    def pad(items):
        return tokenizer.pad(items, return_tensors="pt")

    if bucketed:
        sampler = BucketBatches([len(item["input_ids"]) for item in encode], args.batch_size)
        loader = torch.utils.data.DataLoader(encode, batch_sampler=sampler, collate_fn=pad)
    else:
        loader = torch.utils.data.DataLoader(encode, batch_size=args.batch_size, shuffle=True, collate_fn=pad)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01,
                                  fused=device.type == "cuda")
    total = len(loader) * args.epochs
    warmup = warmup_steps(total, args.warmup_ratio)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup
                                                 else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    model.train()
    start = time.perf_counter()
    for _ in range(args.epochs):
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start_index in range(0, len(val_rows), 64):
            chunk = val_rows[start_index:start_index + 64]
            inputs = tokenizer([text for text, _ in chunk], padding=True, truncation=True, return_tensors="pt")
            predicted = model(**{k: v.to(device) for k, v in inputs.items()}).logits.argmax(-1).cpu()
            correct += int((predicted == torch.tensor(val_labels[start_index:start_index + 64])).sum())
    return len(train_rows) * args.epochs / elapsed, correct / len(val_rows)


# Where a training step of the engine goes, from torch.profiler over steps PROFILED_STEPS (0-based, after a warm-up;
# the epoch's evaluation is never inside): the spans the profiler names, the rest is the forward pass and Python.
PROFILED_STEPS = range(4, 14)
PARTS = {
    "data (next batch: items, padding)": ("enumerate(DataLoader)",),
    "backward": ("autograd::engine::evaluate_function",),
    "optimizer step and zero_grad": ("Optimizer.step#", "Optimizer.zero_grad#"),
    "gradient clipping": ("aten::_foreach_norm", "aten::linalg_vector_norm", "aten::_foreach_mul_"),
}


def profile_zoo(folder: Path, train_rows, val_rows, args, work: Path, *, fused: bool) -> dict[str, float]:
    """Shares of zoo's training step time, from torch.profiler, with AdamW's fused kernel on CPUs or not."""
    from torch.profiler import ProfilerActivity, profile, schedule

    import zoo.engine.trainer
    from zoo.engine.trainer import Reporter

    steps = PROFILED_STEPS
    profiler = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else []),
                       schedule=schedule(wait=steps.start, warmup=0, active=len(steps), repeat=1))

    class StepProfiler(Reporter):
        def start(self, **_) -> None:
            profiler.start()

        def step(self, **_) -> None:   # after each training batch: one profiler step is one training step
            profiler.step()

        def stop(self) -> None:
            profiler.stop()

    # one epoch long enough to hold the profiled steps and end after them, before its evaluation
    short = argparse.Namespace(**{**vars(args), "epochs": 1})
    rows = train_rows[:args.batch_size * (steps.stop + 2)]
    write_csv(work / "profile.csv", rows)
    devices = zoo.engine.trainer.FUSED_ADAMW_DEVICES
    zoo.engine.trainer.FUSED_ADAMW_DEVICES = devices if fused else tuple(d for d in devices if d != "cpu")
    try:
        run_zoo(folder, work / "profile.csv", work / "val.csv", short, work, reporter=StepProfiler())
    finally:
        zoo.engine.trainer.FUSED_ADAMW_DEVICES = devices
    events = profiler.key_averages()
    total = sum(e.cpu_time_total for e in events if e.key.startswith("ProfilerStep"))
    shares = {part: sum(e.cpu_time_total for e in events if e.key.startswith(prefixes)) / total
              for part, prefixes in PARTS.items()}
    shares["forward, loss and the rest"] = 1.0 - sum(shares.values())
    shares["ms per step"] = total / 1000 / len(steps)
    return shares


def padding(folder: Path, train_rows, args) -> dict[str, tuple[int, int]]:
    """Tokens an epoch's batches hold after dynamic padding, and their attention work (sum of batch × length²),
    for zoo's batch order grouped by the token counts it groups by, grouped by characters of the raw text (what
    it grouped by before it kept its items), and the hand loop's bucketed order; epoch 0, the same seed."""
    from transformers import AutoTokenizer

    from zoo.engine.batches import epoch_order

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = [len(tokenizer(text, truncation=True)["input_ids"]) for text, _ in train_rows]
    chars = [len(text) for text, _ in train_rows]

    def cost(batches) -> tuple[int, int]:
        longest = [max(tokens[i] for i in batch) for batch in batches]
        return (sum(len(b) * n for b, n in zip(batches, longest, strict=True)),
                sum(len(b) * n * n for b, n in zip(batches, longest, strict=True)))

    def order(lengths: list[int]) -> list[list[int]]:
        return epoch_order(len(tokens), epoch=0, seed=0, batch_size=args.batch_size, lengths=lengths)

    return {"zoo, grouped by token counts (now)": cost(order(tokens)),
            "zoo, grouped by characters (before)": cost(order(chars)),
            "hand loop, length-bucketed": cost(list(BucketBatches(tokens, args.batch_size))),
            "tokens without padding": (sum(tokens), sum(n * n for n in tokens))}


OURS = "zoo adapt (engine)"
PEERS = ("HF Trainer", "HF Trainer, group_by_length", "hand loop", "hand loop, length-bucketed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of every trainer, interleaved; each keeps its fastest round")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the profile of the engine's training step")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(tmp)
        folder = work / "bench-bert"
        build_backbone(folder)
        train_rows, val_rows = make_rows(args.train, seed=1), make_rows(args.val, seed=2)
        write_csv(work / "train.csv", train_rows)
        write_csv(work / "val.csv", val_rows)
        runs = {
            OURS: lambda: run_zoo(folder, work / "train.csv", work / "val.csv", args, work),
            "zoo adapt, length grouping off": lambda: run_zoo(folder, work / "train.csv", work / "val.csv", args,
                                                              work, group_by_length=False),
            "HF Trainer": lambda: run_hf_trainer(folder, train_rows, val_rows, args, work),
            "HF Trainer, group_by_length": lambda: run_hf_trainer(folder, train_rows, val_rows, args, work,
                                                                  group_by_length=True),
            "hand loop": lambda: run_hand_loop(folder, train_rows, val_rows, args),
            "hand loop, length-bucketed": lambda: run_hand_loop(folder, train_rows, val_rows, args, bucketed=True),
        }
        # Rounds interleave the trainers, so a busy spell of the machine slows all of them rather than one.
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for round_index in range(args.repeats):
            for name, run in runs.items():
                results[name].append(run())
                rate, accuracy = results[name][-1]
                print(f"round {round_index + 1}: {name}: {rate:.1f} samples/s, val accuracy {accuracy:.3f}",
                      file=sys.stderr)
        profiles = {fused: profile_zoo(folder, train_rows, val_rows, args, work, fused=fused)
                    for fused in (False, True)} if args.profile else {}
        padded = padding(folder, train_rows, args)
    best = {name: max(rounds) for name, rounds in results.items()}   # fastest round; accuracy is the same each time
    ours = best[OURS][0]
    best_peer = max(PEERS, key=lambda name: best[name][0])
    rows = [[name, f"{rate:.1f}", f"{accuracy:.3f}", f"{ours / rate:.2f}"] for name, (rate, accuracy) in best.items()]
    target = 1.3 if args.device.startswith("cuda") else 1.1
    ratio = ours / best[best_peer][0]
    body = "\n".join([
        "## Engine against the peers: samples/s and accuracy", "",
        f"Machine: {machine()}; device {args.device}, {args.precision}. A 4-layer, 256-wide BERT (random initial "
        f"weights), {args.train} training and {args.val} validation sentences of 8 to 120 words on 4 topics, batch "
        f"{args.batch_size}, learning rate {args.lr} with {args.warmup_ratio:.0%} warm-up and cosine schedule, "
        f"{args.epochs} epochs; the fastest of {args.repeats} interleaved rounds. Reproduce: `.venv/bin/python "
        f"benchmarks/engine_vs_peers.py --write`.", "",
        table(["trainer", "train samples/s", "val accuracy", "zoo / this"], rows), "",
        f"zoo against the best peer ({best_peer}): **{ratio:.2f}×** (target ≥ {target}× on "
        f"{'GPU' if target > 1.1 else 'CPU'}).", "",
        "Throughput counts the training loop only (no evaluation). Every trainer pads a batch only to its longest "
        "sentence (dynamic padding). Grouping by length puts sentences of similar length into a batch, so batches "
        "carry less padding: zoo groups by default (sorting inside windows of 50 batches, then shuffling the "
        "batches), the hand loop's length-bucketed sampler does the same, and the HF Trainer's `group_by_length` "
        "sorts inside megabatches of at most 50 batches and at most a quarter of the data (here "
        f"{min(args.train // (args.batch_size * 4), 50)} batches), longest first, without shuffling the batches of "
        "a megabatch. The rows without grouping compare the loops alone.", "",
        "The Trainer with `group_by_length` also length-groups the evaluation set, so `Trainer.predict` returns "
        "predictions in that order, not the data's: scored against the labels in the data's order they look like "
        "chance (0.26 in an earlier version of this script, which did so). Scored against the `label_ids` that "
        "come back with them, as here, the grouped Trainer learns the task as the others do. The Trainer steps "
        "AdamW with torch's fused kernel by default (`optim=\"adamw_torch_fused\"` with torch ≥ 2.8), where the "
        "engine took torch's default on CPUs, which steps one tensor at a time; the engine now takes the fused "
        "kernel there too (the profile below).", "",
        "### Padding: what grouping by length saves", "",
        "Tokens in one epoch's batches after dynamic padding, and the attention's work (batch × length² summed "
        "over batches), for the same 1600 sentences and seed. The engine used to group by the characters of the "
        "raw text, which orders sentences only roughly by their token counts; it now preprocesses each training "
        "example once where preprocessing draws no augmentation (text; images and audio with `--augment none`), "
        "keeps the items in memory (up to 512 MB) and groups by their token counts, as the hand loop's sampler "
        "does. With characters it trailed that hand loop at 0.90× (109.9 against 121.6 samples/s on the quiet "
        "machine, two rounds of the script's previous version).", "",
        table(["batch order", "tokens after padding", "attention work (× 10⁶)"],
              [[name, f"{n:,}", f"{work_units / 1e6:.2f}"] for name, (n, work_units) in padded.items()]),
    ])
    if profiles:
        parts = [part for part in profiles[True] if part != "ms per step"]
        profile_rows = [[part, f"{profiles[False][part]:.1%}", f"{profiles[True][part]:.1%}"] for part in parts]
        profile_rows.append(["**ms per step**", f"{profiles[False]['ms per step']:.0f}",
                             f"{profiles[True]['ms per step']:.0f}"])
        body += "\n".join([
            "", "", "### Where the engine's training step goes", "",
            f"torch.profiler over {len(PROFILED_STEPS)} training steps of zoo adapt (the same model, batch "
            f"{args.batch_size}, length-grouped), with torch's default AdamW on the CPU, which steps one tensor at a "
            "time, and with the fused kernel the engine now takes there (the HF Trainer's default since torch "
            "2.8); shares of the step's time:", "",
            table(["part of the step", "default AdamW", "fused AdamW (the engine)"], profile_rows), "",
            "The forward and backward passes are the step; everything else together is the rest. The hand loops "
            "here take torch's default AdamW, as `torch.optim.AdamW(model.parameters())` gives it.",
        ])
        passes = profiles[True]["backward"] + profiles[True]["forward, loss and the rest"]
        if ratio < target:
            body += "\n".join([
                "", "",
                f"**Why the target is not met.** zoo and the length-bucketed hand loop run the same forward and "
                f"backward passes over batches of the same padding (the table above); those passes, with the loss, "
                f"are {passes:.0%} of zoo's step. Loading the next batch, clipping and the optimizer are the other "
                f"{1 - passes:.0%}, which is all a training loop can cut: a loop ahead of this one by "
                f"{target - 1:.0%} would need the arithmetic itself to be cheaper (less padding than exact length "
                "grouping leaves, or kernels other than torch's). On a GPU, where the host-side work of a step "
                "competes with faster kernels, the comparison waits for `benchmarks/gpu_suite.sh`.",
            ])
    print(body)
    if args.write:
        write_section("engine_vs_peers", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
