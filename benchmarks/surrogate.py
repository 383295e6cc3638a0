"""What `benchmarks/recommend_eval.py` needs of a surrogate zoo, one module per modality.

Real pretrained weights cannot be downloaded everywhere the evaluation must run, so each modality's module
(`surrogate_image.py`, `surrogate_text.py`, `surrogate_audio.py`) pretrains a small zoo itself, where backbones
differ in quality for the reasons real ones do (how much and on what they were pretrained, their size, choices such
as label smoothing that move source accuracy without moving transfer). Each module provides:

- ``TASK``: the zoo task name (``image-cls``, ``text-cls``, ``audio-cls``);
- ``SOURCE_METRIC``: the reference metric each backbone's held-out source accuracy is published under, one the
  data-free prior ranks by for ``TASK`` (``zoo.tasks``);
- ``TARGETS``: the names of its target tasks (at least two);
- ``TRUTH``: the keyword arguments of ``zoo.engine.config.AdaptConfig`` for the ground truth (`zoo adapt
  --strategy full`, no early stopping; the seed is set by the driver);
- ``build_zoo(work, *, seed, quick) -> (registry, [Backbone])``: pretrain the zoo (``seed`` draws the source data
  and the initial weights: the second zoo seed is a second, independent zoo) and write a registry file naming it;
- ``make_target(name, work, *, seed, quick) -> Target``: a target's training set (which `zoo recommend --data`
  scores the zoo on) and held-out test set, written where `zoo adapt` reads them.

``quick`` is a smoke run: a minute, figures meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Backbone:
    name: str               # its registry name
    recipe: str             # a short id of how it was made
    description: str        # how it was pretrained, in words
    source_score: float     # held-out accuracy on its source task (0..1): its published number
    params_m: float         # million parameters of the encoder


@dataclass
class Target:
    name: str
    train: Path             # `zoo adapt --data` and `zoo recommend --data`
    test: Path              # `zoo adapt --val`: the ground truth's held-out set
    description: str
