"""Do `zoo adapt`'s defaults reach the strong simple baselines? Images, text and audio, three seeds each.

Real pretrained weights cannot be downloaded everywhere this must run, so the script builds one task per modality
where pretrained features matter, and pretrains a small encoder for it on a related source task:

- **image**: timm's `test_resnet` at 32×32, pretrained on rendered letters and symbols; the target is rendered
  digits (10 classes) from a small training set;
- **text**: a 2-layer, 128-wide BERT with a word-level tokenizer, pretrained to tell 20 synthetic topics (made-up
  words, 24 to a topic, among English filler); the target has 10 classes, each the union of two of those topics,
  and its few training sentences hold only part of each class's 48 topic words: a pretrained encoder knows the
  rest from its source task;
- **audio**: a 2-layer, 64-wide wav2vec2, pretrained to name 16 synthetic notes (varied timbre, pitch jitter,
  onset, noise); the target is 10 two-note chords of those notes.

For each task and seed (the seed draws the target's data and seeds every trainer), on the held-out test split:

1. `zoo adapt` with its defaults for `--strategy linear`, `full`, `lora` and `auto` (`zoo.api.adapt`), and
   `--strategy linear` on the same encoder with random weights (saved as a second registry entry);
2. scikit-learn's `LogisticRegression` on the best pooled frozen features of the same pretrained encoder: the
   pooling (text: the first token, the mean over tokens, the mean over tokens and layers, the pooler output; audio:
   the mean over frames, the mean over frames and layers; image: timm's pooled features) and `C` chosen by
   validation accuracy, standardised, fitted to convergence. The same probe on the encoder with random weights
   shows how much the pretraining gives;
3. a minimal hand-written PyTorch loop (AdamW, warm-up and cosine decay, last epoch) with the learning rate, batch
   size, warm-up and epochs `zoo adapt --strategy full` chose;
4. the Hugging Face Trainer with its own defaults (learning rate 5e-5, batch 8, linear decay, no warm-up) for the
   epochs `zoo adapt --strategy full` chose; the timm model is wrapped to return its loss.

Targets checked (test accuracy, mean over seeds): `linear` ≥ the logistic-regression probe − 1 point, on the
pretrained encoder and on the random one; `auto` ≥
the better of `linear` and `full` − 1 point; `full` ≥ the HF Trainer at equal epochs.

    python benchmarks/quality.py [--write] [--seeds 3] [--device cpu] [--modalities image,text,audio] [--threads 1]
                                 [--quick]

It took 32 minutes on a 2-core CPU shared with other work, on one torch thread (`--threads`, see THREADS below):
the wall time depends on that load, the scores do not. `--quick` is a smoke run of about 2 minutes, with 2 epochs
instead of the defaults; its figures mean nothing and --write refuses them.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _report import machine, table, timm_local_entry, transformers_local_entry, write_section
from surrogate_image import ARCH, DIGITS, LOWER, MEAN, SIZE, STD, SYMBOLS, UPPER, Images, render, write_folder

MODALITIES = ("image", "text", "audio")
STRATEGIES = ("linear", "full", "lora", "auto")
C_GRID = tuple(10.0 ** k for k in range(-4, 3))       # scikit-learn's inverse L2 strength, 1e-4 .. 1e2
QUICK_EPOCHS = 2                                      # --quick only: the defaults' epochs would take too long
POINT = 0.01                                          # one percentage point of accuracy
# Torch threads. One by default: these encoders are so small that a second thread gains little, and on a CPU
# shared with other work the threads' barrier makes every small operation wait for a descheduled thread (3 to 30
# times slower, measured while writing this); figures do not depend on it, only the wall time.
THREADS = 1


# --- what is measured -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Score:
    accuracy: float
    macro_f1: float


@dataclass
class Outcome:
    """One method on one seed: its test score (None when it could not run), its wall time, and a note (the pooling
    the probe chose, the strategy auto kept, or why there is no score)."""

    score: Score | None
    seconds: float
    note: str = ""
    record: dict[str, Any] | None = field(default=None, repr=False)    # zoo's run record, for zoo's methods


@dataclass(frozen=True)
class FullChoice:
    """What `zoo adapt --strategy full` chose by default: the peers train with the same values."""

    epochs: int
    lr: float
    batch_size: int
    warmup_ratio: float


@dataclass
class Target:
    """One seed's target task: files for `zoo adapt`, and the same examples in memory for the baselines."""

    paths: dict[str, str]               # split -> what zoo adapt reads (a class folder or a CSV)
    inputs: dict[str, list[Any]]        # split -> pixels, texts or waveforms, as written
    labels: dict[str, np.ndarray]       # split -> class index
    num_classes: int


@dataclass
class Peer:
    """A task as the hand loop and the HF Trainer see it: model inputs by name, with their labels."""

    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    test_labels: np.ndarray
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]]
    load_model: Callable[[], Any]       # the pretrained encoder with a fresh head; returns an object with .loss/.logits


@dataclass
class Encoder:
    """A pretrained surrogate backbone: its registry entry and what the report says about it."""

    name: str
    folder: Path
    registry_block: str
    summary: str


@dataclass
class ModalityResult:
    encoder: Encoder
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)     # method -> one per seed
    full_choices: list[FullChoice] = field(default_factory=list)
    train_size: int = 0                 # examples in a seed's training split (the same for every seed)

    def add(self, method: str, outcome: Outcome) -> None:
        self.outcomes.setdefault(method, []).append(outcome)
        score = f"accuracy {outcome.score.accuracy:.3f}, macro-F1 {outcome.score.macro_f1:.3f}" if outcome.score \
            else "no score"
        print(f"    {method}: {score} ({outcome.seconds:.0f} s) {outcome.note}", file=sys.stderr)


def score_of(labels: np.ndarray, predictions: np.ndarray) -> Score:
    from sklearn.metrics import f1_score

    return Score(float((labels == predictions).mean()), float(f1_score(labels, predictions, average="macro")))


# --- training helpers shared by every modality ------------------------------------------------------------------

def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


