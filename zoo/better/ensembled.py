"""An ensemble as a classifier: the weighted mean of its members' probabilities, and the folder that holds it.

An ensemble folder (what `zoo ensemble` writes) holds each member's saved model, in its family's native format,
under ``members/NN-NAME/``, and a manifest, ``zoo_ensemble.json``, that names them with their weights. It is
loaded by :func:`zoo.loading.load_saved` like any saved model: the loader loads each member itself and hands them
to :func:`load_ensemble`, so this module never imports the loader.

:class:`EnsembleClassifier` is a :class:`zoo.family.Classifier` over the members. ``preprocess`` gives every
member's inputs under keys of its own (``m0.pixel_values``, ``m1.input_ids``), ``collate`` batches each member's
part with the member's own collate, and ``batch_key`` is the tuple of the members' keys, so no member ever sees
padding it would not see alone. ``forward`` returns the log of the weighted mean probability (softmax of it gives
the ensemble's probabilities back); for a multi-label task the logit of the weighted mean sigmoid. So `zoo
predict`, `zoo serve`, `zoo bench` (which times every member: the cost is the sum) and a distillation's teacher
read an ensemble as they read one model.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InvalidInputError
from zoo.family import Classifier
from zoo.tasks import get_task

if TYPE_CHECKING:  # pragma: no cover
    import torch

MANIFEST = "zoo_ensemble.json"
MEMBERS_DIR = "members"
MANIFEST_VERSION = 1
# What `zoo export` and `zoo explain` answer for an ensemble: each member is a model of its own that they take.
EXPORT_REFUSAL = "an ensemble is not exported as one graph; export each member run with 'zoo export RUN'"
EXPLAIN_REFUSAL = "an ensemble is not explained as one model; explain each member run with 'zoo explain RUN INPUT'"


@dataclass
class ManifestMember:
    """One member of an ensemble folder."""

    dir: str                       # the member's saved model, relative to the ensemble folder: members/01-NAME
    weight: float                  # its share of the mean probability (the weights sum to 1)
    run: str                       # the run folder's name it was copied from
    backbone: str
    family: str
    max_seconds: float = 10.0      # audio: the clip length the member was trained on
    precision: str = "fp32"        # the member run's precision


@dataclass
class EnsembleManifest:
    """``zoo_ensemble.json``: what an ensemble folder holds."""

    task: str
    labels: list[str]
    multi_label: bool
    method: str                    # caruana | mean
    members: list[ManifestMember] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"zoo_ensemble_version": self.version, **{k: v for k, v in asdict(self).items() if k != "version"}}


def is_ensemble_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds an ensemble (its manifest)."""
    return (Path(directory) / MANIFEST).is_file()


def read_manifest(directory: str | os.PathLike) -> EnsembleManifest:
    """The manifest of the ensemble in ``directory``.

    Raises:
        zoo.errors.InvalidInputError: naming the file, when it is unreadable, from a newer zoo, or names a member
            folder that is missing or outside the ensemble.
    """
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text())
        version = data.get("zoo_ensemble_version", 1)
        if version > MANIFEST_VERSION:
            raise InvalidInputError(f"{path}: written by a newer zoo (ensemble version {version}); upgrade zoo to "
                                    "load it")
        members = [ManifestMember(**member) for member in data["members"]]
        manifest = EnsembleManifest(task=data["task"], labels=list(data["labels"]),
                                    multi_label=bool(data["multi_label"]), method=data["method"], members=members)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"{path}: unreadable ensemble manifest ({type(exc).__name__}: {exc})") from None
    if not members:
        raise InvalidInputError(f"{path}: the ensemble names no members")
    root = Path(directory).resolve()
    for member in members:
        where = (root / member.dir).resolve()
        if not where.is_relative_to(root) or not where.is_dir():
            raise InvalidInputError(f"{path}: member folder {member.dir!r} is missing from the ensemble")
    return manifest


