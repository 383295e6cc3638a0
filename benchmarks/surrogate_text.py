"""A surrogate zoo of text backbones for `benchmarks/recommend_eval.py` (the interface: `benchmarks/surrogate.py`).

Every backbone is a small BERT (`transformers`' BertForSequenceClassification) with the same word-level tokenizer,
pretrained by this module on synthetic text: English filler words among made-up content words, each of which
belongs to a topic or to one of two moods (word classes that co-occur, and that no label depends on). They differ
for the reasons real text backbones differ:

- **what text** their masked-language-model (MLM) pretraining read: a *related* corpus (the source topics and
  8 topics that only this corpus holds) or an *unrelated* one (the source topics and 16 topics no target uses), as
  a model pretrained on another domain would;
- **how much** MLM pretraining: 200 to 600 steps (an earlier checkpoint of the same run), or none for one that was
  trained 600 steps on the supervised source task alone;
- **their size**: 2 layers, 64 or 128 wide (0.18M or 0.56M parameters);
- **how** the supervised source task was trained: one with label smoothing.

All then learn the supervised source task (16 topics from 24 short sentences each: the surrogate of GLUE), and
their accuracy on held-out sentences of it is their published `glue/avg`, which the data-free prior ranks by. The
targets are new tasks with 12 training and 40 test sentences per class, written as CSV files: `new-topics` (the 8
topics whose words only the related corpus holds) and `source-unions` (8 classes, each the union of two source
topics).

Observed when the module was written (the latest figures are in docs/performance.md): label smoothing raised
source accuracy by 2 to 4 points and moved transfer by under 2, in either direction; at 128 wide the unrelated corpus
gave the related one's source accuracy (within 2 points) and under half its accuracy on `new-topics`. One zoo seed
takes about 4 minutes on one CPU thread; ``quick``, with one fine-tuning seed, under a minute.
"""

from __future__ import annotations

import copy
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _report import transformers_local_entry
from quality import FILLER, made_up_words, predict, train_steps
from surrogate import Backbone, Target

TASK = "text-cls"
SOURCE_METRIC = "glue/avg"
TARGETS = ("new-topics", "source-unions")
# The ground truth: full fine-tuning for a fixed number of epochs, no early stopping, last epoch scored. The
# learning rate suits encoders this small (the default 5e-5 is for BERT-base); no checkpoints but the epochs' own.
TRUTH = {"strategy": "full", "epochs": 8, "lr": 1e-3, "batch_size": 8, "patience": 0,
         "checkpoint_every": 10**9}

MAX_TOKENS = 64
FILLER_LENGTH = (0, 5)          # English filler words around the content words of a labelled sentence
WORDS_PER_TOPIC = 24
SOURCE_TOPICS, HELD_TOPICS, OTHER_TOPICS = 16, 8, 16
MOOD_WORDS = 24                     # per mood
SIZES = {"w64": 64, "w128": 128}    # hidden width; 2 layers, 64 per attention head, 4x wide feed-forward
LAYERS = 2


# --- the synthetic language -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    """The made-up words of one zoo seed, by what uses them."""

    source: list[list[str]]         # topics of the supervised source task; in both pretraining corpora
    held: list[list[str]]           # topics only the related corpus holds: the `new-topics` target's classes
    other: list[list[str]]          # topics only the unrelated corpus holds
    moods: list[list[str]]          # two word classes, in every text: noise that no label depends on

    @classmethod
    def build(cls, seed: int) -> World:
        topics = SOURCE_TOPICS + HELD_TOPICS + OTHER_TOPICS
        words = made_up_words(topics * WORDS_PER_TOPIC + 2 * MOOD_WORDS, seed=seed)
        groups = [words[k * WORDS_PER_TOPIC:(k + 1) * WORDS_PER_TOPIC] for k in range(topics)]
        moods = words[topics * WORDS_PER_TOPIC:]
        return cls(groups[:SOURCE_TOPICS], groups[SOURCE_TOPICS:SOURCE_TOPICS + HELD_TOPICS],
                   groups[SOURCE_TOPICS + HELD_TOPICS:], [moods[:MOOD_WORDS], moods[MOOD_WORDS:]])

    @property
    def vocabulary(self) -> list[str]:
        return [*FILLER, *(w for group in (*self.source, *self.held, *self.other, *self.moods) for w in group)]


