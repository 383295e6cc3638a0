"""The audio surrogate zoo of `benchmarks/recommend_eval.py` (what it provides: `benchmarks/surrogate.py`).

Seven small audio encoders, pretrained by this module on synthetic clips of 0.25 s at 16 kHz and saved as
transformers folders with their feature extractors (family ``transformers``). They differ for the reasons real
audio backbones differ:

- **architecture and size**: a wav2vec2-style encoder (convolutions over the waveform, then a transformer) at two
  sizes, 0.09M and 0.36M parameters, and an AST-style one (a transformer over patches of a log-mel spectrogram),
  0.07M;
- **how much** they were pretrained on the source task: 100 or 300 steps of batch 32;
- **what on**: the source task is naming 16 synthetic notes whatever their timbre (the surrogate of keyword
  spotting, SUPERB KS). One backbone was first pretrained on notes *and* timbres (64 classes: the 16 notes in 4
  timbres, a broader task that keeps the timbre the source task teaches to ignore), another on rhythms (where noise
  bursts fall in the clip, a task unrelated to pitch), each then fine-tuned briefly on the source;
- **how**: one was trained with label smoothing, which moves source accuracy and is reported to make features less
  transferable (Kornblith et al., 2021, for linear probes of image models).

Each backbone's top-1 on held-out clips of the source task is its published number, under ``superb/ks``: what the
data-free prior ranks by. The targets are new tasks related to the sources: 10 two-note chords of the source's
notes, and 10 note-and-timbre classes (5 of the notes, each in 2 timbres no backbone was pretrained on), with 16
training and 12 test clips per class.

One zoo seed (pretraining, both targets, `zoo recommend --data` on each, and the 42 runs of `zoo adapt` of the
ground truth) takes about 4.5 minutes of CPU time on one torch thread, pretraining 1.5 of them (5 to 8 minutes of
wall time on a 2-core machine shared with other work); ``quick``, with one fine-tuning seed, about half a minute.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _report import transformers_local_entry
from quality import CHORDS, CLIP_SECONDS, NOTES, RATE, predict, synth, train_steps
from surrogate import Backbone, Target

TASK = "audio-cls"
SOURCE_METRIC = "superb/ks"
TARGETS = ("chords", "timbre-notes")
# `zoo adapt --strategy full` as the ground truth: 6 passes over the small training set, a learning rate at which
# these small encoders fine-tune in that many steps, the last epoch kept (no early stopping), no augmentation, and
# no checkpoint within an epoch (nothing to resume).
TRUTH: dict[str, Any] = {"strategy": "full", "epochs": 6, "lr": 5e-4, "batch_size": 16, "patience": 0,
                         "augment": "none", "checkpoint_every": 10**9}

BATCH = 32                      # pretraining batch
SOURCE_PER_CLASS = {"notes": 100, "timbres": 25, "rhythms": 150}    # training clips per class of each source set
HELD_OUT_PER_CLASS = 25         # held-out clips per note: the published number
TARGET_PER_CLASS = {"train": 16, "test": 12}
QUICK_STEPS, QUICK_CLIPS = 0.05, 0.1     # quick: these shares of the pretraining steps and of the source clips
QUICK_TARGET_PER_CLASS = 3


# --- synthetic sounds -------------------------------------------------------------------------------------------
#
# Notes and chords are quality.py's `synth`: each note with a random timbre (1 to 4 harmonics of random weight), so
# the source task teaches to name the pitch and to ignore the timbre. Timbres here are fixed spectra: partials as
# (ratio to the fundamental, weight), each weight drawn within a factor of 4/3 of its value for every clip.

TIMBRES: dict[str, tuple[tuple[float, float], ...]] = {
    # the four of the broader pretraining set
    "pure": ((1, 1.0), (2, 0.1)),
    "hollow": ((1, 1.0), (3, 0.33), (5, 0.2), (7, 0.14)),                         # odd harmonics, clarinet-like
    "bright": tuple((h, 1.0 / h) for h in range(1, 9)),                           # every harmonic, sawtooth-like
    "nasal": ((1, 0.3), (2, 0.5), (3, 1.0), (4, 0.8), (5, 0.4)),                  # a formant on the third
    # the target's two, new to every backbone
    "organ": ((1, 1.0), (2, 0.8), (4, 0.6), (8, 0.3)),                            # octaves only
    "bell": ((1, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25)),                   # inharmonic partials
}
PRETRAIN_TIMBRES = ("pure", "hollow", "bright", "nasal")
TARGET_TIMBRES = ("organ", "bell")
TARGET_NOTES = (0, 2, 4, 6, 8)          # 220 to 880 Hz: low enough that every timbre keeps its partials
# Where noise bursts fall among 8 slots of 31 ms: the rhythms source, a task about time, not pitch.
RHYTHMS = ("x.......", "x...x...", "x.x.x.x.", "xx......", "x..x..x.", "xxx.....", "x......x", "x.xx....")


def _finish(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Background noise of random level and a random gain, as `synth` finishes its clips."""
    clip = clip / (np.abs(clip).max() + 1e-9)
    clip = clip + rng.uniform(0.02, 0.25) * rng.normal(size=clip.shape)
    return (clip / (np.abs(clip).max() + 1e-9) * rng.uniform(0.3, 0.9)).astype(np.float32)