def train_steps(model, items: list[dict[str, Any]], collate, *, steps: int, lr: float, seed: int,
                batch: int = 32, weight_decay: float = 0.01) -> None:
    """Pretraining: ``steps`` AdamW steps on random batches, 5% warm-up and cosine decay."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(max(1, steps // 20), steps))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(items), (batch,), generator=generator).tolist()
        loss = model(**collate([items[i] for i in rows])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def predict(model, items: list[dict[str, Any]], collate, device: str = "cpu", batch: int = 64) -> np.ndarray:
    import torch

    model.eval()
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(items), batch):
            inputs = {k: v.to(device) for k, v in collate(items[start:start + batch]).items() if k != "labels"}
            predictions.append(model(**inputs).logits.argmax(-1).cpu().numpy())
    return np.concatenate(predictions)


def pretrain_and_save(model, source: list[dict[str, Any]], held_out: list[dict[str, Any]], collate, *, steps: int,
                      lr: float, folder: Path) -> float:
    """Pretrain a transformers encoder on ``source``, save it (safetensors) into ``folder``; its held-out top-1."""
    train_steps(model, source, collate, steps=steps, lr=lr, seed=0)
    top1 = float((predict(model, held_out, collate) == [x["labels"] for x in held_out]).mean())
    model.save_pretrained(folder)
    return top1


def run_minimal_loop(peer: Peer, choice: FullChoice, *, seed: int, device: str) -> Outcome:
    """What a person writes by hand: shuffled batches, AdamW, linear warm-up then cosine decay, the last epoch's
    model; no augmentation, no early stopping. Learning rate, batch, warm-up and epochs are zoo full's."""
    import torch

    started = time.monotonic()
    torch.manual_seed(seed)
    model = peer.load_model().to(device)
    loader = torch.utils.data.DataLoader(peer.train, batch_size=choice.batch_size, shuffle=True,
                                         collate_fn=peer.collate,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=choice.lr, weight_decay=0.01)
    total = len(loader) * choice.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(max(1, round(choice.warmup_ratio * total)), total))
    model.train()
    for _ in range(choice.epochs):
        for batch in loader:
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    score = score_of(peer.test_labels, predict(model, peer.test, peer.collate, device))
    return Outcome(score, time.monotonic() - started, f"{choice.epochs} epochs, lr {choice.lr:g}, "
                                                       f"batch {choice.batch_size}")


class ListData:
    """A list of examples as the HF Trainer takes a torch dataset."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def run_hf_trainer(peer: Peer, *, epochs: int, seed: int, device: str, work: Path) -> Outcome:
    """The HF Trainer with its defaults (TrainingArguments() as it comes), for ``epochs`` epochs; the last epoch's
    model is scored."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    started = time.monotonic()
    torch.manual_seed(seed)
    model = peer.load_model()
    arguments = TrainingArguments(output_dir=str(work), num_train_epochs=epochs, seed=seed, eval_strategy="no",
                                  save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
                                  use_cpu=device == "cpu")
    trainer = Trainer(model=model, args=arguments, train_dataset=ListData(peer.train), data_collator=peer.collate)
    trainer.remove_callback(PrinterCallback)     # its end-of-training log line would land in the report on stdout
    trainer.train()
    score = score_of(peer.test_labels, predict(trainer.model, peer.test, peer.collate, device))
    return Outcome(score, time.monotonic() - started,
                   f"{epochs} epochs, lr {arguments.learning_rate:g}, batch {arguments.per_device_train_batch_size}"
                   f", {arguments.lr_scheduler_type.value} decay, warm-up {arguments.warmup_steps}")


