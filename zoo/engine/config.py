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


@dataclass
class AdaptConfig:
    """Everything that decides how a backbone is adapted; recorded in full in the run's zoo_run.json."""

    # what
    strategy: str = "auto"
    epochs: int | None = None               # None: DEFAULT_EPOCHS[strategy]
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float | None = None                 # None: DEFAULT_LR[strategy]
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
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
    max_seconds: float = 10.0               # audio: clips are cut to this length
    max_length: int | None = None           # text: tokens (None: the backbone's limit)
    group_by_length: bool = True            # text: batches of similar length, less padding
    num_workers: int = 0
    # when to stop
    metric: str | None = None               # early-stopping metric (None: accuracy, or micro_f1 for multi-label)
    patience: int = 3                       # epochs without improvement before stopping (0: never stop early)
    checkpoint_every: int = 50              # optimizer steps between checkpoints (and at every epoch end)
    seed: int = 0

    def __post_init__(self) -> None:
        checks.choice("--strategy", self.strategy, STRATEGIES)
        checks.choice("--precision", self.precision, PRECISIONS)
        checks.choice("--augment", self.augment, AUGMENTS)
        checks.choice("--class-weights", self.class_weights, ("none", "auto"))
        for name in ("batch_size", "eval_batch_size", "grad_accum", "checkpoint_every", "lora_r"):
            checks.whole(_option(name), getattr(self, name), low=1, allow_none=False)
        checks.whole("--epochs", self.epochs, low=1)
        checks.whole("--max-length", self.max_length, low=1)
        checks.whole("--patience", self.patience, low=0, allow_none=False)
        checks.whole("--num-workers", self.num_workers, low=0, allow_none=False)
        checks.seed("--seed", self.seed)
        checks.number("--lr", self.lr, low=0, low_open=True)
        checks.number("--weight-decay", self.weight_decay, low=0, allow_none=False)
        checks.number("--warmup-ratio", self.warmup_ratio, low=0, high=1, high_open=True, allow_none=False)
        checks.number("--label-smoothing", self.label_smoothing, low=0, high=1, high_open=True, allow_none=False)
        checks.number("--layer-decay", self.layer_decay, low=0, high=1, low_open=True)
        checks.number("--lora-alpha", self.lora_alpha, low=0, low_open=True, allow_none=False)
        checks.number("--lora-dropout", self.lora_dropout, low=0, high=1, high_open=True, allow_none=False)
        checks.number("--max-seconds", self.max_seconds, low=0, low_open=True, allow_none=False)

    def resolved(self, strategy: str) -> AdaptConfig:
        """A copy with the strategy chosen and its defaults filled in."""
        values = asdict(self)
        values["strategy"] = strategy
        values["epochs"] = self.epochs or DEFAULT_EPOCHS[strategy]
        values["lr"] = self.lr or DEFAULT_LR[strategy]
        return AdaptConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def choose_strategy(num_train: int, params_m: float, device: str) -> tuple[str, str]:
    """`--strategy auto`: the strategy that fits the data size and the compute, and the reason."""
    if num_train < 1000:
        return "linear", (f"{num_train} training examples: a linear probe on frozen, cached features is fast "
                          "and resists over-fitting")
    if device == "cpu" and params_m > 30:
        return "linear", (f"{params_m:.0f}M parameters on a CPU: fine-tuning would be slow; a linear probe on "
                          "cached features trains in minutes")
    if num_train < 20000 and params_m > 30:
        return "lora", f"{num_train} examples: LoRA adapts the {params_m:.0f}M-parameter backbone cheaply"
    return "full", f"{num_train} examples and a {params_m:.0f}M-parameter backbone: fine-tune every layer"
