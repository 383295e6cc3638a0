"""What a person asks for: hard constraints, and the parse of a free-text scenario into them."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from zoo import checks
from zoo.errors import InvalidInputError
from zoo.tasks import TASKS

DEVICES = ("cpu", "cuda")
# Licences that allow commercial use without copyleft obligations on the model.
PERMISSIVE_LICENSES = ("apache-2.0", "mit", "bsd-3-clause", "bsd-2-clause", "cc-by-4.0", "bsd", "openrail")


@dataclass
class Constraints:
    """Hard constraints a recommended backbone must meet (None = no constraint)."""

    task: str | None = None
    device: str = "cpu"
    max_latency_ms: float | None = None     # estimated batch-1 latency on the device
    max_params_m: float | None = None       # million parameters
    max_memory_gb: float | None = None      # estimated inference memory
    language: str | None = None             # ISO 639-1 code, or "multilingual"
    licenses: tuple[str, ...] = ()          # accepted licence ids; "permissive" expands to PERMISSIVE_LICENSES
    num_examples: int | None = None         # labelled examples available (drives strategy and size fit)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InvalidInputError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        for name in ("max_latency_ms", "max_params_m", "max_memory_gb"):
            checks.number(f"--{name.replace('_', '-')}", getattr(self, name), low=0, low_open=True)
        checks.whole("--examples", self.num_examples, low=1)
        self.licenses = tuple(sorted({lic for item in self.licenses for lic in _expand_license(item)}))
        if self.language:
            self.language = self.language.lower()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["licenses"] = list(self.licenses)
        return data


def _expand_license(item: str) -> tuple[str, ...]:
    item = item.strip().lower()
    if item in ("permissive", "commercial"):
        return PERMISSIVE_LICENSES
    return (item,) if item else ()


def parse_size(text: str, *, unit: str) -> float:
    """Parse '50', '50M', '1.5B' (parameters, in millions) or '2', '512MB', '2GB' (memory, in GB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match:
        raise InvalidInputError(f"cannot read {text!r} as a size")
    value, suffix = float(match[1]), match[2].lower()
    scale = ({"": 1, "m": 1, "b": 1000, "k": 0.001} if unit == "params"
             else {"": 1, "g": 1, "gb": 1, "gib": 1.073741824, "m": 0.001, "mb": 0.001, "mib": 0.001048576})
    if suffix not in scale:
        raise InvalidInputError(f"cannot read {text!r}: unknown unit {suffix!r}")
    return value * scale[suffix]


# --- scenario parsing -------------------------------------------------------------------------------------------

_LANGUAGES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "chinese": "zh", "japanese": "ja", "korean": "ko", "arabic": "ar", "russian": "ru",
    "hindi": "hi", "turkish": "tr", "polish": "pl", "swedish": "sv", "vietnamese": "vi", "indonesian": "id",
    "multilingual": "multilingual", "many languages": "multilingual",
}
_NUMBER = r"(\d+(?:[.,]\d+)?)\s*(k|thousand|m|million)?"
_EXAMPLE_NOUNS = (r"(?:labell?ed\s+|annotated\s+|training\s+)?(?:examples|samples|images|photos|pictures|texts|"
                  r"tickets|reviews|clips|recordings|sentences|documents|utterances|items|rows|emails|messages)")


@dataclass
class ScenarioParse:
    """Constraints read from free text, each with the words it came from, so a person can check the parse."""

    text: str
    values: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "values": self.values, "evidence": self.evidence}


def _number(value: str, scale: str | None) -> float:
    number = float(value.replace(",", "")) if "," in value and len(value.split(",")[-1]) == 3 \
        else float(value.replace(",", "."))
    return number * {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}.get((scale or "").lower(), 1)


def parse_scenario(text: str) -> ScenarioParse:
    """Read task (and a narrower job within it), device, latency, data size, parameter and memory budgets, language
    and licence from text.

    The rules are deliberately simple and visible: each value keeps the phrase it was read from.
    """
    parse = ScenarioParse(text)
    lowered = text.lower()

    def found(name: str, value: Any, match: re.Match[str]) -> None:
        parse.values[name], parse.evidence[name] = value, match.group(0).strip()

    # task: the family of nouns mentioned first wins (Task.scenario_words)
    hits = []
    for task in TASKS.values():
        match = re.search(rf"\b(?:{task.scenario_words})\b", lowered) if task.scenario_words else None
        if match:
            hits.append((match.start(), task.name, match))
    if hits:
        _, task, match = min(hits)
        found("task", task, match)
        # focus: a narrower job within the task (Task.focuses), which the prior weights toward
        for focus in TASKS[task].focuses:
            if match := re.search(rf"\b(?:{focus.words})\b", lowered):
                found("focus", focus.name, match)
                break

    if match := re.search(r"\b(\d+(?:\.\d+)?)\s*(ms|milliseconds?)\b", lowered):
        found("max_latency_ms", float(match[1]), match)
    elif match := re.search(
            r"(?:latency|respond|answer|reply|inference)\D{0,25}?\b(\d+(?:\.\d+)?)\s*(s|sec|seconds?)\b", lowered):
        found("max_latency_ms", float(match[1]) * 1000, match)

    if match := re.search(r"\b(gpus?|cuda|a100|h100|h200|l4|t4|v100|rtx\s*\d+)\b", lowered):
        found("device", "cuda", match)
    elif match := re.search(r"\b(cpus?|laptops?|phones?|mobile|edge|raspberry\s*pi|browser|on-?device)\b", lowered):
        found("device", "cpu", match)

    if match := re.search(rf"\b{_NUMBER}\s+{_EXAMPLE_NOUNS}\b", lowered):
        found("num_examples", int(_number(match[1], match[2])), match)
    elif match := re.search(r"\b(\d+(?:\.\d+)?)(k)\b", lowered):
        found("num_examples", int(_number(match[1], match[2])), match)

    if match := re.search(r"(?:under|below|at most|max(?:imum)?|<|less than|fewer than)\s*(\d+(?:\.\d+)?)\s*"
                          r"(m|b|million|billion)\s*param", lowered):
        scale = {"m": 1, "million": 1, "b": 1000, "billion": 1000}[match[2]]
        found("max_params_m", float(match[1]) * scale, match)

    if match := re.search(r"\b(\d+(?:\.\d+)?)\s*(gb|gib|mb|mib)\s*(?:of\s+)?(?:ram|memory|vram)", lowered):
        found("max_memory_gb", parse_size(match[1] + match[2], unit="memory"), match)

    for word, code in _LANGUAGES.items():
        if match := re.search(rf"\b{word}\b", lowered):
            found("language", code, match)
            break

    if match := re.search(r"\b(commercial(?:ly)?|permissive(?:ly)?(?:\s+licen[cs]ed?)?)\b", lowered):
        found("licenses", ("permissive",), match)
    return parse