def compose(rng: np.random.Generator, picks: list[str], length: tuple[int, int]) -> str:
    """English filler of a random length with ``picks`` inserted at random places."""
    words = [str(rng.choice(FILLER)) for _ in range(int(rng.integers(*length)))]
    for word in picks:
        words.insert(int(rng.integers(0, len(words) + 1)), word)
    return " ".join(words)


def draw(rng: np.random.Generator, pool: list[str], count: tuple[int, int]) -> list[str]:
    return [str(rng.choice(pool)) for _ in range(int(rng.integers(*count)))]


def corpus_sentence(rng: np.random.Generator, topics: list[list[str]], moods: list[list[str]]) -> str:
    """Pretraining text: four to seven words of one topic, and half the time one to three words of one mood. Denser in
    content words than the labelled sentences: with as much filler, the 64-wide model's MLM loss stayed at the level
    of word frequencies for 1000 steps, more than this module can afford."""
    picks = draw(rng, topics[int(rng.integers(len(topics)))], (4, 8))
    if rng.random() < 0.5:
        picks += draw(rng, moods[int(rng.integers(2))], (1, 4))
    return compose(rng, picks, (0, 3))


def source_sentence(rng: np.random.Generator, world: World, topic: int) -> str:
    """The source task: one to three words of ``topic``, half the time one of another source topic, and mood words
    of either mood that say nothing of the label."""
    picks = draw(rng, world.source[topic], (1, 4))
    if rng.random() < 0.5:
        picks.append(str(rng.choice(world.source[(topic + int(rng.integers(1, SOURCE_TOPICS))) % SOURCE_TOPICS])))
    picks += draw(rng, world.moods[int(rng.integers(2))], (0, 3))
    return compose(rng, picks, FILLER_LENGTH)


def target_sentence(rng: np.random.Generator, world: World, target: str, label: int) -> str:
    """A target's sentence of class ``label``: one to three of its words, now and then a word of another class, and
    mood words that say nothing of the label."""
    classes = world.held if target == "new-topics" else union_classes(world)
    picks = draw(rng, classes[label], (1, 4)) + draw(rng, world.moods[int(rng.integers(2))], (0, 3))
    if rng.random() < 0.3:
        picks.append(str(rng.choice(classes[(label + int(rng.integers(1, len(classes)))) % len(classes)])))
    return compose(rng, picks, FILLER_LENGTH)


def union_classes(world: World) -> list[list[str]]:
    """The `source-unions` target's classes: source topics two by two."""
    return [world.source[2 * k] + world.source[2 * k + 1] for k in range(SOURCE_TOPICS // 2)]


# --- the recipes ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    size: str                       # a key of SIZES
    name: str
    mlm: tuple[str, int] | None     # masked-language-model pretraining: (corpus, steps), or none
    source_steps: int               # then the supervised source task: optimizer steps of batch 32
    label_smoothing: float
    description: str


# One masked-language-model run per size and corpus, with a constant learning rate after its warm-up, so that
# fewer steps is an earlier checkpoint of the same run (as published intermediate checkpoints are).
MLM_MASKING = 0.3       # a model this small learns faster from more masked words (Wettig et al., 2023: 40% is fine)
MLM_LR, SOURCE_LR, WARMUP = 1e-3, 1e-3, 30
SOURCE_STEPS = 150
RECIPES = [
    Recipe("w128", "related400", ("related", 400), SOURCE_STEPS, 0.0,
           "400 MLM steps on the related corpus, then the source task"),
    # Label smoothing raises source accuracy but makes features less transferable (Kornblith et al., 2021).
    Recipe("w128", "related400-ls", ("related", 400), SOURCE_STEPS, 0.3,
           "400 MLM steps on the related corpus, then the source task with label smoothing 0.3"),
    Recipe("w128", "related200", ("related", 200), SOURCE_STEPS, 0.0,
           "the same MLM run stopped at 200 steps, then the source task"),
    Recipe("w128", "unrelated400", ("unrelated", 400), SOURCE_STEPS, 0.0,
           "400 MLM steps on the unrelated corpus, then the source task"),
    Recipe("w64", "related600", ("related", 600), SOURCE_STEPS, 0.0,
           "600 MLM steps on the related corpus, then the source task"),
    Recipe("w64", "related300", ("related", 300), SOURCE_STEPS, 0.0,
           "the same MLM run stopped at 300 steps, then the source task"),
    Recipe("w64", "unrelated600", ("unrelated", 600), SOURCE_STEPS, 0.0,
           "600 MLM steps on the unrelated corpus, then the source task"),
    Recipe("w64", "source600", None, 600, 0.0,
           "no MLM: 600 steps on the source task alone (its small training set about 50 times over)"),
]

SOURCE_PER_TOPIC = 24               # the source task's training sentences per topic: small, so it can be overfitted
SOURCE_HELD_OUT = 40                # held-out sentences per topic: the published number
CORPUS_SENTENCES = 6000
TARGET_SIZES = {"new-topics": (12, 40), "source-unions": (12, 40)}       # training and test sentences per class
QUICK_SCALE = 0.1


def tokenizer_for(world: World):
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *world.vocabulary]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}, do_lower_case=True,
                             model_max_length=MAX_TOKENS)