def play(note: int, timbre: str, rng: np.random.Generator) -> np.ndarray:
    """One note in ``timbre``, with `synth`'s pitch jitter, random onset and length, and background noise."""
    t = np.arange(int(RATE * CLIP_SECONDS)) / RATE
    frequency = NOTES[note] * (1 + rng.uniform(-0.015, 0.015))
    tone = sum(weight * rng.uniform(0.75, 1.33) * np.sin(2 * np.pi * ratio * frequency * t + rng.uniform(0, 2 * np.pi))
               for ratio, weight in TIMBRES[timbre] if ratio * frequency < RATE / 2)
    onset, length = rng.uniform(0, 0.3) * CLIP_SECONDS, rng.uniform(0.4, 0.7) * CLIP_SECONDS
    envelope = np.clip((t - onset) / 0.02, 0, 1) * np.clip((onset + length - t) / 0.05, 0, 1)
    return _finish(envelope * tone, rng)


def drum(pattern: str, rng: np.random.Generator) -> np.ndarray:
    """Noise bursts of random colour where ``pattern`` has an ``x``, each slot's onset jittered by up to 3 ms."""
    from scipy.signal import lfilter

    samples = int(RATE * CLIP_SECONDS)
    slot, burst = samples // len(pattern), int(0.02 * RATE)
    decay = np.exp(-np.arange(burst) / (0.006 * RATE))
    smoothing = rng.uniform(0.0, 0.9)     # a one-pole low-pass: from white to dull noise, the same for the clip
    clip = np.zeros(samples)
    for k, hit in enumerate(pattern):
        if hit == "x":
            start = max(0, k * slot + int(rng.integers(-48, 49)))
            noise = lfilter([1 - smoothing], [1, -smoothing], rng.normal(size=burst)) * decay
            clip[start:start + burst] += rng.uniform(0.6, 1.0) * noise[:samples - start]
    return _finish(clip, rng)


@dataclass
class Clips:
    waveforms: list[np.ndarray]
    labels: np.ndarray
    names: list[str]            # class names, by label


def _clips(names: Sequence[str], make: Callable[[int, np.random.Generator], np.ndarray], per_class: int,
           rng: np.random.Generator) -> Clips:
    waveforms = [make(k, rng) for k in range(len(names)) for _ in range(per_class)]
    return Clips(waveforms, np.repeat(np.arange(len(names)), per_class), list(names))


def source_set(kind: str, per_class: int, rng: np.random.Generator) -> Clips:
    if kind == "notes":
        return _clips([f"note-{k}" for k in range(len(NOTES))], lambda k, r: synth([k], r), per_class, rng)
    if kind == "timbres":
        pairs = [(note, timbre) for note in range(len(NOTES)) for timbre in PRETRAIN_TIMBRES]
        return _clips([f"note-{n}-{t}" for n, t in pairs], lambda k, r: play(*pairs[k], r), per_class, rng)
    if kind == "rhythms":
        return _clips([p.replace(".", "-") for p in RHYTHMS], lambda k, r: drum(RHYTHMS[k], r), per_class, rng)
    raise ValueError(f"unknown source set {kind!r}")