def write_manifest(directory: str | os.PathLike, manifest: EnsembleManifest) -> Path:
    """Write ``zoo_ensemble.json`` into ``directory``; returns its path."""
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return path


def member_dirs(directory: str | os.PathLike) -> list[Path]:
    """The member folders of the ensemble in ``directory`` (none when it is not an ensemble)."""
    if not is_ensemble_dir(directory):
        return []
    return [Path(directory) / member.dir for member in read_manifest(directory).members]


def member_folder_name(index: int, run_name: str) -> str:
    """``members/NN-NAME``: the folder of member ``index`` (from 0), named after its run."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", run_name).strip("-.") or "member"
    return f"{MEMBERS_DIR}/{index + 1:02d}-{safe}"


def load_ensemble(directory: str | os.PathLike,
                  load_member: Callable[[Path], Classifier]) -> EnsembleClassifier:
    """The ensemble in ``directory``, each member loaded by ``load_member`` (the loader's own, for its folder).

    Raises:
        zoo.errors.InvalidInputError: an unreadable manifest, or members that disagree with it.
    """
    manifest = read_manifest(directory)
    members = [load_member(Path(directory) / member.dir) for member in manifest.members]
    ensemble = EnsembleClassifier(members, [member.weight for member in manifest.members],
                                  entries=manifest.members)
    ensemble.method = manifest.method
    if ensemble.task != manifest.task or ensemble.labels != manifest.labels or \
            ensemble.multi_label != manifest.multi_label:
        raise InvalidInputError(f"{Path(directory) / MANIFEST}: its members' task or labels differ from the "
                                "manifest's; the folder was changed after it was written")
    return ensemble


def _part(mapping: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Member ``index``'s entries of a prefixed item or batch, with the prefix taken off."""
    prefix = f"m{index}."
    return {key[len(prefix):]: value for key, value in mapping.items() if key.startswith(prefix)}


def _prefixed(mapping: Mapping[str, Any], index: int) -> dict[str, Any]:
    return {f"m{index}.{key}": value for key, value in mapping.items()}


class EnsembleClassifier(Classifier):
    """The weighted mean of member classifiers' probabilities, as one classifier (see the module's docstring).

    Members must share task, labels (in the same order) and multi-label; they may differ in backbone, family,
    input size, sample rate and tokenizer. It predicts, serves and benches; it does not train.
    """

    def __init__(self, members: Sequence[Classifier], weights: Sequence[float], *,
                 entries: Sequence[ManifestMember] | None = None) -> None:
        import torch

        if not members or len(weights) != len(members) or (entries is not None and len(entries) != len(members)):
            raise InvalidInputError("an ensemble needs at least one member, and one weight per member")
        if any(not (w > 0 and w < float("inf")) for w in weights):
            raise InvalidInputError(f"an ensemble's weights must be positive and finite, got {list(weights)}")
        first = members[0]
        for index, member in enumerate(members[1:], start=1):
            if member.task != first.task or list(member.labels) != list(first.labels) or \
                    bool(member.multi_label) != bool(first.multi_label):
                raise InvalidInputError(f"ensemble member {index + 1} differs from the first in task, labels or "
                                        "multi-label: members must share all three")
        total = float(sum(weights))
        self.members = list(members)
        self.weights = [float(w) / total for w in weights]
        # What the manifest says of each member (its run, backbone, clip length); plain defaults when built here.
        self.entries = list(entries) if entries is not None else [
            ManifestMember(dir=member_folder_name(i, f"member-{i + 1}"), weight=w, run=f"member-{i + 1}",
                           backbone=type(m).__name__, family=type(m).__module__.split(".")[0])
            for i, (m, w) in enumerate(zip(members, self.weights, strict=True))]
        self.task, self.labels, self.multi_label = first.task, list(first.labels), bool(first.multi_label)
        self.model = torch.nn.ModuleList([member.model for member in members])
        # The raw input is read once, at the highest rate any member takes; each member gets it resampled to its own.
        rates = [member.sample_rate for member in members if member.sample_rate]
        self.sample_rate = max(rates) if rates else None
        sizes = [member.image_size for member in members if member.image_size]
        self.image_size = max(sizes) if sizes else None
        self.augment = "none"
        self.method = "weighted"   # how the weights were chosen (the manifest's: caruana, mean)

    # --- what the engine sets on a classifier, passed on to every member ---

    @property
    def max_length(self) -> int | None:
        return self.members[0].max_length if hasattr(self, "members") else None

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        for member in getattr(self, "members", []):
            member.max_length = value

    @property
    def channels_last(self) -> bool:
        return False   # members differ; each keeps its own memory format

    # --- inputs ---

    def preprocess(self, example: Any, *, train: bool = False) -> dict[str, Any]:
        item: dict[str, Any] = {}
        waveform = get_task(self.task).waveform
        for index, member in enumerate(self.members):
            value = example
            if waveform:
                value = self._member_waveform(example, index)
            item.update(_prefixed(member.preprocess(value, train=train), index))
        return item

    def _member_waveform(self, waveform: Any, index: int) -> Any:
        """The clip as member ``index`` was trained on it: at its sample rate, cut to its length."""
        import numpy as np

        from zoo.audio import resample

        member = self.members[index]
        if not isinstance(waveform, np.ndarray):
            return waveform
        rate = member.sample_rate or self.sample_rate
        if rate and self.sample_rate and rate != self.sample_rate:
            waveform = resample(waveform, self.sample_rate, rate)
        seconds = self.entries[index].max_seconds
        if seconds and rate:
            waveform = waveform[: int(seconds * rate)]
        return waveform

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, Any] = {}
        for index, member in enumerate(self.members):
            batch.update(_prefixed(member.collate([_part(item, index) for item in items]), index))
        return batch

    def batch_key(self, item: dict[str, Any]) -> Hashable:
        return tuple(member.batch_key(_part(item, index)) for index, member in enumerate(self.members))

    # --- outputs ---

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        mixed = None
        for index, (member, weight) in enumerate(zip(self.members, self.weights, strict=True)):
            logits = member.forward(_part(batch, index)).float()
            probabilities = torch.sigmoid(logits) if self.multi_label else logits.softmax(-1)
            mixed = weight * probabilities if mixed is None else mixed + weight * probabilities
        return probabilities_to_logits(mixed, multi_label=self.multi_label)

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise InvalidInputError("an ensemble has no pooled features of its own; use one member's")

    def head_parameter_names(self) -> list[str]:
        return []

    def parameter_groups(self) -> list[list[str]]:
        return []

    def lora_targets(self) -> list[str]:
        return []

    def save(self, directory: str | Path) -> list[Path]:
        """Each member saved natively into ``members/NN-NAME/``, and the manifest."""
        directory = Path(directory)
        written: list[Path] = []
        entries = []
        for index, (member, weight) in enumerate(zip(self.members, self.weights, strict=True)):
            entry = replace(self.entries[index], dir=member_folder_name(index, self.entries[index].run), weight=weight)
            (directory / entry.dir).mkdir(parents=True, exist_ok=True)
            written += [Path(path) for path in member.save(directory / entry.dir)]
            entries.append(entry)
        written.append(write_manifest(directory, EnsembleManifest(self.task, self.labels, self.multi_label,
                                                                  self.method, entries)))
        return written

    def export_graph(self, batch):
        raise InvalidInputError(EXPORT_REFUSAL)

    def attribution_space(self, example, batch):
        raise InvalidInputError(EXPLAIN_REFUSAL)


def probabilities_to_logits(probabilities, *, multi_label: bool):
    """What an ensemble's forward returns for mixed probabilities (a torch tensor): their log (single-label: a
    softmax of it gives them back) or, multi-label, their logit (a sigmoid gives them back). Clamped away from 0
    and 1, where the log and the logit are infinite."""
    import torch

    if multi_label:
        return torch.logit(probabilities, eps=1e-7)
    return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
