"""The configuration of one adapt run, and the choice behind `--strategy auto`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from zoo import checks

STRATEGIES = ("auto", "linear", "lora", "full")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
AUGMENTS = ("none", "light", "strong")

# Learning rates that work across the families for each strategy (AdamW, cosine schedule).
DEFAULT_LR = {"linear": 1e-2, "lora": 5e-4, "full": 5e-5}
DEFAULT_EPOCHS = {"linear": 30, "lora": 5, "full": 5}
DEFAULT_BATCH_SIZE = 32
DEFAULT_WARMUP_RATIO = 0.06
DEFAULT_PATIENCE = 3
# A square side past any published classifier's input (timm's largest are about 1000 pixels): a mistyped size is
# refused before a run allocates batches of it.
MAX_IMAGE_SIZE = 4096
# The hyperparameters every run record and model card explain: the value used, the rule that chose it, and whether
# the person set it.
EXPLAINED = ("strategy", "epochs", "lr", "batch_size", "warmup_ratio", "patience", "image_size")
# The fields `zoo adapt` has an option for (named like the field: lr -> --lr); the rest are set through the API.
CLI_OPTIONS = ("strategy", "epochs", "batch_size", "lr", "warmup_ratio", "grad_accum", "label_smoothing",
               "class_weights", "layer_decay", "precision", "compile", "augment", "image_size", "max_seconds",
               "max_length", "metric", "patience", "checkpoint_every", "seed")


@dataclass
class AdaptConfig:
    """Everything that decides how a backbone is adapted; recorded in full in the run's zoo_run.json."""

    # what
    strategy: str = "auto"
    epochs: int | None = None               # None: DEFAULT_EPOCHS[strategy]
    batch_size: int | None = None           # None: DEFAULT_BATCH_SIZE
    eval_batch_size: int = 64
    lr: float | None = None                 # None: DEFAULT_LR[strategy]
    weight_decay: float = 0.01
    warmup_ratio: float | None = None       # None: DEFAULT_WARMUP_RATIO of the optimizer steps
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
    num_workers: int = 0
    # when to stop
    metric: str | None = None               # early-stopping metric (None: accuracy, or micro_f1 for multi-label)
    patience: int | None = None             # epochs without improvement before stopping (0: never; None: 3)
    checkpoint_every: int = 50              # optimizer steps between checkpoints (and at every epoch end)
    seed: int = 0

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
        checks.whole("--num-workers", self.num_workers, low=0, allow_none=False)
        checks.seed("--seed", self.seed)
        checks.number("--lr", self.lr, low=0, low_open=True)
        checks.number("--weight-decay", self.weight_decay, low=0, allow_none=False)
        checks.number("--warmup-ratio", self.warmup_ratio, low=0, high=1, high_open=True)
        checks.number("--label-smoothing", self.label_smoothing, low=0, high=1, high_open=True, allow_none=False)
        checks.number("--layer-decay", self.layer_decay, low=0, high=1, low_open=True)
        checks.number("--lora-alpha", self.lora_alpha, low=0, low_open=True, allow_none=False)
        checks.number("--lora-dropout", self.lora_dropout, low=0, high=1, high_open=True, allow_none=False)
        checks.number("--max-seconds", self.max_seconds, low=0, low_open=True, allow_none=False)

    def resolved(self, strategy: str, *, image_size: int | None = None) -> AdaptConfig:
        """A copy with the strategy chosen and every default filled in; ``image_size`` is the backbone's own input
        size (None for inputs that are not images), used when the person gave none."""
        return AdaptConfig(**{**asdict(self), **{name: choice.value
                                                 for name, choice in self.choices(strategy, "",
                                                                                  image_size=image_size).items()}})

    def choices(self, strategy: str, strategy_reason: str, *,
                image_size: int | None = None) -> dict[str, Choice]:
        """The value of each :data:`EXPLAINED` hyperparameter, the rule that chose it, and whether the person set it.

        The one home of the defaults' rules. ``strategy`` is the strategy the run uses (chosen by
        :func:`choose_strategy` for auto, with ``strategy_reason``); ``image_size`` the backbone's own input size,
        or None where inputs are not images (then no image size is listed).
        """
        made = {
            "strategy": Choice(strategy, "set with --strategy", True) if self.strategy != "auto"
            else Choice(strategy, f"auto: {strategy_reason}" if strategy_reason else "auto", False),
            "epochs": _given("epochs", self.epochs, DEFAULT_EPOCHS[strategy], f"default for the {strategy} strategy"),
            "lr": _given("lr", self.lr, DEFAULT_LR[strategy], f"default for the {strategy} strategy"),
            "batch_size": _given("batch_size", self.batch_size, DEFAULT_BATCH_SIZE, "default"),
            "warmup_ratio": _given("warmup_ratio", self.warmup_ratio, DEFAULT_WARMUP_RATIO,
                                   f"default: the first {DEFAULT_WARMUP_RATIO:.0%} of optimizer steps warm up, "
                                   "then a cosine decay"),
            "patience": _given("patience", self.patience, DEFAULT_PATIENCE,
                               f"default: stop after {DEFAULT_PATIENCE} epochs without improvement"),
        }
        if self.image_size is not None or image_size is not None:
            made["image_size"] = _given("image_size", self.image_size, image_size, "default: the backbone's input "
                                        "size")
        return made

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
            if value is None or (not shown and value == getattr(defaults, item.name)):
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _given(name: str, value: Any, default: Any, rule: str) -> Choice:
    if value is None:
        return Choice(default, rule, False)
    return Choice(value, f"set with {_option(name)}", True)


def _option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def choose_strategy(num_train: int, params_m: float, device: str) -> tuple[str, str]:
    """`--strategy auto`: the strategy that fits the data size and the compute, and the reason."""
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
