"""The configuration of one adapt run, the rules that fill in what the person left out, and the choice behind
`--strategy auto`."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from zoo import checks
from zoo.errors import InvalidInputError
from zoo.precision import PRECISIONS

STRATEGIES = ("auto", "linear", "lora", "full")
AUGMENTS = ("none", "light", "strong")

# Learning rates that work across the families for each strategy (AdamW, cosine schedule). A family may prefer its
# own for full and lora (Family.preferred_lr): CNNs fine-tune well at a higher rate than transformers.
DEFAULT_LR = {"linear": 1e-2, "lora": 5e-4, "full": 5e-5}
DEFAULT_BATCH_SIZE = 32
# The linear strategy keeps fixed defaults: its head trains on cached features, where 30 passes cost next to nothing.
LINEAR_EPOCHS = 30
# Full and LoRA fine-tuning plan a number of optimizer steps, not of epochs (BiT-HyperRule's idea: the fewer the
# examples, the more passes over them). BiT fine-tunes datasets under 20k examples for 500 steps of batch 512; with
# AdamW at batch 8 to 32 (below), 600 steps is 24 passes over 200 examples, 10 over 2,000 and the floor of 3 from
# 6,400 up. The floor keeps the 3 passes that fine-tuning recipes give large data (BERT's, the Hugging Face
# examples'); the ceiling stops tiny data from being memorised for hundreds of passes, and keeps the number of
# evaluations modest. The best epoch is kept and patience stops a run that peaked.
TARGET_STEPS = 600
MIN_EPOCHS, MAX_EPOCHS = 3, 50
# Full and LoRA on small data take smaller batches: more, noisier steps per pass, which small data sets need (at
# batch 32, 200 examples are 7 steps per epoch, and 50 epochs only 350 steps). The batch is the largest of
# BATCH_CHOICES that still gives MIN_STEPS_PER_EPOCH optimizer steps per epoch, and the smallest where none does:
# 32 from 1,600 examples up, 16 from 800, 8 below.
BATCH_CHOICES = (32, 16, 8)
MIN_STEPS_PER_EPOCH = 50
# Warm-up: 6% of the optimizer steps, but at least 10 steps, so that a short schedule does not start AdamW at its
# peak rate on a fresh head's large gradients; never more than a quarter of the schedule.
DEFAULT_WARMUP_RATIO = 0.06
MIN_WARMUP_STEPS = 10
MAX_WARMUP_RATIO = 0.25
# Patience, in evaluations (one at each epoch end): a quarter of the planned epochs, at least 3, so a 40-epoch
# schedule is not stopped by 3 noisy evaluations of a small validation set. The linear strategy keeps 3.
PATIENCE_FRACTION = 0.25
MIN_PATIENCE = 3
# `--strategy auto` trains both a linear probe and a fine-tuned candidate, and keeps the better on validation, up to
# this many training examples: the probe costs one forward pass over cached features, and the fine-tuning is capped
# near TARGET_STEPS steps (3 epochs, the floor, from 6,400 examples up). Above it, linear rarely wins and its
# features would be extracted for nothing: the size rule (choose_strategy) decides alone.
TRIAL_MAX_EXAMPLES = 20000
# A square side past any published classifier's input (timm's largest are about 1000 pixels): a mistyped size is
# refused before a run allocates batches of it.
MAX_IMAGE_SIZE = 4096
# The model card's "How it decides" (zoo.explain.decides): by default the DEFAULT_EXPLAIN_CARD most confident
# correct and wrong validation examples are explained within EXPLAIN_CARD_SHARE of the time the run took, so that a
# default run is not much slower for it; the first example is always explained, at the fewest steps, since it is the
# measurement (about a dozen forward passes of one example). Set with --explain-card N, N of each are explained
# whatever the time; 0 writes no section. At most MAX_EXPLAIN_CARD.
DEFAULT_EXPLAIN_CARD = 3
EXPLAIN_CARD_SHARE = 0.1
MAX_EXPLAIN_CARD = 50
# --soup-top-k: the most epochs kept for the within-run soup (each is a copy of the trained tensors in memory and in
# the checkpoint).
MAX_SOUP_TOP_K = 20
# The hyperparameters every run record and model card explain: the value used, the rule that chose it, and whether
# the person set it.
EXPLAINED = ("strategy", "epochs", "lr", "batch_size", "warmup_ratio", "patience", "image_size")
# The fields `zoo adapt` has an option for (named like the field: lr -> --lr); the rest are set through the API.
CLI_OPTIONS = ("strategy", "epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "grad_accum",
               "label_smoothing", "class_weights", "layer_decay", "lora_r", "lora_alpha", "precision", "compile",
               "augment", "image_size", "max_seconds", "max_length", "metric", "patience", "checkpoint_every", "seed",
               "explain_card", "soup_top_k", "workers")
# Fields that change how fast a run goes, never what it learns: the command that repeats a run leaves them out, so
# the machine that repeats it chooses its own.
SPEED_ONLY = ("workers",)
# --workers auto: worker processes decode and augment images and audio beside the training process (text is
# tokenized once before training: nothing to hand over; cached features have nothing to decode). On CUDA every core
# but the training process's own serves the loader, up to MAX_WORKERS. On a CPU the workers take cores from the
# matrix multiplies: one per CPU_CORES_PER_WORKER cores, and one from 2 cores, where it took a strong augmentation's
# data wait from 20% of a step to 2.3% at 0.96x the samples/s, within the noise (benchmarks/data_pipeline.py). An
# epoch of fewer than MIN_WORKER_BATCHES batches is over about as soon as the workers have started and filled
# their queues.
MAX_WORKERS = 8
CPU_CORES_PER_WORKER = 4
MIN_WORKER_BATCHES = 16
# Distillation's settings, which `zoo distill` spells --temperature and --alpha (AdaptRequest.command).
DISTILL_OPTIONS = {"distill_temperature": "--temperature", "distill_alpha": "--alpha"}


@dataclass
class AdaptConfig:
    """Everything that decides how a backbone is adapted; recorded in full in the run's zoo_run.json."""

    # what
    strategy: str = "auto"
    epochs: int | None = None               # None: from the data size (choices)
    batch_size: int | None = None           # None: by strategy and data size (choices)
    eval_batch_size: int = 64
    lr: float | None = None                 # None: the family's or DEFAULT_LR for the strategy (choices)
    weight_decay: float = 0.01
    warmup_ratio: float | None = None       # None: a share of the optimizer steps, with a minimum (choices)
    grad_accum: int = 1
    label_smoothing: float = 0.0
    class_weights: str = "none"             # none | auto (inverse frequency; pos_weight for multi-label)
    layer_decay: float | None = None        # full: layer-wise learning-rate decay factor, e.g. 0.75
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    # how
    precision: str = "auto"
    compile: bool = False
    augment: str = "light"
    image_size: int | None = None           # images: square input side (None: the backbone's own)
    max_seconds: float = 10.0               # audio: clips are cut to this length
    max_length: int | None = None           # text: tokens (None: the backbone's limit)
    group_by_length: bool = True            # text: batches of similar length, less padding
    workers: int | str = "auto"            # data-loading worker processes (auto: plan_workers, resolved into the
                                            # record); the weights never depend on it
    # when to stop
    metric: str | None = None               # early-stopping metric (None: the task's main one, Task.main_metric)
    patience: int | None = None             # evaluations without improvement before stopping (0: never; None:
                                            # from the planned epochs, choices)
    checkpoint_every: int = 50              # optimizer steps between checkpoints (and at every epoch end)
    seed: int = 0
    # after
    soup_top_k: int | None = None           # keep the K best epochs and end with their greedy soup on validation
                                            # (None or 0: off; zoo.engine.soup)
    explain_card: int | None = None         # the card's "How it decides": examples of each kind explained (0: none;
                                            # None: DEFAULT_EXPLAIN_CARD within a share of the training time)
    # distillation (zoo distill; both None for an ordinary run): the loss is alpha * T^2 * KL(teacher/T || student/T)
    # + (1 - alpha) * the hard-label loss (zoo.engine.trainer.distillation_loss)
    distill_temperature: float | None = None   # T, which softens both distributions
    distill_alpha: float | None = None         # the soft targets' share of the loss

    def __post_init__(self) -> None:
        checks.choice("--strategy", self.strategy, STRATEGIES)
        checks.choice("--precision", self.precision, PRECISIONS)
        checks.choice("--augment", self.augment, AUGMENTS)
        checks.choice("--class-weights", self.class_weights, ("none", "auto"))
        for name in ("eval_batch_size", "grad_accum", "checkpoint_every", "lora_r"):
            checks.whole(_option(name), getattr(self, name), low=1, allow_none=False)
        checks.whole("--epochs", self.epochs, low=1)
        checks.whole("--batch-size", self.batch_size, low=1)
        checks.whole("--max-length", self.max_length, low=1)
        checks.whole("--image-size", self.image_size, low=1, high=MAX_IMAGE_SIZE)
        checks.whole("--patience", self.patience, low=0)
        checks.whole("--explain-card", self.explain_card, low=0, high=MAX_EXPLAIN_CARD)
        checks.whole("--soup-top-k", self.soup_top_k, low=0, high=MAX_SOUP_TOP_K)
        if self.soup_top_k == 1:
            raise InvalidInputError(f"--soup-top-k 1 is the best epoch alone: give 2 to {MAX_SOUP_TOP_K} epochs to "
                                    "average, or 0 for none")
        self.workers = _workers(self.workers)
        checks.seed("--seed", self.seed)
        checks.number("--lr", self.lr, low=0, low_open=True)
        checks.number("--weight-decay", self.weight_decay, low=0, allow_none=False)
        checks.number("--warmup-ratio", self.warmup_ratio, low=0, high=1, high_open=True)
        checks.number("--label-smoothing", self.label_smoothing, low=0, high=1, high_open=True, allow_none=False)
        checks.number("--layer-decay", self.layer_decay, low=0, high=1, low_open=True)
        checks.number("--lora-alpha", self.lora_alpha, low=0, low_open=True, allow_none=False)
        checks.number("--lora-dropout", self.lora_dropout, low=0, high=1, high_open=True, allow_none=False)
        checks.number("--max-seconds", self.max_seconds, low=0, low_open=True, allow_none=False)
        checks.number("--temperature", self.distill_temperature, low=0, low_open=True)
        checks.number("--alpha", self.distill_alpha, low=0, high=1)
        if self.distills and self.strategy == "linear":
            raise InvalidInputError("--strategy linear: the linear head is solved in closed form and takes no soft "
                                    "targets; distil with --strategy full, lora or auto (auto fine-tunes)")

    @property
    def distills(self) -> bool:
        """Whether this run learns from a teacher's soft targets (zoo distill)."""
        return self.distill_temperature is not None or self.distill_alpha is not None

    def resolved(self, strategy: str, *, num_train: int, image_size: int | None = None,
                 family: str = "", family_lr: Mapping[str, float] | None = None, device: str = "cpu",
                 input_kind: str = "", processes: int = 1) -> AdaptConfig:
        """A copy with the strategy chosen and every default filled in (the arguments as for :meth:`choices`)."""
        made = self.choices(strategy, "", num_train=num_train, image_size=image_size, family=family,
                            family_lr=family_lr, device=device, input_kind=input_kind, processes=processes)
        return AdaptConfig(**{**asdict(self), **{name: choice.value for name, choice in made.items()}})

    def choices(self, strategy: str, strategy_reason: str, *, num_train: int, image_size: int | None = None,
                family: str = "", family_lr: Mapping[str, float] | None = None,
                candidates: Mapping[str, float | None] | None = None, device: str = "cpu", input_kind: str = "",
                processes: int = 1) -> dict[str, Choice]:
        """The value of each :data:`EXPLAINED` hyperparameter, the rule that chose it, and whether the person set it.

        The one home of the defaults' rules. ``strategy`` is the strategy the run uses (chosen by
        :func:`auto_candidates` and :func:`choose_by_validation` for auto, with ``strategy_reason``, and
        ``candidates``: each tried strategy's validation score, None until known); ``num_train`` the number of
        training examples; ``image_size`` the backbone's own input size, or None where inputs are not images (then
        no image size is listed); ``family`` and ``family_lr`` the backbone's family and the learning rates it
        prefers (:attr:`zoo.family.Family.preferred_lr`); ``device`` ("cpu" or "cuda"), ``input_kind`` (the task's)
        and ``processes`` (training processes on this machine) decide the data-loading workers (:func:`plan_workers`).
        """
        if self.strategy != "auto":
            made = {"strategy": Choice(strategy, "set with --strategy", True)}
        else:
            made = {"strategy": Choice(strategy, f"auto: {strategy_reason}" if strategy_reason else "auto", False,
                                       dict(candidates) if candidates else None)}
        if strategy == "linear":   # a solved head reads every cached example at once: the batch plays no part
            batch_size = _given("batch_size", self.batch_size, DEFAULT_BATCH_SIZE, "default")
        else:
            batch_size = _given("batch_size", self.batch_size, *_planned_batch(num_train, self.grad_accum))
        if strategy == "linear":   # fixed: a head on cached features is cheap to train for many passes
            epochs = _given("epochs", self.epochs, LINEAR_EPOCHS, "default for the linear strategy")
        else:
            epochs = _given("epochs", self.epochs, *_planned_epochs(strategy, num_train, batch_size.value,
                                                                     self.grad_accum))
        made["epochs"] = epochs
        made["lr"] = _given("lr", self.lr, *_default_lr(strategy, family, family_lr or {}))
        made["batch_size"] = batch_size
        total_steps = epochs.value * _steps_per_epoch(num_train, batch_size.value, self.grad_accum)
        if strategy == "linear":
            made["warmup_ratio"] = _given("warmup_ratio", self.warmup_ratio, DEFAULT_WARMUP_RATIO,
                                          f"default: the first {DEFAULT_WARMUP_RATIO:.0%} of optimizer steps warm "
                                          "up, then a cosine decay")
            made["patience"] = _given("patience", self.patience, MIN_PATIENCE,
                                      f"default: stop after {MIN_PATIENCE} epochs without improvement")
        else:
            made["warmup_ratio"] = _given("warmup_ratio", self.warmup_ratio, *_warmup(total_steps))
            made["patience"] = _given("patience", self.patience, *_patience(epochs.value))
        if self.image_size is not None or image_size is not None:
            made["image_size"] = _given("image_size", self.image_size, image_size, "default: the backbone's input "
                                        "size")
        if self.workers == "auto":
            batches = math.ceil(num_train / max(1, processes) / batch_size.value)   # each process's share
            made["workers"] = Choice(*plan_workers(strategy, input_kind=input_kind, device=device, batches=batches,
                                                   processes=processes), False)
        else:
            made["workers"] = Choice(self.workers, "set with --workers", True)
        return made

    def explain_card_plan(self, training_s: float) -> tuple[int, float | None, str]:
        """The card's "How it decides" for a run whose training took ``training_s`` seconds: how many of the most
        confident correct (and of the wrong) validation examples to explain, the time allowed (None: no limit), and
        the rule that chose them."""
        if self.explain_card is not None:
            return self.explain_card, None, "set with --explain-card"
        budget = round(EXPLAIN_CARD_SHARE * training_s, 2)
        return DEFAULT_EXPLAIN_CARD, budget, (f"default: up to {DEFAULT_EXPLAIN_CARD} of each, within "
                                              f"{EXPLAIN_CARD_SHARE:.0%} of the training time ({budget:g} s of "
                                              f"{training_s:.1f} s)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def command_options(self) -> tuple[list[str], list[str]]:
        """The `zoo adapt` options that give this (resolved) config: every :data:`EXPLAINED` value and the seed
        spelled out, other options where they differ from the default; and the fields that differ but have no
        command-line option (set through the Python API)."""
        defaults = AdaptConfig()
        options: list[str] = []
        unexpressed: list[str] = []
        for item in fields(self):
            value = getattr(self, item.name)
            shown = item.name in EXPLAINED or item.name == "seed"
            if value is None or (not shown and value == getattr(defaults, item.name)) \
                    or item.name in DISTILL_OPTIONS \
                    or item.name in SPEED_ONLY:   # zoo distill's own options (AdaptRequest.command)
                continue
            if item.name not in CLI_OPTIONS:
                unexpressed.append(f"{item.name}={value!r}")
            elif isinstance(value, bool):   # a flag (--compile), given only when on
                options.append(_option(item.name))
            else:                           # repr: a float's shortest exact spelling, 5e-05
                options += [_option(item.name), repr(value) if isinstance(value, float) else str(value)]
        return options, unexpressed

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Choice:
    """One resolved hyperparameter: its value, the rule that chose it, and whether the person set it."""

    value: Any
    rule: str           # "set with --lr", or the default's rule: "default for the full strategy"
    set: bool
    # auto, when it tried more than one strategy: each one's validation score (None until it has one)
    candidates: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        made = asdict(self)
        if self.candidates is None:
            del made["candidates"]
        return made


def _workers(value: Any) -> int | str:
    """--workers as given: "auto", or a number of processes (a string of digits from the command line too)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise InvalidInputError(f"--workers must be auto or a whole number of processes (0: load data in the training "
                            f"process), got {value!r}")


def plan_workers(strategy: str, *, input_kind: str, device: str, batches: int | None = None,
                 cpu_count: int | None = None, processes: int = 1) -> tuple[int, str]:
    """--workers auto: the data-loading worker processes for ``strategy`` on ``input_kind`` examples ("image",
    "text", "audio"; "" when unknown) on ``device`` ("cpu" or "cuda"), ``batches`` training batches per epoch (None:
    many), with ``processes`` training processes sharing ``cpu_count`` cores (None: the cores this process may use);
    and the rule that chose them."""
    if strategy == "linear":
        return 0, "auto: the linear head trains on cached features, with nothing left to decode"
    if input_kind not in ("image", "audio"):
        return 0, ("auto: text is tokenized in the training process (once, before the first epoch, where nothing "
                   "draws augmentation), too cheap to hand to other processes")
    if batches is not None and batches < MIN_WORKER_BATCHES:
        return 0, (f"auto: {batches} batch{'' if batches == 1 else 'es'} per epoch (fewer than "
                   f"{MIN_WORKER_BATCHES}) load in the training process before workers would have started")
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = max(1, cpu_count // max(1, processes))
    if device == "cuda":
        workers = min(MAX_WORKERS, cores - 1)
        said = f"every core but the training process's ({cores} per process), at most {MAX_WORKERS}"
    else:
        workers = min(MAX_WORKERS, max(1, cores // CPU_CORES_PER_WORKER)) if cores >= 2 else 0
        said = f"one per {CPU_CORES_PER_WORKER} cores and one from 2 ({cores} per process) on a CPU, where " \
               "workers take cores from training"
    where = f"{workers} worker process{'es' if workers > 1 else ''}" if workers else "the training process"
    return workers, f"auto: {input_kind} decoding and augmentation in {where}: {said}"


def _given(name: str, value: Any, default: Any, rule: str) -> Choice:
    if value is None:
        return Choice(default, rule, False)
    return Choice(value, f"set with {_option(name)}", True)


def _option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _steps_per_epoch(num_train: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one pass over ``num_train`` examples (the loop's last step of an epoch may be short)."""
    return max(1, -(-num_train // (batch_size * grad_accum)))


def _planned_batch(num_train: int, grad_accum: int) -> tuple[int, str]:
    """Full and LoRA: the largest of BATCH_CHOICES that gives MIN_STEPS_PER_EPOCH steps per epoch (else the
    smallest), so small data gets more, smaller steps."""
    batch = next((size for size in BATCH_CHOICES
                  if _steps_per_epoch(num_train, size, grad_accum) >= MIN_STEPS_PER_EPOCH), BATCH_CHOICES[-1])
    said = f"default for {_count(num_train, 'training example')}: "
    if batch == BATCH_CHOICES[0]:
        return batch, said + f"{batch} gives at least {MIN_STEPS_PER_EPOCH} optimizer steps per epoch"
    if _steps_per_epoch(num_train, batch, grad_accum) >= MIN_STEPS_PER_EPOCH:
        return batch, (said + f"the largest of {', '.join(map(str, BATCH_CHOICES))} that gives at least "
                       f"{MIN_STEPS_PER_EPOCH} optimizer steps per epoch")
    return batch, said + f"the smallest of {', '.join(map(str, BATCH_CHOICES))} (small data takes more, smaller steps)"


def _planned_epochs(strategy: str, num_train: int, batch_size: int, grad_accum: int) -> tuple[int, str]:
    """Full and LoRA: the epochs that make about TARGET_STEPS optimizer steps, within MIN_EPOCHS..MAX_EPOCHS."""
    per_epoch = _steps_per_epoch(num_train, batch_size, grad_accum)
    wanted = math.ceil(TARGET_STEPS / per_epoch)
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, wanted))
    batch = f"batch {batch_size}" + (f" x {grad_accum} accumulated" if grad_accum > 1 else "")
    said = (f"{_count(num_train, 'training example')} at {batch} are {_count(per_epoch, 'optimizer step')} per "
            f"epoch; the {strategy} strategy aims for {TARGET_STEPS} steps")
    if epochs == wanted:
        return epochs, (f"{said}: {_count(epochs, 'epoch')} make {epochs * per_epoch} (within {MIN_EPOCHS} to "
                        f"{MAX_EPOCHS})")
    bound = "the fewest" if epochs == MIN_EPOCHS else "the most"
    return epochs, (f"{said}, which {_count(wanted, 'epoch')} would make: {epochs}, {bound} it plans "
                    f"({epochs * per_epoch} steps)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _default_lr(strategy: str, family: str, family_lr: Mapping[str, float]) -> tuple[float, str]:
    """The family's preferred rate for ``strategy`` where it declares one, else the strategy's."""
    if strategy != "linear" and family_lr.get(strategy) is not None:
        return float(family_lr[strategy]), f"the {family} family's default for the {strategy} strategy"
    return DEFAULT_LR[strategy], f"default for the {strategy} strategy"


def _warmup(total_steps: int) -> tuple[float, str]:
    """A share of the steps: DEFAULT_WARMUP_RATIO, or what MIN_WARMUP_STEPS need, at most MAX_WARMUP_RATIO."""
    ratio = max(DEFAULT_WARMUP_RATIO, min(MAX_WARMUP_RATIO, MIN_WARMUP_STEPS / total_steps))
    ratio = round(ratio, 4)      # the record's spelling; the loop warms up round(ratio * steps) steps
    steps = round(ratio * total_steps)
    if ratio == DEFAULT_WARMUP_RATIO:
        why = f"{DEFAULT_WARMUP_RATIO:.0%} of the {total_steps} optimizer steps"
    elif ratio == MAX_WARMUP_RATIO:
        why = (f"{MIN_WARMUP_STEPS} steps would be over a quarter of the {total_steps} optimizer steps: a quarter, "
               "the most")
    else:
        why = f"at least {MIN_WARMUP_STEPS} steps ({DEFAULT_WARMUP_RATIO:.0%} of {total_steps} would be fewer)"
    return ratio, f"default: {steps} warm-up steps, {why}; then a cosine decay"


def _patience(epochs: int) -> tuple[int, str]:
    """PATIENCE_FRACTION of the planned epochs, at least MIN_PATIENCE."""
    patience = max(MIN_PATIENCE, math.ceil(PATIENCE_FRACTION * epochs))
    return patience, (f"default: stop after {patience} evaluations (epoch ends) without improvement: a quarter of "
                      f"the {epochs} planned epochs, at least {MIN_PATIENCE}")


def choose_strategy(num_train: int, params_m: float, device: str) -> tuple[str, str]:
    """The size rule: the strategy that fits the data size and the compute, and the reason. `--strategy auto` goes
    by it alone above TRIAL_MAX_EXAMPLES (:func:`auto_candidates`); `zoo recommend` suggests by it."""
    if num_train < 1000:
        return "linear", (f"{num_train} training examples (fewer than 1000): a linear probe on frozen, cached "
                          "features is fast and resists over-fitting")
    if device == "cpu" and params_m > 30:
        return "linear", (f"{params_m:.0f}M parameters (over 30M) on a CPU: fine-tuning would be slow; a linear "
                          "probe on cached features trains in minutes")
    if num_train < 20000 and params_m > 30:
        return "lora", (f"{num_train} examples (fewer than 20000): LoRA adapts the {params_m:.0f}M-parameter "
                        "backbone cheaply")
    return "full", f"{num_train} examples and a {params_m:.0f}M-parameter backbone: fine-tune every layer"


def auto_candidates(num_train: int, params_m: float, device: str) -> tuple[tuple[str, ...], str]:
    """`--strategy auto`: the strategies to train, in order, and the reason.

    Up to TRIAL_MAX_EXAMPLES training examples, two: linear first (nearly free on cached features), then the
    fine-tuning the size rule would use for the backbone (lora over 30M parameters, else full); the better on
    validation is kept (:func:`choose_by_validation`). Above it, or where fine-tuning is out of reach (a backbone
    over 30M parameters on a CPU), the size rule's one strategy (:func:`choose_strategy`).
    """
    if device == "cpu" and params_m > 30:
        strategy, why = choose_strategy(num_train, params_m, device)
        return (strategy,), why
    if num_train > TRIAL_MAX_EXAMPLES:
        strategy, why = choose_strategy(num_train, params_m, device)
        return (strategy,), (f"{why} (over {TRIAL_MAX_EXAMPLES} examples the size rule decides: a linear probe "
                             "rarely wins there)")
    tuned = "lora" if params_m > 30 else "full"
    why = "LoRA (the backbone has over 30M parameters)" if tuned == "lora" else "full fine-tuning"
    return ("linear", tuned), (f"{num_train} training examples (at most {TRIAL_MAX_EXAMPLES}): both a linear probe "
                               f"and {why} are trained, and the better on validation kept")


def distill_strategy(num_train: int, params_m: float, device: str) -> tuple[str, str]:
    """`--strategy auto` for a distilled student: the fine-tuning auto would train (:func:`auto_candidates`), and
    the reason. The linear probe is left out: its head is solved in closed form on hard labels and takes no soft
    targets; where auto would only probe (a backbone over 30M parameters on a CPU), LoRA."""
    tried, _ = auto_candidates(num_train, params_m, device)
    why = "distillation trains on the teacher's soft targets, which a linear probe's closed-form head cannot take"
    tuned = next((strategy for strategy in tried if strategy != "linear"), None)
    if tuned is None:
        return "lora", f"{why}: LoRA, as auto would only probe a {params_m:g}M-parameter backbone on a {device}"
    how = {"full": "full fine-tuning", "lora": "LoRA"}[tuned]
    return tuned, (f"{why}: {how}, the fine-tuning auto uses for {params_m:g}M parameters and {num_train} training "
                   "examples")


def choose_by_validation(scores: Mapping[str, float], metric: str) -> tuple[str, str]:
    """The candidate with the best validation ``metric`` (``scores``, in the order they were tried), and the
    reason; a tie goes to the first, the cheaper (linear)."""
    def value(strategy: str) -> float:
        score = scores[strategy]
        return -math.inf if score is None or math.isnan(score) else score

    order = list(scores)
    winner = order[0]
    for strategy in order[1:]:
        if value(strategy) > value(winner):
            winner = strategy
    tie = any(value(s) == value(winner) for s in order if s != winner)
    said = " vs ".join(f"{s} {scores[s]:.4g}" if scores[s] is not None else f"{s} none" for s in order)
    return winner, f"{said} on validation {metric}: {winner}" + (" (a tie goes to the cheaper)" if tie else "")


# Between the plan's reason and the verdict in a tried run's strategy reason (auto_candidates' and choose_strategy's
# reasons never contain it), so a resumed run can draw the verdict again.
_VERDICT = "; "


def with_verdict(reason: str, verdict: str) -> str:
    """The strategy reason of a run that tried several: the plan's reason, then :func:`choose_by_validation`'s."""
    return f"{reason}{_VERDICT}{verdict}"


def plan_reason(reason: str) -> str:
    """The plan's part of a reason :func:`with_verdict` made (the whole of one it did not)."""
    return reason.split(_VERDICT, 1)[0]