def bert_config(size: str, vocab_size: int, num_labels: int):
    from transformers import BertConfig

    width = SIZES[size]
    return BertConfig(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=LAYERS,
                      num_attention_heads=max(1, width // 64), intermediate_size=4 * width,
                      max_position_embeddings=MAX_TOKENS, num_labels=num_labels)


def masked_lm(config, init: dict, corpus: list[dict[str, Any]], masking, *, checkpoints: list[int],
              seed: int) -> dict[int, dict]:
    """Masked-language-model pretraining from ``init`` (an encoder's weights): AdamW, batch 32, a linear warm-up
    then a constant learning rate; the encoder's weights at each of ``checkpoints`` (steps)."""
    import torch
    from transformers import BertForMaskedLM

    model = BertForMaskedLM(config)
    model.bert.load_state_dict(init, strict=False)          # the masked-LM model's encoder has no pooler
    optimizer = torch.optim.AdamW(model.parameters(), lr=MLM_LR, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)                                 # the masking's draws
    saved = {}
    model.train()
    for step in range(1, max(checkpoints) + 1):
        rows = torch.randint(len(corpus), (32,), generator=generator).tolist()
        loss = model(**masking([corpus[i] for i in rows])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step in checkpoints:
            saved[step] = copy.deepcopy(model.bert.state_dict())
    return saved


def build_zoo(work: Path, *, seed: int, quick: bool) -> tuple[Path, list[Backbone]]:
    """Pretrain every recipe, save each as a transformers folder with its tokenizer, and write a registry file."""
    import torch
    import torch.nn.functional as F
    from transformers import BertForSequenceClassification, DataCollatorForLanguageModeling

    world = World.build(seed)
    tokenizer = tokenizer_for(world)
    rng = np.random.default_rng(seed)
    scale = QUICK_SCALE if quick else 1.0
    n_corpus = max(200, round(CORPUS_SENTENCES * scale))
    corpora = {name: [tokenizer(corpus_sentence(rng, topics, world.moods)) for _ in range(n_corpus)]
               for name, topics in (("related", world.source + world.held), ("unrelated", world.source + world.other))}

    def labelled(per_topic: int) -> list[dict[str, Any]]:
        return [{**tokenizer(source_sentence(rng, world, t)), "labels": t}
                for t in range(SOURCE_TOPICS) for _ in range(per_topic)]

    source, held_out = labelled(SOURCE_PER_TOPIC), labelled(max(4, round(SOURCE_HELD_OUT * scale)))
    masking = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_MASKING)

    def pad(items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(tokenizer.pad(items, return_tensors="pt"))

    class Smoothed(torch.nn.Module):
        """A classifier whose loss is cross-entropy with label smoothing, as train_steps calls it."""

        def __init__(self, inner, smoothing: float) -> None:
            super().__init__()
            self.inner, self.smoothing = inner, smoothing

        def forward(self, labels, **inputs):
            out = self.inner(**inputs)
            out.loss = F.cross_entropy(out.logits, labels, label_smoothing=self.smoothing)
            return out

    def steps(n: int) -> int:
        return max(2, round(n * scale))

    initial, encoders = {}, {}
    for size in SIZES:
        torch.manual_seed(seed)             # the same initial weights for every recipe of a size
        initial[size] = BertForSequenceClassification(bert_config(size, len(tokenizer), SOURCE_TOPICS)).state_dict()
    for size, corpus in sorted({(r.size, r.mlm[0]) for r in RECIPES if r.mlm}):
        t0 = time.monotonic()
        checkpoints = sorted({steps(r.mlm[1]) for r in RECIPES if r.size == size and r.mlm and r.mlm[0] == corpus})
        init = {k.removeprefix("bert."): v for k, v in initial[size].items() if k.startswith("bert.")}
        for step, weights in masked_lm(bert_config(size, len(tokenizer), SOURCE_TOPICS), init, corpora[corpus],
                                       masking, checkpoints=checkpoints, seed=seed).items():
            encoders[size, corpus, step] = weights
        print(f"  MLM {size} on the {corpus} corpus, {max(checkpoints)} steps ({time.monotonic() - t0:.0f} s)",
              file=sys.stderr)

    backbones, blocks = [], []
    for recipe in RECIPES:
        t0 = time.monotonic()
        model = BertForSequenceClassification(bert_config(recipe.size, len(tokenizer), SOURCE_TOPICS))
        model.load_state_dict(initial[recipe.size])
        if recipe.mlm:
            model.bert.load_state_dict(encoders[recipe.size, recipe.mlm[0], steps(recipe.mlm[1])], strict=False)
        train_steps(Smoothed(model, recipe.label_smoothing), source, pad, steps=steps(recipe.source_steps),
                    lr=SOURCE_LR, seed=seed)
        accuracy = float((predict(model, held_out, pad) == [x["labels"] for x in held_out]).mean())
        name = f"bert-{recipe.size}.{recipe.name}"
        folder = work / "zoo" / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        params = sum(p.numel() for p in model.bert.parameters()) / 1e6
        description = f"{LAYERS} layers, {SIZES[recipe.size]} wide: {recipe.description}"
        backbones.append(Backbone(name, f"{recipe.size}.{recipe.name}", description, accuracy, params))
        extra = (f'pretrain = "{description}"\nreference = [{{ metric = "{SOURCE_METRIC}", value = '
                 f'{accuracy * 100:.2f}, source = "benchmarks/surrogate_text.py: accuracy on held-out sentences of '
                 'the surrogate source task" }]\n')
        blocks.append(transformers_local_entry(name, folder, task=TASK, params_m=params,
                                               input_table=f"max_tokens = {MAX_TOKENS}, seq_len = 16") + extra)
        print(f"  {name}: source accuracy {accuracy:.3f} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    registry = work / "zoo-text.toml"
    registry.write_text("\n".join(blocks))
    return registry, backbones


def make_target(name: str, work: Path, *, seed: int, quick: bool) -> Target:
    """``name``'s training and test sentences, drawn for ``seed``'s world, written as CSV (text, label)."""
    world = World.build(seed)
    rng = np.random.default_rng([seed, TARGETS.index(name)])
    classes = HELD_TOPICS if name == "new-topics" else SOURCE_TOPICS // 2
    per_class = TARGET_SIZES[name]
    if quick:
        per_class = (max(4, per_class[0] // 3), max(6, per_class[1] // 10))
    paths = {}
    for split, n in zip(("train", "test"), per_class, strict=True):
        paths[split] = work / "targets" / name / f"{split}.csv"
        paths[split].parent.mkdir(parents=True, exist_ok=True)
        with open(paths[split], "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((target_sentence(rng, world, name, k), f"class-{k}")
                             for k in range(classes) for _ in range(n))
    description = {
        "new-topics": f"{HELD_TOPICS} topics whose words only the related pretraining corpus holds",
        "source-unions": f"{SOURCE_TOPICS // 2} classes, each the union of two source topics",
    }[name]
    return Target(name, paths["train"], paths["test"],
                  f"{description}; {per_class[0]} training and {per_class[1]} test sentences per class")