def lr_probe(features: dict[str, dict[str, np.ndarray]], labels: dict[str, np.ndarray]) -> Outcome:
    """scikit-learn's LogisticRegression on standardised features; the pooling and C with the best validation
    accuracy (ties to the first: the stronger regularisation) are scored on test."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    started = time.monotonic()
    best: tuple[float, str, float, Any, Any] | None = None
    for pooling, split in features.items():
        scaler = StandardScaler().fit(split["train"])
        for c in C_GRID:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)   # reported below, for the fit that is kept
                model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(split["train"]), labels["train"])
            accuracy = float((model.predict(scaler.transform(split["val"])) == labels["val"]).mean())
            if best is None or accuracy > best[0]:
                best = (accuracy, pooling, c, scaler, model)
    _, pooling, c, scaler, model = best
    converged = "" if model.n_iter_.max() < 5000 else ", not converged in 5000 iterations"
    predictions = model.predict(scaler.transform(features[pooling]["test"]))
    return Outcome(score_of(labels["test"], predictions), time.monotonic() - started, f"{pooling}, C {c:g}{converged}")


def run_zoo(backbone: str, registry: Path, target: Target, strategy: str, *, seed: int, device: str, output: Path,
            quick: bool) -> Outcome:
    """`zoo adapt` with the defaults for ``strategy``; a strategy zoo refuses is reported with its reason."""
    from zoo import api
    from zoo.engine.config import AdaptConfig
    from zoo.errors import ZooError

    config = AdaptConfig(strategy=strategy, seed=seed, **({"epochs": QUICK_EPOCHS} if quick else {}))
    started = time.monotonic()
    try:
        record = api.adapt(backbone, target.paths["train"], val=target.paths["val"], test=target.paths["test"],
                           output=output, config=config, registry_files=[registry], store=False, device=device)
    except ZooError as exc:
        return Outcome(None, time.monotonic() - started, f"n/a: {str(exc).splitlines()[0]}")
    test = record["metrics"]["test"]
    choices = record["choices"]
    note = f"{choices['epochs']['value']} epochs, lr {choices['lr']['value']:g}" if record["strategy"] != "linear" \
        else f"L2 {record['head_fit']['l2']:g}" if "l2" in record.get("head_fit", {}) else "epoch loop"
    if strategy == "auto":
        candidates = choices["strategy"].get("candidates") or {}
        tried = ", ".join(f"{s} {v:.3f}" for s, v in candidates.items() if v is not None)
        note = f"kept {record['strategy']} ({tried} on validation)"
    return Outcome(Score(test["accuracy"], test["macro_f1"]), time.monotonic() - started, note, record)


def full_choice(record: dict[str, Any]) -> FullChoice:
    config = record["config"]
    return FullChoice(config["epochs"], config["lr"], config["batch_size"], config["warmup_ratio"])


# --- the modalities ---------------------------------------------------------------------------------------------

class Modality(ABC):
    """One task: its encoder, pretrained here on a related source task, and a target drawn per seed."""

    name: str
    task: str

    SIZES = (20, 10, 40)                # examples per class in train, val and test
    QUICK_SIZES = (6, 4, 6)

    def __init__(self, work: Path, *, quick: bool) -> None:
        self.work, self.quick = work, quick
        self.encoder: Encoder | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Examples per class in each split."""
        return dict(zip(("train", "val", "test"), self.QUICK_SIZES if self.quick else self.SIZES, strict=True))

    def split_sizes(self, noun: str) -> str:
        counts = self.counts
        return (f"{counts['train']} training, {counts['val']} validation and {counts['test']} test {noun} per class, "
                "drawn anew for each seed")

    @abstractmethod
    def build_encoder(self) -> Encoder:
        """Pretrain the encoder, save it in its library's format and return its registry entry."""

    @abstractmethod
    def make_target(self, seed: int) -> Target:
        """The target's train, val and test splits for ``seed``, written where `zoo adapt` reads them."""

    @abstractmethod
    def pooled_features(self, target: Target, *, pretrained: bool) -> dict[str, dict[str, np.ndarray]]:
        """pooling -> split -> frozen features of the encoder (pretrained, or the same architecture at random)."""

    @abstractmethod
    def save_random(self, folder: Path) -> None:
        """Save the encoder's architecture with the random weights ``pooled_features(pretrained=False)`` uses, in
        the encoder's format, into ``folder`` (a copy of the encoder's folder: its preprocessing files stay)."""

    def random_encoder(self) -> Encoder:
        """The encoder with random weights, as a second registry entry: what `zoo adapt` probes when the
        pretraining is taken away."""
        import shutil

        encoder = self.encoder
        folder = encoder.folder.parent / f"{encoder.folder.name}-random"
        shutil.copytree(encoder.folder, folder, dirs_exist_ok=True)
        self.save_random(folder)
        block = encoder.registry_block.replace(f'name = "{encoder.name}"', f'name = "{encoder.name}-random"')
        return Encoder(f"{encoder.name}-random", folder, block.replace(str(encoder.folder), str(folder)),
                       "the same architecture with random weights")

    @abstractmethod
    def peer(self, target: Target) -> Peer:
        """The target for the hand loop and the HF Trainer."""

    @property
    @abstractmethod
    def description(self) -> str:
        """One paragraph for the report: the encoder, the source and the target."""


# image ---------------------------------------------------------------------------------------------------------