def target_set(name: str, per_class: int, rng: np.random.Generator) -> Clips:
    if name == "chords":
        return _clips([f"chord-{a}-{b}" for a, b in CHORDS], lambda k, r: synth(CHORDS[k], r), per_class, rng)
    if name == "timbre-notes":
        pairs = [(note, timbre) for note in TARGET_NOTES for timbre in TARGET_TIMBRES]
        return _clips([f"note-{n}-{t}" for n, t in pairs], lambda k, r: play(*pairs[k], r), per_class, rng)
    raise ValueError(f"unknown target {name!r}: choose among {', '.join(TARGETS)}")


def write_folder(clips: Clips, root: Path) -> Path:
    """One folder of float WAV files per class (read back exactly), the layout `zoo adapt` reads."""
    import soundfile

    for i, (waveform, label) in enumerate(zip(clips.waveforms, clips.labels, strict=True)):
        folder = root / clips.names[label]
        folder.mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / f"{i:05d}.wav", waveform, RATE, subtype="FLOAT")
    return root


# --- the encoders -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Architecture:
    name: str
    kind: str                               # "wav2vec2" or "ast"
    hidden: int
    layers: int
    conv: tuple[int, ...] = ()              # wav2vec2: channels of its three convolutions
    lr: float = 2e-3                        # pretraining peak learning rate

    def config(self, labels: Sequence[str]):
        from transformers import ASTConfig, Wav2Vec2Config

        head = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}
        if self.kind == "wav2vec2":
            # Strides 10, 4, 2 make 48 frames of 5 ms from a 0.25 s clip; layer norm in the feature encoder, so
            # padding is masked exactly. No dropout and ReLU in the convolutions: these encoders are small and
            # the whole zoo must pretrain and fine-tune in minutes on one CPU thread.
            return Wav2Vec2Config(hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=4,
                                  intermediate_size=2 * self.hidden, conv_dim=self.conv, conv_stride=(10, 4, 2),
                                  conv_kernel=(20, 8, 4), feat_extract_norm="layer", feat_extract_activation="relu",
                                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, layerdrop=0.0,
                                  hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                                  feat_proj_dropout=0.0, final_dropout=0.0, **head)
        # 8x8 patches every 4 frames and 4 mel bins of a 24-frame, 32-bin log-mel spectrogram: 35 patches.
        return ASTConfig(hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=4,
                         intermediate_size=2 * self.hidden, patch_size=8, frequency_stride=4, time_stride=4,
                         max_length=AST_FRAMES, num_mel_bins=AST_MELS, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, **head)

    def model(self, labels: Sequence[str]):
        from transformers import ASTForAudioClassification, Wav2Vec2ForSequenceClassification

        kind = Wav2Vec2ForSequenceClassification if self.kind == "wav2vec2" else ASTForAudioClassification
        return kind(self.config(labels))


AST_FRAMES, AST_MELS = 24, 32           # 10 ms frames of a 0.25 s clip (kaldi's framing gives 23), 32 mel bins
ARCHITECTURES = {a.name: a for a in (
    Architecture("w2v-s", "wav2vec2", hidden=64, layers=2, conv=(16, 32, 32)),
    Architecture("w2v-l", "wav2vec2", hidden=96, layers=4, conv=(32, 48, 48)),
    Architecture("ast-s", "ast", hidden=64, layers=2, lr=1e-3),
)}


def _extractor(kind: str, notes: Clips | None = None):
    """The feature extractor saved beside each encoder of ``kind``. AST's normalises the log-mel spectrogram with
    the mean and spread of the source's (as AST does with AudioSet's): ``notes`` gives them."""
    from transformers import ASTFeatureExtractor, Wav2Vec2FeatureExtractor

    if kind == "wav2vec2":
        return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True,
                                        return_attention_mask=True)
    raw = ASTFeatureExtractor(num_mel_bins=AST_MELS, max_length=AST_FRAMES, sampling_rate=RATE, do_normalize=False)
    spectra = np.stack(raw(notes.waveforms, sampling_rate=RATE)["input_values"])
    # AST's extractor computes (x - mean) / (2 std).
    return ASTFeatureExtractor(num_mel_bins=AST_MELS, max_length=AST_FRAMES, sampling_rate=RATE,
                               mean=float(spectra.mean()), std=float(spectra.std()))


