"""The public Python API. Every CLI command is a thin wrapper over one function here.

>>> from zoo import api
>>> rec = api.recommend("text-cls", device="cpu", max_latency_ms=20)
>>> [c.name for c in rec.candidates]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zoo.errors import InvalidInputError
from zoo.plugins import PluginInfo, PluginManager, get_plugin_manager
from zoo.recommend import Constraints, Recommendation, ScenarioParse, parse_scenario, recommend_data_free
from zoo.registry import CORE_REGISTRY, BackboneSpec, Registry, read_registry_file, user_registry_files
from zoo.tasks import get_task

PathLike = str | os.PathLike[str]


def load_registry(registry_files: Iterable[PathLike] = (), *,
                  plugins: PluginManager | None = None) -> Registry:
    """The merged registry: core ``registry.toml``, plugin contributions, then user files.

    User files are ``ZOO_REGISTRY`` (``os.pathsep``-separated), ``~/.config/zoo/registry.toml`` and
    ``registry_files``; a later entry with the same name replaces an earlier one.

    Raises:
        zoo.errors.RegistryError: naming the file, entry and field of the first problem in a user file.
    """
    plugins = plugins or get_plugin_manager()
    registry = Registry(read_registry_file(CORE_REGISTRY))
    registry.add(plugins.read_contributions())
    for path in user_registry_files(registry_files):
        registry.add(read_registry_file(path))
    return registry


def list_backbones(*, task: str | None = None, family: str | None = None, pattern: str | None = None,
                   registry_files: Iterable[PathLike] = ()) -> list[BackboneSpec]:
    """Registry entries matching every filter (``pattern`` is a shell wildcard over names)."""
    if task is not None:
        get_task(task)
    return load_registry(registry_files).query(task=task, family=family, pattern=pattern)


@dataclass
class BackboneInfo:
    spec: BackboneSpec
    family_available: bool
    family_library: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "family_available": self.family_available,
                "family_library": self.family_library}


def backbone_info(name: str, *, registry_files: Iterable[PathLike] = ()) -> BackboneInfo:
    """Everything the registry knows about one backbone, and whether its family is loaded.

    Raises:
        zoo.errors.UnknownBackboneError: suggesting the closest names.
    """
    plugins = get_plugin_manager()
    spec = load_registry(registry_files, plugins=plugins).get(name)
    family = plugins.families.get(spec.family)
    return BackboneInfo(spec, family is not None, getattr(family, "library", "") if family else "")


def plugin_report(*, registry_files: Iterable[PathLike] = ()) -> list[PluginInfo]:
    """Every discovered plugin with its version, families, backbones and errors.

    A plugin's backbones are the registry entries whose family it provides, plus those it contributes.
    """
    plugins = get_plugin_manager()
    registry = load_registry(registry_files, plugins=plugins)
    for info in plugins.infos.values():
        served = [spec.name for spec in registry if spec.family in info.families]
        info.backbones = sorted(set(info.backbones) | set(served))
    return list(plugins.infos.values())


def recommend(task: str | None = None, *, device: str | None = None, max_latency_ms: float | None = None,
              max_params_m: float | None = None, max_memory_gb: float | None = None,
              language: str | None = None, licenses: Sequence[str] = (), num_examples: int | None = None,
              scenario: str | None = None, top: int = 5,
              registry_files: Iterable[PathLike] = ()) -> Recommendation:
    """Recommend backbones for a task under hard constraints, ranked by what is known without data.

    A free-text ``scenario`` is parsed into the same constraints; explicit arguments win over the parse, and the
    parse is returned so it can be shown and corrected.

    Raises:
        zoo.errors.InvalidInputError: if no task is given or found in the scenario, or an argument is invalid.
        zoo.errors.NoCandidateError: if the registry has no backbone for the task. When backbones exist but none
            meets every constraint, the result has no candidates, a ``message`` and the ``nearest`` misses.
    """
    parsed: ScenarioParse | None = parse_scenario(scenario) if scenario else None
    explicit: dict[str, Any] = {
        "task": task, "device": device, "max_latency_ms": max_latency_ms, "max_params_m": max_params_m,
        "max_memory_gb": max_memory_gb, "language": language, "licenses": tuple(licenses) or None,
        "num_examples": num_examples,
    }
    values = {key: value if value is not None else (parsed.values.get(key) if parsed else None)
              for key, value in explicit.items()}
    if values["task"] is None:
        raise InvalidInputError("no task given: pass --task image-cls|text-cls|audio-cls, or describe the data "
                                "in --scenario")
    if top < 1:
        raise InvalidInputError(f"--top must be at least 1, got {top}")
    get_task(values["task"])
    constraints = Constraints(task=values["task"], device=values["device"] or "cpu",
                              max_latency_ms=values["max_latency_ms"], max_params_m=values["max_params_m"],
                              max_memory_gb=values["max_memory_gb"], language=values["language"],
                              licenses=values["licenses"] or (), num_examples=values["num_examples"])
    plugins = get_plugin_manager()
    registry = load_registry(registry_files, plugins=plugins)
    return recommend_data_free(registry, constraints, top=top, scenario=parsed,
                               available_families=plugins.families)


def load_classifier(name: str, *, task: str, labels: Sequence[str], multi_label: bool = False,
                    pretrained: bool = True, trust_remote_code: bool = False,
                    registry_files: Iterable[PathLike] = ()):
    """Load a registry backbone with a fresh classification head for ``labels``, through its family.

    Raises:
        zoo.errors.UnknownBackboneError, zoo.errors.FamilyUnavailableError, zoo.errors.ModelLoadError.
    """
    plugins = get_plugin_manager()
    spec = load_registry(registry_files, plugins=plugins).get(name)
    if task not in spec.tasks:
        raise InvalidInputError(f"backbone {spec.name!r} is registered for {', '.join(spec.tasks)}, not {task}")
    family = plugins.family(spec.family, backbone=spec.name)
    return family.load_classifier(spec, task=task, labels=list(labels), multi_label=multi_label,
                                  pretrained=pretrained, trust_remote_code=trust_remote_code)


def load_saved_classifier(directory: PathLike):
    """Load a classifier saved in a family's native format, asking each loaded family whether it is theirs."""
    plugins = get_plugin_manager()
    for family in plugins.families.values():
        if family.can_load_saved(directory):
            return family.load_saved(directory)
    raise InvalidInputError(f"{directory}: no loaded family recognises this folder as a saved model")