def timm_with_loss(model):
    """A timm classifier as the HF Trainer and the hand loop call it: inputs by name, the loss when labelled."""
    import torch.nn as nn
    import torch.nn.functional as F
    from transformers.modeling_outputs import SequenceClassifierOutput

    class Wrapped(nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values, labels=None):
            logits = self.inner(pixel_values)
            loss = F.cross_entropy(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return Wrapped(model)


def pixels_to_tensor(pixels: np.ndarray):
    """uint8 N×H×W×3 to the normalised tensor timm's eval transform gives these 32×32 images."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def stack_pixels(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    batch = {"pixel_values": torch.stack([item["pixel_values"] for item in items])}
    if "labels" in items[0]:
        batch["labels"] = torch.tensor([item["labels"] for item in items])
    return batch


class ImageModality(Modality):
    name, task = "image", "image-cls"
    SIZES = (20, 10, 40)
    SOURCE = UPPER + LOWER + SYMBOLS
    PRETRAIN_STEPS = 1500

    def build_encoder(self) -> Encoder:
        import timm
        import torch
        from timm.models import save_for_hf

        per_class = 12 if self.quick else 60
        source = render("glyph", self.SOURCE, per_class, seed=0)
        held_out = render("glyph", self.SOURCE, 10, seed=1)
        torch.manual_seed(0)
        model = timm.create_model(ARCH, pretrained=False, num_classes=len(self.SOURCE))
        steps = self.PRETRAIN_STEPS // 10 if self.quick else self.PRETRAIN_STEPS
        train_steps(timm_with_loss(model), image_items(source), stack_pixels, steps=steps, lr=3e-3, seed=0,
                    batch=64, weight_decay=0.05)
        top1 = float((predict(timm_with_loss(model), image_items(held_out), stack_pixels) == held_out.labels).mean())
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, SIZE, SIZE), "crop_pct": 1.0,
                                "mean": MEAN, "std": STD, "interpolation": "bilinear",
                                "num_classes": len(self.SOURCE)}
        folder = self.work / "encoders" / "image"
        save_for_hf(model, str(folder), safe_serialization=True)
        name = "quality-test-resnet"
        params = sum(p.numel() for p in model.parameters()) / 1e6
        block = timm_local_entry(name, ARCH, folder, params_m=params, gflops=0.01, image_size=SIZE)
        summary = (f"timm `{ARCH}` ({params:.2f}M parameters, {SIZE}×{SIZE}), pretrained for {steps} steps of batch "
                   f"64 on {len(self.SOURCE)} rendered letters and symbols ({per_class} images each): held-out "
                   f"top-1 {top1:.3f}")
        return Encoder(name, folder, block, summary)

    def make_target(self, seed: int) -> Target:
        root = self.work / "targets" / f"image-{seed}"
        images = {split: render("glyph", DIGITS, n, seed=1000 + 10 * seed + k)
                  for k, (split, n) in enumerate(self.counts.items())}
        paths = {split: str(write_folder(data, root / split)) for split, data in images.items()}
        return Target(paths, {s: list(d.pixels) for s, d in images.items()},
                      {s: d.labels for s, d in images.items()}, len(DIGITS))

    def _model(self, *, pretrained: bool):
        import timm
        import torch

        if pretrained:
            return timm.create_model(f"local-dir:{self.encoder.folder}", pretrained=True)
        torch.manual_seed(0)
        return timm.create_model(ARCH, pretrained=False)

    def save_random(self, folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        # The random weights of _model(pretrained=False), in the saved encoder's file (its own head kept: zoo
        # replaces the head, and the pooled features never read it).
        random = self._model(pretrained=False).state_dict()
        saved = load_file(str(folder / "model.safetensors"))
        save_file({name: (random[name] if name in random and random[name].shape == value.shape else value)
                   .contiguous() for name, value in saved.items()}, str(folder / "model.safetensors"))

    def pooled_features(self, target: Target, *, pretrained: bool) -> dict[str, dict[str, np.ndarray]]:
        import torch

        model = self._model(pretrained=pretrained).eval()
        features = {}
        with torch.inference_mode():
            for split, pixels in target.inputs.items():
                x = pixels_to_tensor(np.stack(pixels))
                features[split] = torch.cat([model.forward_head(model.forward_features(chunk), pre_logits=True)
                                             for chunk in x.split(128)]).numpy()
        return {"pooled features": features}

    def peer(self, target: Target) -> Peer:
        import timm

        def load():
            return timm_with_loss(timm.create_model(f"local-dir:{self.encoder.folder}", pretrained=True,
                                                    num_classes=target.num_classes))

        items = {split: image_items(Images(np.stack(target.inputs[split]), target.labels[split], []))
                 for split in ("train", "test")}
        return Peer(items["train"], items["test"], target.labels["test"], stack_pixels, load)

    @property
    def description(self) -> str:
        return f"{self.encoder.summary}. Target: 10 rendered digits, {self.split_sizes('images')}."


def image_items(images: Images) -> list[dict[str, Any]]:
    x = pixels_to_tensor(images.pixels)
    return [{"pixel_values": x[i], "labels": int(label)} for i, label in enumerate(images.labels)]


# text ----------------------------------------------------------------------------------------------------------

FILLER = ("the a and of to in is it was very this that with for on at by from really quite some more most "
          "then when where which who what there here about over under after before again once only just also "
          "still even much many").split()
TOPICS, WORDS_PER_TOPIC = 20, 24
TARGET_TOPICS = [(k, k + TOPICS // 2) for k in range(TOPICS // 2)]    # target class k: topic k or topic k + 10


def made_up_words(count: int, seed: int) -> list[str]:
    """Distinct pronounceable words of two or three syllables, none of them English filler."""
    rng = np.random.default_rng(seed)
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words: dict[str, None] = {}
    while len(words) < count:
        word = "".join(rng.choice(list(consonants)) + rng.choice(list(vowels))
                       for _ in range(int(rng.integers(2, 4))))
        if word not in FILLER:
            words[word] = None
    return list(words)


@dataclass(frozen=True)
class Vocabulary:
    topics: list[list[str]]            # topic -> its words

    @classmethod
    def build(cls) -> Vocabulary:
        words = made_up_words(TOPICS * WORDS_PER_TOPIC, seed=7)
        return cls([words[k * WORDS_PER_TOPIC:(k + 1) * WORDS_PER_TOPIC] for k in range(TOPICS)])

    def sentence(self, topics: Sequence[int], rng: np.random.Generator, *, content: tuple[int, int],
                 length: tuple[int, int]) -> str:
        """Filler with a few words of ``topics``, and now and then one word of another topic."""
        words = [str(rng.choice(FILLER)) for _ in range(int(rng.integers(*length)))]
        pool = [w for t in topics for w in self.topics[t]]
        picks = [str(rng.choice(pool)) for _ in range(int(rng.integers(*content)))]
        if rng.random() < 0.5:
            other = int(rng.choice([t for t in range(TOPICS) if t not in topics]))
            picks.append(str(rng.choice(self.topics[other])))
        for word in picks:
            words.insert(int(rng.integers(0, len(words) + 1)), word)
        return " ".join(words)


class TextModality(Modality):
    name, task = "text", "text-cls"
    PRETRAIN_STEPS = 800
    MAX_TOKENS = 64
    LAYERS, WIDTH = 2, 128              # the encoder's size (64 per attention head, 4x wide feed-forward)

    def __init__(self, work: Path, *, quick: bool) -> None:
        super().__init__(work, quick=quick)
        self.vocabulary = Vocabulary.build()

    def build_encoder(self) -> Encoder:
        import torch
        from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *(w for t in self.vocabulary.topics for w in t)]
        folder = self.work / "encoders" / "text"
        tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}, do_lower_case=True,
                                      model_max_length=self.MAX_TOKENS)
        tokenizer.save_pretrained(folder)
        self.tokenizer = tokenizer
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=self.WIDTH, num_hidden_layers=self.LAYERS,
                            num_attention_heads=self.WIDTH // 64, intermediate_size=4 * self.WIDTH,
                            max_position_embeddings=self.MAX_TOKENS, num_labels=TOPICS)
        self.config = config
        per_topic = 20 if self.quick else 200
        source = self._source(per_topic, seed=0)
        held_out = self._source(20, seed=1)
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
        steps = self.PRETRAIN_STEPS // 10 if self.quick else self.PRETRAIN_STEPS
        top1 = pretrain_and_save(model, source, held_out, self.collate, steps=steps, lr=1e-3, folder=folder)
        params = sum(p.numel() for p in model.bert.parameters()) / 1e6
        name = "quality-bert"
        block = transformers_local_entry(name, folder, task="text-cls", params_m=params,
                                         input_table=f"max_tokens = {self.MAX_TOKENS}, seq_len = 32")
        summary = (f"BERT, {self.LAYERS} layers, {self.WIDTH} wide ({params:.2f}M parameters), word-level tokenizer of "
                   f"{len(tokenizer)} words, pretrained for {steps} steps of batch 32 to tell {TOPICS} topics "
                   f"({per_topic} sentences each; {WORDS_PER_TOPIC} made-up words per topic among English filler): "
                   f"held-out top-1 {top1:.3f}")
        return Encoder(name, folder, block, summary)

    def _source(self, per_topic: int, seed: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        rows = [(self.vocabulary.sentence([t], rng, content=(3, 7), length=(10, 30)), t)
                for t in range(TOPICS) for _ in range(per_topic)]
        return self.encode(rows)

    def encode(self, rows: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
        return [{**self.tokenizer(text, truncation=True), "labels": label} for text, label in rows]

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.tokenizer.pad(items, return_tensors="pt"))

    def make_target(self, seed: int) -> Target:
        rng = np.random.default_rng(2000 + seed)
        root = self.work / "targets" / f"text-{seed}"
        root.mkdir(parents=True, exist_ok=True)
        inputs, labels, paths = {}, {}, {}
        for split, n in self.counts.items():
            rows = [(self.vocabulary.sentence(TARGET_TOPICS[k], rng, content=(2, 5), length=(8, 24)), k)
                    for k in range(len(TARGET_TOPICS)) for _ in range(n)]
            inputs[split], labels[split] = [text for text, _ in rows], np.array([k for _, k in rows])
            paths[split] = str(root / f"{split}.csv")
            with open(paths[split], "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["text", "label"])
                writer.writerows((text, f"class-{k}") for text, k in rows)
        return Target(paths, inputs, labels, len(TARGET_TOPICS))

    def save_random(self, folder: Path) -> None:
        import torch
        from transformers import BertModel

        torch.manual_seed(0)
        BertModel(self.config).save_pretrained(folder)

    def pooled_features(self, target: Target, *, pretrained: bool) -> dict[str, dict[str, np.ndarray]]:
        import torch
        from transformers import BertModel

        if pretrained:
            model = BertModel.from_pretrained(self.encoder.folder)
        else:
            torch.manual_seed(0)
            model = BertModel(self.config)
        model.eval()
        features: dict[str, dict[str, np.ndarray]] = {}
        with torch.inference_mode():
            for split, texts in target.inputs.items():
                pooled: dict[str, list[Any]] = {}
                for start in range(0, len(texts), 128):
                    batch = self.tokenizer(texts[start:start + 128], padding=True, truncation=True,
                                           return_tensors="pt")
                    out = model(**batch, output_hidden_states=True)
                    mask = batch["attention_mask"]
                    layers = out.hidden_states[1:]
                    for key, value in (("first token, last layer", out.last_hidden_state[:, 0]),
                                       ("mean over tokens, last layer", masked_mean(out.last_hidden_state, mask)),
                                       ("mean over tokens and layers",
                                        torch.stack([masked_mean(h, mask) for h in layers]).mean(0)),
                                       ("pooler output", out.pooler_output)):
                        pooled.setdefault(key, []).append(value)
                for key, chunks in pooled.items():
                    features.setdefault(key, {})[split] = torch.cat(chunks).numpy()
        return features

    def peer(self, target: Target) -> Peer:
        from transformers import BertForSequenceClassification

        def load():
            return BertForSequenceClassification.from_pretrained(self.encoder.folder, num_labels=target.num_classes,
                                                                 ignore_mismatched_sizes=True)

        items = {split: self.encode(list(zip(target.inputs[split], target.labels[split].tolist(), strict=True)))
                 for split in ("train", "test")}
        return Peer(items["train"], items["test"], target.labels["test"], self.collate, load)

    @property
    def description(self) -> str:
        return (f"{self.encoder.summary}. Target: {len(TARGET_TOPICS)} classes, each the union of two source "
                "topics, sentences of 8 to 24 words with 2 to 4 topic words (and half the time one word of another "
                f"topic); {self.split_sizes('sentences')}.")


def masked_mean(hidden, mask):
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


# audio ---------------------------------------------------------------------------------------------------------

RATE = 16000
CLIP_SECONDS = 0.25      # short clips: the feature encoder's cost grows with the samples
NOTES = [220.0 * 2 ** (k / 4) for k in range(16)]          # a quarter-octave apart, 220 Hz to 2.96 kHz
CHORDS = [(0, 5), (1, 9), (2, 12), (3, 7), (4, 14), (6, 11), (8, 13), (10, 15), (5, 12), (7, 14)]


def synth(notes: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """``notes`` sounded together: each with its own timbre (harmonics), a small pitch jitter, onset and length,
    over background noise of random level."""
    t = np.arange(int(RATE * CLIP_SECONDS)) / RATE
    clip = np.zeros_like(t)
    for note in notes:
        frequency = NOTES[note] * (1 + rng.uniform(-0.015, 0.015))
        harmonics = int(rng.integers(1, 5))
        tone = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * h * frequency * t + rng.uniform(0, 2 * np.pi))
                   for h in range(1, harmonics + 1) if h * frequency < RATE / 2)
        onset, length = rng.uniform(0, 0.3) * CLIP_SECONDS, rng.uniform(0.4, 0.7) * CLIP_SECONDS
        envelope = np.clip((t - onset) / 0.02, 0, 1) * np.clip((onset + length - t) / 0.05, 0, 1)
        clip += rng.uniform(0.4, 1.0) * envelope * tone
    clip /= np.abs(clip).max() + 1e-9
    clip += rng.uniform(0.02, 0.25) * rng.normal(size=t.shape)
    return (clip / (np.abs(clip).max() + 1e-9) * rng.uniform(0.3, 0.9)).astype(np.float32)


class AudioModality(Modality):
    name, task = "audio", "audio-cls"
    SIZES = (12, 6, 30)                 # fewer than text and image: the audio encoder costs most per example
    PRETRAIN_STEPS = 400

    def _config(self):
        from transformers import Wav2Vec2Config

        # Three convolutions (stride 80: 49 frames in a 0.25 s clip), 2 layers 64 wide; layer norm in the feature
        # encoder, so that padding is masked exactly; no layer drop (2 layers); wav2vec2's own head (a projection to
        # 256, the frame mean, the classifier).
        return Wav2Vec2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                              conv_dim=(16, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
                              feat_extract_norm="layer", num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                              layerdrop=0.0, num_labels=len(NOTES))

    def build_encoder(self) -> Encoder:
        import torch
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

        folder = self.work / "encoders" / "audio"
        self.extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0,
                                                  do_normalize=True, return_attention_mask=True)
        self.extractor.save_pretrained(folder)
        per_note = 15 if self.quick else 150
        rng = np.random.default_rng(0)
        source = self.encode([(synth([n], rng), n) for n in range(len(NOTES)) for _ in range(per_note)])
        held_out = self.encode([(synth([n], rng), n) for n in range(len(NOTES)) for _ in range(10)])
        torch.manual_seed(0)
        model = Wav2Vec2ForSequenceClassification(self._config())
        steps = self.PRETRAIN_STEPS // 10 if self.quick else self.PRETRAIN_STEPS
        top1 = pretrain_and_save(model, source, held_out, self.collate, steps=steps, lr=2e-3, folder=folder)
        params = sum(p.numel() for p in model.wav2vec2.parameters()) / 1e6
        name = "quality-wav2vec2"
        block = transformers_local_entry(name, folder, task="audio-cls", params_m=params,
                                         input_table=f"sample_rate = {RATE}, seconds = {CLIP_SECONDS}")
        summary = (f"wav2vec2, 3 convolutions and 2 layers 64 wide ({params:.2f}M parameters), pretrained for "
                   f"{steps} steps of batch 32 to name {len(NOTES)} synthetic notes ({per_note} clips of "
                   f"{CLIP_SECONDS} s each: 1 to 4 harmonics, ±1.5% pitch, random onset, length and noise): held-out "
                   f"top-1 {top1:.3f}")
        return Encoder(name, folder, block, summary)

    def encode(self, rows: Sequence[tuple[np.ndarray, int]]) -> list[dict[str, Any]]:
        items = []
        for waveform, label in rows:
            features = self.extractor(waveform, sampling_rate=RATE)
            items.append({**{k: v[0] for k, v in features.items()}, "labels": int(label)})
        return items

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.extractor.pad(items, return_tensors="pt"))

    def make_target(self, seed: int) -> Target:
        import soundfile

        rng = np.random.default_rng(3000 + seed)
        root = self.work / "targets" / f"audio-{seed}"
        inputs, labels, paths = {}, {}, {}
        for split, n in self.counts.items():
            clips, classes = [], []
            for k, chord in enumerate(CHORDS):
                folder = root / split / f"chord-{k}"
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    clip = synth(chord, rng)
                    soundfile.write(folder / f"{i:04d}.wav", clip, RATE, subtype="FLOAT")   # read back exactly
                    clips.append(clip)
                    classes.append(k)
            inputs[split], labels[split], paths[split] = clips, np.array(classes), str(root / split)
        return Target(paths, inputs, labels, len(CHORDS))

    def save_random(self, folder: Path) -> None:
        import torch
        from transformers import Wav2Vec2Model

        torch.manual_seed(0)
        Wav2Vec2Model(self._config()).save_pretrained(folder)

    def pooled_features(self, target: Target, *, pretrained: bool) -> dict[str, dict[str, np.ndarray]]:
        import torch
        from transformers import Wav2Vec2Model

        if pretrained:
            model = Wav2Vec2Model.from_pretrained(self.encoder.folder)
        else:
            torch.manual_seed(0)
            model = Wav2Vec2Model(self._config())
        model.eval()
        features: dict[str, dict[str, np.ndarray]] = {}
        with torch.inference_mode():
            for split, clips in target.inputs.items():
                pooled: dict[str, list[Any]] = {}
                items = self.encode([(clip, 0) for clip in clips])
                for start in range(0, len(items), 64):
                    batch = self.collate(items[start:start + 64])
                    batch.pop("labels")
                    out = model(**batch, output_hidden_states=True)
                    # The frames that hold audio, as the model counts them after its convolutions.
                    frames = model._get_feature_vector_attention_mask(out.last_hidden_state.shape[1],
                                                                      batch["attention_mask"])
                    for key, value in (("mean over frames, last layer", masked_mean(out.last_hidden_state, frames)),
                                       ("mean over frames and layers",
                                        torch.stack([masked_mean(h, frames) for h in out.hidden_states[1:]]).mean(0))):
                        pooled.setdefault(key, []).append(value)
                for key, chunks in pooled.items():
                    features.setdefault(key, {})[split] = torch.cat(chunks).numpy()
        return features

    def peer(self, target: Target) -> Peer:
        from transformers import Wav2Vec2ForSequenceClassification

        def load():
            return Wav2Vec2ForSequenceClassification.from_pretrained(
                self.encoder.folder, num_labels=target.num_classes, ignore_mismatched_sizes=True)

        items = {split: self.encode(list(zip(target.inputs[split], target.labels[split].tolist(), strict=True)))
                 for split in ("train", "test")}
        return Peer(items["train"], items["test"], target.labels["test"], self.collate, load)

    @property
    def description(self) -> str:
        return (f"{self.encoder.summary}. Target: {len(CHORDS)} two-note chords of those notes (float WAV files in "
                f"class folders), {self.split_sizes('clips')}.")


MODALITY_CLASSES: dict[str, type[Modality]] = {"image": ImageModality, "text": TextModality, "audio": AudioModality}


# --- running one modality ---------------------------------------------------------------------------------------

ZOO_METHODS = {s: f"`zoo adapt --strategy {s}` (defaults)" for s in STRATEGIES}
PROBE = "LogisticRegression on the best pooled frozen features"
PROBE_RANDOM = "the same probe, encoder with random weights (sanity)"
ZOO_LINEAR_RANDOM = "`zoo adapt --strategy linear` (defaults), encoder with random weights"
MINIMAL = "minimal PyTorch loop, zoo full's lr / batch / warm-up / epochs"
HF = "HF Trainer, its defaults, zoo full's epochs"


def guarded(run: Callable[..., Outcome], *args: Any, **kwargs: Any) -> Outcome:
    """``run(*args, **kwargs)``; a method that fails is reported without a score, with the reason, instead of
    ending the whole benchmark."""
    started = time.monotonic()
    try:
        return run(*args, **kwargs)
    except Exception as exc:  # any library can fail here; the traceback goes to stderr, the reason to the table
        traceback.print_exc()
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        return Outcome(None, time.monotonic() - started, f"failed: {type(exc).__name__}: {reason}")


def probe_encoder(modality: Modality, target: Target, *, pretrained: bool) -> Outcome:
    return lr_probe(modality.pooled_features(target, pretrained=pretrained), target.labels)


def run_seed(modality: Modality, registry: Path, result: ModalityResult, *, seed: int, device: str) -> None:
    """Every method on ``seed``'s draw of the target; the peers train with what zoo full chose."""
    print(f"  {modality.name}, seed {seed}", file=sys.stderr)
    target = modality.make_target(seed)
    result.train_size = len(target.labels["train"])
    runs = modality.work / "runs" / f"{modality.name}-{seed}"
    for strategy in STRATEGIES:
        result.add(ZOO_METHODS[strategy], guarded(run_zoo, modality.encoder.name, registry, target, strategy,
                                                  seed=seed, device=device, output=runs / strategy,
                                                  quick=modality.quick))
    result.add(ZOO_LINEAR_RANDOM, guarded(run_zoo, f"{modality.encoder.name}-random", registry, target, "linear",
                                          seed=seed, device=device, output=runs / "linear-random",
                                          quick=modality.quick))
    for method, pretrained in ((PROBE, True), (PROBE_RANDOM, False)):
        result.add(method, guarded(probe_encoder, modality, target, pretrained=pretrained))
    full_record = result.outcomes[ZOO_METHODS["full"]][-1].record
    if full_record is None:
        for method in (MINIMAL, HF):
            result.add(method, Outcome(None, 0.0, "n/a: zoo full gave no run to match"))
        return
    choice = full_choice(full_record)
    result.full_choices.append(choice)
    peer = modality.peer(target)
    result.add(MINIMAL, guarded(run_minimal_loop, peer, choice, seed=seed, device=device))
    result.add(HF, guarded(run_hf_trainer, peer, epochs=choice.epochs, seed=seed, device=device, work=runs / "hf"))


def run_modality(modality: Modality, *, seeds: int, device: str) -> ModalityResult:
    print(f"{modality.name}: pretraining the encoder", file=sys.stderr)
    started = time.monotonic()
    modality.encoder = modality.build_encoder()
    print(f"  {modality.encoder.summary} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    registry = modality.work / f"{modality.name}.toml"
    registry.write_text(modality.encoder.registry_block + "\n" + modality.random_encoder().registry_block)
    result = ModalityResult(modality.encoder)
    for seed in range(seeds):
        run_seed(modality, registry, result, seed=seed, device=device)
    return result


# --- the report -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    met: bool | None          # None: not measurable (a method gave no score)


def mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def mean_accuracy(outcomes: list[Outcome]) -> float | None:
    scores = [o.score.accuracy for o in outcomes if o.score is not None]
    return statistics.mean(scores) if scores and len(scores) == len(outcomes) else None


def notes(outcomes: list[Outcome]) -> str:
    """The seeds' note once where they agree (a refused strategy says why once), else each seed's."""
    said = [o.note for o in outcomes]
    if len(set(said)) == 1:
        return said[0]
    return "; ".join(f"seed {i}: {note}" for i, note in enumerate(said) if note)


def method_rows(result: ModalityResult) -> list[list[str]]:
    rows = []
    for method, outcomes in result.outcomes.items():
        scored = [o.score for o in outcomes if o.score is not None]
        seconds = statistics.mean(o.seconds for o in outcomes)
        rows.append([method, mean_sd([s.accuracy for s in scored]), mean_sd([s.macro_f1 for s in scored]),
                     f"{seconds:.0f}" if scored else "", notes(outcomes)])
    return rows


def checks(result: ModalityResult) -> list[Check]:
    acc = {method: mean_accuracy(outcomes) for method, outcomes in result.outcomes.items()}
    linear, full, auto = (acc.get(ZOO_METHODS[s]) for s in ("linear", "full", "auto"))
    probe, hf = acc.get(PROBE), acc.get(HF)
    linear_random, probe_random = acc.get(ZOO_LINEAR_RANDOM), acc.get(PROBE_RANDOM)

    def check(target: str, ours: float | None, bar: float | None, what: str) -> Check:
        if ours is None or bar is None:
            return Check(target, "n/a: a method gave no score on some seed", None)
        return Check(target, f"{ours:.3f} against {what} {bar:.3f}", ours >= bar - 1e-9)

    best = max(linear, full) if linear is not None and full is not None else None
    return [
        check("linear ≥ LR probe − 1 point", linear, None if probe is None else probe - POINT, "probe − 0.01 ="),
        check("linear ≥ LR probe − 1 point, encoder with random weights", linear_random,
              None if probe_random is None else probe_random - POINT, "probe − 0.01 ="),
        check("auto ≥ best(linear, full) − 1 point", auto, None if best is None else best - POINT,
              "best − 0.01 ="),
        check("full ≥ HF Trainer at equal epochs", full, hf, "HF Trainer"),
    ]


def sanity_line(result: ModalityResult) -> str:
    pretrained, random = mean_accuracy(result.outcomes.get(PROBE, [])), \
        mean_accuracy(result.outcomes.get(PROBE_RANDOM, []))
    if pretrained is None or random is None:
        return "Sanity: the probe gave no score on some seed."
    verdict = "the pretraining helps" if pretrained > random + 2 * POINT else \
        "**the pretraining does not help here**: the comparison says little about pretrained features"
    return (f"Sanity: the probe reaches {pretrained:.3f} test accuracy on the pretrained encoder and {random:.3f} on "
            f"the same encoder with random weights: {verdict}.")


def hf_default_batch() -> int:
    from dataclasses import fields

    from transformers import TrainingArguments

    return next(f.default for f in fields(TrainingArguments) if f.name == "per_device_train_batch_size")


def chosen_line(result: ModalityResult) -> str:
    """What zoo full chose, and the optimizer steps it and the HF Trainer make in those epochs."""
    if not result.full_choices:
        return ""
    choice, hf_batch = result.full_choices[0], hf_default_batch()
    epochs = "/".join(str(e) for e in sorted({c.epochs for c in result.full_choices}))
    steps = math.ceil(result.train_size / choice.batch_size) * choice.epochs
    hf_steps = math.ceil(result.train_size / hf_batch) * choice.epochs
    return (f"`zoo adapt --strategy full` chose {epochs} epochs, lr {choice.lr:g}, batch {choice.batch_size}, "
            f"warm-up {choice.warmup_ratio:.2f}: {steps} optimizer steps on the {result.train_size} training "
            "examples (fewer where it stopped early). The hand loop trains as many epochs with the same values; the "
            f"HF Trainer as many epochs at its batch of {hf_batch}, {hf_steps} steps.")


def gap_line(modality: Modality, result: ModalityResult) -> str:
    """Where full trails the HF Trainer: whether the hand loop, with zoo full's values, trails it as well (then the
    values are the cause), or beats zoo full (then zoo's loop also is)."""
    acc = {method: mean_accuracy(outcomes) for method, outcomes in result.outcomes.items()}
    full, minimal, hf = acc.get(ZOO_METHODS["full"]), acc.get(MINIMAL), acc.get(HF)
    if full is None or minimal is None or hf is None or full >= hf:
        return ""
    said = (f"`full` trails the HF Trainer by {(hf - full) / POINT:.1f} points. The hand loop, with zoo full's "
            f"learning rate, batch, warm-up and epochs, scores {minimal:.3f} against zoo full's {full:.3f}: ")
    if abs(minimal - full) <= 2 * POINT:
        return said + "within 2 points, so the gap comes from those values, not from zoo's loop."
    if minimal > full:
        extra = {"image": "light augmentation (random-resized crops, flips, colour jitter)",
                 "audio": "light augmentation (random gain and time shift)"}.get(modality.name)
        what = f"its default {extra}, " if extra else ""
        return said + (f"zoo's loop loses {(minimal - full) / POINT:.1f} points to it with the same values, where it "
                       f"differs by {what}the best epoch kept on validation and no weight decay on biases and norms; "
                       "the rest of the gap comes from the values.")
    return said + "zoo's loop does better than the hand loop with the same values: the gap comes from the values."


def render_modality(modality: Modality, result: ModalityResult) -> str:
    check_rows = [[c.target, c.measured, {True: "met", False: "**not met**", None: "open"}[c.met]]
                  for c in checks(result)]
    return "\n".join([
        f"### {modality.name}", "",
        modality.description, "",
        table(["method", "test accuracy", "test macro-F1", "s / seed", "notes"], method_rows(result)), "",
        " ".join(filter(None, (chosen_line(result), sanity_line(result)))), "",
        table(["target (test accuracy, mean over seeds)", "measured", ""], check_rows),
        *(["", gap] if (gap := gap_line(modality, result)) else []),
    ])


def report(modalities: list[Modality], results: dict[str, ModalityResult], args, total_s: float) -> str:
    options = "".join(f"--{key} {getattr(args, key)} " for key, default in DEFAULTS.items()
                      if getattr(args, key) != default and not (args.quick and key == "seeds"))
    summary = [[m.name, c.target, {True: "met", False: "**not met**", None: "open"}[c.met]]
               for m in modalities for c in checks(results[m.name])]
    seeds = f"{args.seeds} seed{'s' if args.seeds > 1 else ''}"
    command = options + ("--quick" if args.quick else "--write")      # --quick figures are never written
    return "\n\n".join([
        "## Quality of the defaults against strong simple baselines",
        f"Machine: {machine()}; device {args.device}. Reproduce: `.venv/bin/python benchmarks/quality.py "
        f"{command}` ({total_s / 60:.0f} min here).",
        "Real pretrained weights cannot be downloaded where this must run: each modality's encoder is small and "
        "pretrained by the script on a related source task, and the target is a new task with a small training "
        f"set. Each figure is the mean ± sample standard deviation over {seeds}; a seed draws the target's "
        "examples anew and seeds every trainer. Scores are on the held-out test split, never used for "
        "a choice: zoo and the probe choose on the validation split, the hand loop and the HF Trainer keep their "
        "last epoch. `zoo adapt` runs with every default but the seed (`zoo.api.adapt(..., "
        "config=AdaptConfig(strategy=..., seed=...))`).",
        table(["modality", "target", ""], summary),
        *(render_modality(m, results[m.name]) for m in modalities),
    ])


DEFAULTS = {"seeds": 3, "device": "cpu", "modalities": ",".join(MODALITIES), "threads": THREADS}


def isolate(work: Path) -> None:
    """Every cache and history zoo and its libraries write goes under ``work``, and nothing is fetched."""
    for variable, sub in (("ZOO_FEATURE_CACHE", "features"), ("ZOO_STORE", "runs.sqlite"), ("XDG_CACHE_HOME", "cache"),
                          ("HF_HOME", "hf"), ("MPLCONFIGDIR", "matplotlib")):
        os.environ[variable] = str(work / sub)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=DEFAULTS["device"])
    parser.add_argument("--seeds", type=int, default=DEFAULTS["seeds"], help="target draws and training seeds")
    parser.add_argument("--modalities", default=",".join(MODALITIES), help="a comma-separated subset of "
                        f"{', '.join(MODALITIES)}")
    parser.add_argument("--threads", type=int, default=DEFAULTS["threads"], help="torch threads")
    parser.add_argument("--write", action="store_true", help="write the section into docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, tiny data and pretraining, "
                        f"{QUICK_EPOCHS} epochs; its figures mean nothing and --write is refused")
    args = parser.parse_args()
    chosen = [m.strip() for m in args.modalities.split(",") if m.strip()]
    if not chosen or any(m not in MODALITIES for m in chosen):
        parser.error(f"--modalities: choose among {', '.join(MODALITIES)}")
    if args.quick:
        if args.write:
            parser.error("--quick figures mean nothing: they are not written")
        args.seeds = 1

    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()        # per-load reports of the heads replaced for the targets' labels
    logging.disable_progress_bar()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zoo-quality-") as tmp:
        work = Path(tmp)
        isolate(work)
        modalities = [MODALITY_CLASSES[name](work / name, quick=args.quick) for name in chosen]
        results = {m.name: run_modality(m, seeds=args.seeds, device=args.device) for m in modalities}
    body = report(modalities, results, args, time.monotonic() - started)
    print(body)
    if args.write:
        write_section("quality", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