class Encoded:
    """Clips as one extractor's model inputs, with their labels, and the batches they make."""

    def __init__(self, extractor, clips: Clips) -> None:
        self.extractor, self.labels = extractor, clips.labels
        features = extractor(clips.waveforms, sampling_rate=RATE)
        self.items = [{**{key: value[i] for key, value in features.items()}, "labels": int(label)}
                      for i, label in enumerate(clips.labels)]

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.extractor.pad(items, return_tensors="pt"))


def with_loss(model, label_smoothing: float):
    """The task model with a label-smoothed cross-entropy as its loss, as `train_steps` calls it."""
    import torch.nn as nn
    import torch.nn.functional as F
    from transformers.modeling_outputs import SequenceClassifierOutput

    class Smoothed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, labels, **inputs):
            logits = self.inner(**inputs).logits
            return SequenceClassifierOutput(loss=F.cross_entropy(logits, labels, label_smoothing=label_smoothing),
                                            logits=logits)

    return Smoothed()


@dataclass(frozen=True)
class Stage:
    data: str                           # a source set: notes, timbres or rhythms
    steps: int                          # optimizer steps of batch 32, with their own warm-up and cosine decay
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class Recipe:
    name: str
    architecture: str
    stages: tuple[Stage, ...]
    description: str


RECIPES = [
    Recipe("notes100", "w2v-s", (Stage("notes", 100),), "100 steps on the source (16 notes)"),
    Recipe("notes300", "w2v-s", (Stage("notes", 300),), "300 steps on the source (16 notes)"),
    # Label smoothing moves source accuracy; it is reported to make features less transferable (Kornblith et al.,
    # 2021).
    Recipe("notes300-ls", "w2v-s", (Stage("notes", 300, label_smoothing=0.3),),
           "300 steps on the source (16 notes), label smoothing 0.3"),
    Recipe("timbres300-ft100", "w2v-s", (Stage("timbres", 300), Stage("notes", 100)),
           "300 steps on 16 notes in 4 timbres (64 classes), then 100 on the source"),
    Recipe("rhythms300-ft100", "w2v-s", (Stage("rhythms", 300), Stage("notes", 100)),
           "300 steps on 8 rhythms of noise bursts (unrelated to pitch), then 100 on the source"),
    Recipe("notes300", "w2v-l", (Stage("notes", 300),), "300 steps on the source (16 notes)"),
    Recipe("notes300", "ast-s", (Stage("notes", 300),), "300 steps on the source (16 notes)"),
]


def _encoder(model):
    return getattr(model, model.base_model_prefix)


