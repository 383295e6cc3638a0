"""Loading a classifier: the one way every command turns a registry entry, or a saved folder, into a model.

A backbone is loaded through its family after the offline guard (:func:`zoo.hub.fetch.ensure_fetched`: with
``HF_HUB_OFFLINE=1`` and nothing cached, the one-line ``zoo fetch NAME`` hint instead of a library's traceback),
and the commit of the files it read is noted, so a run record can say which weights it started from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zoo.better.ensembled import is_ensemble_dir, load_ensemble
from zoo.errors import InvalidInputError
from zoo.family import Classifier, Family
from zoo.hub.fetch import ensure_fetched, loaded_commit
from zoo.registry import BackboneSpec


@dataclass
class LoadedClassifier:
    classifier: Classifier
    commit: str | None        # the Hub commit of the weights read (None: a local folder, or random weights)


def load_classifier(spec: BackboneSpec, family: Family, *, task: str, labels: Sequence[str],
                    multi_label: bool = False, pretrained: bool = True, trust_remote_code: bool = False,
                    image_size: int | None = None) -> LoadedClassifier:
    """``spec``'s backbone with a fresh classification head for ``labels``, loaded by ``family``.

    ``image_size`` is for a family that takes it (:attr:`zoo.family.Family.takes_image_size`); like
    ``pretrained=False`` and ``trust_remote_code=True`` it is passed only when asked for.

    Raises:
        zoo.errors.InvalidInputError: ``spec`` is not registered for ``task``.
        zoo.errors.BackboneNotFetchedError: offline, with the weights not in the cache.
        zoo.errors.ModelLoadError: the family could not load it (with what to do).
    """
    if task not in spec.tasks:
        raise InvalidInputError(f"backbone {spec.name!r} is registered for {', '.join(spec.tasks)}, not {task}")
    if pretrained:
        ensure_fetched(spec)
    options: dict[str, Any] = {}
    if not pretrained:
        options["pretrained"] = False
    if trust_remote_code:
        options["trust_remote_code"] = True
    if image_size is not None:
        options["image_size"] = image_size
    classifier = family.load_classifier(spec, task=task, labels=list(labels), multi_label=multi_label, **options)
    return LoadedClassifier(classifier, loaded_commit(spec) if pretrained else None)


def saved_family(directory: str | os.PathLike, families: Mapping[str, Family]) -> Family | None:
    """The loaded family that recognises ``directory`` as a model it saved, or None."""
    return next((family for family in families.values() if family.can_load_saved(directory)), None)


def load_saved(directory: str | os.PathLike, families: Mapping[str, Family]) -> Classifier:
    """A classifier saved in a family's native format, loaded by the family that recognises the folder; or an
    ensemble's folder (`zoo ensemble`), each member loaded so, as one
    :class:`~zoo.better.ensembled.EnsembleClassifier`.

    Raises:
        zoo.errors.InvalidInputError: no loaded family recognises the folder (or a member's).
    """
    if is_ensemble_dir(directory):
        return load_ensemble(directory, lambda member: load_saved(member, families))
    family = saved_family(directory, families)
    if family is None:
        raise InvalidInputError(f"{directory}: no loaded family recognises this folder as a saved model")
    return family.load_saved(directory)