def build_zoo(work: Path, *, seed: int, quick: bool) -> tuple[Path, list[Backbone]]:
    """Pretrain every recipe, save each as a transformers folder with its feature extractor, and write a registry
    file naming them all. ``seed`` draws the source clips and every architecture's initial weights (the same for
    each recipe of an architecture)."""
    import torch

    from zoo.engine.seeds import derive_seed, seeded_globals

    steps_scale, clips_scale = (QUICK_STEPS, QUICK_CLIPS) if quick else (1.0, 1.0)
    per_class = {kind: max(4, round(n * clips_scale)) for kind, n in SOURCE_PER_CLASS.items()}
    sources = {kind: source_set(kind, n, np.random.default_rng([seed, k]))
               for k, (kind, n) in enumerate(per_class.items())}
    held_out = source_set("notes", max(4, round(HELD_OUT_PER_CLASS * clips_scale)), np.random.default_rng([seed, 99]))
    extractors = {kind: _extractor(kind, sources["notes"]) for kind in ("wav2vec2", "ast")}
    encoded: dict[tuple[str, str], Encoded] = {}

    def inputs(kind: str, data: str) -> Encoded:
        if (kind, data) not in encoded:
            encoded[kind, data] = Encoded(extractors[kind], held_out if data == "held-out" else sources[data])
        return encoded[kind, data]

    trained: dict[tuple[str, tuple[Stage, ...]], Any] = {}   # the model after each prefix: shared ones train once
    backbones, blocks = [], []
    for recipe in RECIPES:
        started = time.monotonic()
        architecture = ARCHITECTURES[recipe.architecture]
        done = max((k for k in range(len(recipe.stages) + 1) if (architecture.name, recipe.stages[:k]) in trained),
                   default=0)
        if done:
            model = copy.deepcopy(trained[architecture.name, recipe.stages[:done]])
        else:
            torch.manual_seed(seed)
            model = architecture.model(sources[recipe.stages[0].data].names)
        for k in range(done, len(recipe.stages)):
            stage = recipe.stages[k]
            data = inputs(architecture.kind, stage.data)
            # wav2vec2 draws its time masks from numpy's global generator: seeded, so that a zoo seed is one zoo.
            with seeded_globals(derive_seed(seed, k)):
                if k:   # a fresh head for this stage's classes, on the encoder so far
                    fresh = architecture.model(sources[stage.data].names)
                    _encoder(fresh).load_state_dict(_encoder(model).state_dict())
                    model = fresh
                train_steps(with_loss(model, stage.label_smoothing), data.items, data.collate,
                            steps=max(1, round(stage.steps * steps_scale)), lr=architecture.lr, seed=seed * 1000 + k,
                            batch=BATCH)
            trained[architecture.name, recipe.stages[:k + 1]] = copy.deepcopy(model)
        test = inputs(architecture.kind, "held-out")
        accuracy = float((predict(model, test.items, test.collate) == test.labels).mean())
        name = f"{architecture.name}.{recipe.name}"
        folder = work / "zoo" / name
        model.save_pretrained(folder)
        extractors[architecture.kind].save_pretrained(folder)
        params = sum(p.numel() for p in _encoder(model).parameters()) / 1e6
        description = (f"{architecture.kind} encoder, {architecture.layers} layers {architecture.hidden} wide "
                       f"({params:.2f}M parameters): {recipe.description}")
        extra = (f'pretrain = "{description}"\nreference = [{{ metric = "{SOURCE_METRIC}", value = '
                 f'{accuracy * 100:.2f}, source = "benchmarks/surrogate_audio.py: top-1 on held-out clips of the '
                 'surrogate source task (16 synthetic notes)" }]\n')
        blocks.append(transformers_local_entry(name, folder, task=TASK, params_m=params,
                                               input_table=f"sample_rate = {RATE}, seconds = {CLIP_SECONDS}")
                      + extra)
        backbones.append(Backbone(name, recipe.name, description, accuracy, params))
        print(f"  {name}: source top-1 {accuracy:.3f} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    registry = work / "zoo.toml"
    registry.write_text("\n".join(blocks))
    return registry, backbones


def make_target(name: str, work: Path, *, seed: int, quick: bool) -> Target:
    """``name``'s training and test clips for ``seed``, written as class folders of float WAV files."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}: choose among {', '.join(TARGETS)}")
    counts = {split: QUICK_TARGET_PER_CLASS if quick else n for split, n in TARGET_PER_CLASS.items()}
    root = work / "targets" / name
    folders = {split: write_folder(target_set(name, n, np.random.default_rng([seed, 1000 + TARGETS.index(name), k])),
                                   root / split)
               for k, (split, n) in enumerate(counts.items())}
    sizes = f"{counts['train']} training and {counts['test']} test clips per class"
    description = {
        "chords": f"10 two-note chords of the source's notes, each note in a random timbre; {sizes}",
        "timbre-notes": f"{len(TARGET_NOTES)} of the source's notes, each played in {len(TARGET_TIMBRES)} timbres no "
                        f"backbone was pretrained on ({', '.join(TARGET_TIMBRES)}): 10 classes, {sizes}",
    }[name]
    return Target(name, folders["train"], folders["test"], description)
