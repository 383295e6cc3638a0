"""The backbone registry: the curated catalogue plus what plugins and users add.

A registry is read from TOML files whose ``[[backbone]]`` tables follow :class:`BackboneSpec`. Files are merged in
order — the core ``registry.toml``, files and specs contributed by plugins, then user files (``ZOO_REGISTRY``, the
user config file, ``--registry``). A plugin may only add names (the plugin manager refuses one that re-points an
existing backbone); a user file may replace an entry deliberately, with a notice (a ``UserWarning``). Every
validation error names the file, the entry and the field.

A source is a Hub repo id, ``local-dir:PATH``, or ``SCHEME:REST`` where a loaded family claims ``SCHEME``
(:attr:`zoo.family.Family.source_schemes`) and fetches such weights itself; a scheme no family claims is refused.
"""

from __future__ import annotations

import fnmatch
import math
import os
import tomllib
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from zoo.errors import RegistryError, UnknownBackboneError, suggest
from zoo.tasks import TASKS, lower_is_better

CORE_REGISTRY = Path(__file__).with_name("registry.toml")
USER_REGISTRY_ENV = "ZOO_REGISTRY"
LOCAL_DIR_PREFIX = "local-dir:"


def user_registry_path() -> Path:
    """The per-user registry file, read when it exists: ``$XDG_CONFIG_HOME/zoo/registry.toml``."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "zoo" / "registry.toml"


@dataclass(frozen=True)
class Reference:
    """A published quality number for a backbone, with where it comes from."""

    metric: str           # benchmark/measure, e.g. "imagenet-1k/top1", "glue/mnli-m", "superb/ks"
    value: float          # as published (percent for accuracies; WER in percent)
    source: str           # URL of the paper, model card or results file
    where: str = ""       # the table or section inside the source

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.metric)


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry: everything needed to load a backbone and to choose it."""

    # identity and weights
    name: str                                   # unique, e.g. "convnext_tiny.in12k_ft_in1k"
    family: str                                 # the plugin family that loads it, e.g. "timm"
    source: str                                 # Hub repo id, "local-dir:PATH", or "SCHEME:..." a family claims
    revision: str | None = None                 # pinned Hub revision (commit sha, tag or branch)
    arch: str | None = None                     # architecture within the family, when the name does not say it
    # what it is for
    tasks: tuple[str, ...] = ()                 # task types it can be adapted to
    languages: tuple[str, ...] = ()             # ISO 639-1 codes, or "multilingual"; empty = language-independent
    # cost: required in a registry entry; None (unknown until measured) only for a backbone named on the command
    # line, as `zoo bench HUB_ID --family F` does
    params_m: float | None = None               # million parameters as published
    gflops: float | None = None                 # forward GFLOPs at the default input, batch 1
    input: Mapping[str, float] = field(default_factory=dict)  # image_size | max_tokens, seq_len | sample_rate, seconds
    # provenance and quality
    license: str = "unknown"                    # SPDX-style id of the weights' licence
    pretrain: str = ""                          # what it was pretrained on
    reference: tuple[Reference, ...] = ()       # published quality numbers, each with its source
    notes: str = ""                             # one line a person choosing would want
    # bookkeeping (not read from TOML)
    origin: str = ""                            # the file or plugin the entry came from

    @property
    def is_local(self) -> bool:
        return self.source.startswith(LOCAL_DIR_PREFIX)

    @property
    def local_path(self) -> Path | None:
        return Path(self.source[len(LOCAL_DIR_PREFIX):]).expanduser() if self.is_local else None

    @property
    def source_scheme(self) -> str | None:
        """The scheme of a source a family fetches itself ("torchvision" for "torchvision:resnet34"); None for a
        Hub repo id or a ``local-dir:`` folder."""
        return source_scheme(self.source)

    def reference_value(self, metric: str) -> float | None:
        return next((r.value for r in self.reference if r.metric == metric), None)

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], *, origin: str = "", schemes: Collection[str] = ()) -> BackboneSpec:
        """Build and validate a spec from one ``[[backbone]]`` table; ``schemes``: the source schemes families claim.

        Raises:
            RegistryError: naming ``origin``, the entry and the field at fault.
        """
        return _parse_entry(dict(table), origin, schemes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str) -> BackboneSpec:
        """Rebuild a spec from :meth:`to_dict` output (a run record's snapshot), ignoring keys added beside it.

        The source's scheme was checked when the entry was read; the family that loads it checks it again.

        Raises:
            RegistryError: naming ``origin`` when the snapshot no longer validates.
        """
        table = {k: v for k, v in data.items() if k in _TOML_FIELDS and v is not None}
        return _parse_entry(table, origin, None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"], data["languages"] = list(self.tasks), list(self.languages)
        data["input"] = dict(self.input)
        data["reference"] = [asdict(r) for r in self.reference]
        return data


# --- parsing and validation -------------------------------------------------------------------------------------

_TOML_FIELDS = {f.name for f in fields(BackboneSpec)} - {"origin"}
_REQUIRED = ("name", "family", "source", "tasks", "params_m", "gflops", "input", "license")
_REFERENCE_FIELDS = {f.name for f in fields(Reference)}


def source_scheme(source: str) -> str | None:
    """The scheme before the first colon of a source a family fetches itself; None for Hub ids and local-dir:."""
    if source.startswith(LOCAL_DIR_PREFIX) or ":" not in source:
        return None
    return source.split(":", 1)[0]


def _parse_entry(table: dict[str, Any], origin: str, schemes: Collection[str] | None = (),
                 base: Path | None = None) -> BackboneSpec:
    """One validated entry. ``schemes``: the source schemes a family claims (None: any, for snapshots already
    checked); ``base``: the folder a relative ``local-dir:`` path is relative to (None: as written)."""
    entry = table.get("name") if isinstance(table.get("name"), str) else None

    def fail(message: str, field_name: str | None = None) -> RegistryError:
        return RegistryError(message, path=origin or None, entry=entry, field=field_name)

    unknown = sorted(set(table) - _TOML_FIELDS)
    if unknown:
        hint = suggest(unknown[0], sorted(_TOML_FIELDS), n=1)
        raise fail("unknown field" + (f"; did you mean {hint[0]!r}?" if hint else ""), unknown[0])
    for name in _REQUIRED:
        if name not in table:
            raise fail("missing required field", name)

    def text(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail(f"must be a non-empty string, got {value!r}", name)
        return value.strip()

    def strings(name: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(f"must be a list of strings, got {value!r}", name)
        return tuple(value)

    def positive(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise fail(f"must be a positive number, got {value!r}", name)
        return float(value)

    name = text("name", table["name"])
    family = text("family", table["family"])
    source = text("source", table["source"])
    if source.startswith(LOCAL_DIR_PREFIX):
        folder = source[len(LOCAL_DIR_PREFIX):]
        if not folder:
            raise fail("'local-dir:' needs a path after it", "source")
        if base is not None and not Path(folder).expanduser().is_absolute():
            source = f"{LOCAL_DIR_PREFIX}{base / folder}"
    elif source_scheme(source) is not None:
        scheme = source_scheme(source)
        if schemes is not None and scheme not in schemes:
            claimed = f"loaded families claim {', '.join(sorted(schemes))}" if schemes else "no loaded family " \
                "claims any"
            raise fail(f"source scheme {scheme!r} is not claimed by any loaded family ({claimed}); use a Hub repo "
                       "id like 'org/name' or 'local-dir:PATH', or install the plugin whose family fetches "
                       f"{scheme!r} sources (zoo plugins)", "source")
    elif source.count("/") > 1 or source.startswith("/") or " " in source:
        raise fail(f"must be a Hub repo id like 'org/name' or 'local-dir:PATH', got {source!r}", "source")

    tasks = strings("tasks", table["tasks"])
    if not tasks:
        raise fail("must name at least one task", "tasks")
    for task in tasks:
        if task not in TASKS:
            raise fail(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}", "tasks")

    raw_input = table["input"]
    if not isinstance(raw_input, dict):
        raise fail("must be a table such as { image_size = 224 }", "input")
    input_ = {key: positive(f"input.{key}", value) for key, value in raw_input.items()}
    for task in tasks:
        for key in TASKS[task].input_fields:
            if key not in input_:
                raise fail(f"{task} backbones need input.{key}", "input")
    input_ = {k: (int(v) if float(v).is_integer() else v) for k, v in input_.items()}

    references = []
    raw_refs = table.get("reference", [])
    if not isinstance(raw_refs, list):
        raise fail("must be a list of { metric, value, source } tables", "reference")
    for i, ref in enumerate(raw_refs):
        where = f"reference[{i}]"
        if not isinstance(ref, dict):
            raise fail("must be a table { metric, value, source }", where)
        extra = sorted(set(ref) - _REFERENCE_FIELDS)
        if extra:
            raise fail(f"unknown key {extra[0]!r}", where)
        for key in ("metric", "value", "source"):
            if key not in ref:
                raise fail(f"missing {key!r}: every reference number needs its source", where)
        value = ref["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"value must be a number, got {value!r}", where)
        references.append(Reference(text(f"{where}.metric", ref["metric"]), float(value),
                                    text(f"{where}.source", ref["source"]), str(ref.get("where", ""))))

    revision = table.get("revision")
    if revision is not None:
        revision = text("revision", revision)
    arch = table.get("arch")
    if arch is not None:
        arch = text("arch", arch)
    for optional in ("pretrain", "notes"):
        if optional in table and not isinstance(table[optional], str):
            raise fail("must be a string", optional)

    return BackboneSpec(
        name=name, family=family, source=source, revision=revision, arch=arch, tasks=tasks,
        languages=strings("languages", table.get("languages", [])),
        params_m=positive("params_m", table["params_m"]), gflops=positive("gflops", table["gflops"]),
        input=input_, license=text("license", table["license"]).lower(),
        pretrain=table.get("pretrain", ""), reference=tuple(references), notes=table.get("notes", ""),
        origin=origin,
    )


def read_registry_file(path: str | os.PathLike[str], *, schemes: Collection[str] = (),
                       errors: list[RegistryError] | None = None, relative_to_file: bool = False
                       ) -> list[BackboneSpec]:
    """Read and validate every ``[[backbone]]`` entry of one TOML file.

    Args:
        schemes: the source schemes loaded families claim (:attr:`zoo.family.Family.source_schemes`).
        errors: when given, an entry that breaks the schema is added here and skipped, and its valid neighbours
            are kept (plugin files); otherwise the first one raises.
        relative_to_file: resolve a relative ``local-dir:`` path against the file's folder (plugin files), not the
            working directory.

    Raises:
        RegistryError: if the file is missing, is not valid TOML, or (without ``errors``) an entry breaks the schema.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except FileNotFoundError:
        raise RegistryError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read file: {exc}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"not valid TOML: {exc}", path=str(path)) from None
    return parse_registry_document(document, origin=str(path), schemes=schemes, errors=errors,
                                   base=path.resolve().parent if relative_to_file else None)


def parse_registry_document(document: Mapping[str, Any], *, origin: str, schemes: Collection[str] = (),
                            errors: list[RegistryError] | None = None, base: Path | None = None
                            ) -> list[BackboneSpec]:
    """Validate a parsed TOML document (``{"backbone": [...]}``) into specs (arguments as :func:`read_registry_file`;
    ``base``: the folder relative ``local-dir:`` paths start from)."""
    unknown = sorted(set(document) - {"backbone", "schema_version"})
    if unknown:
        raise RegistryError(f"unknown top-level key {unknown[0]!r}; entries go in [[backbone]] tables",
                            path=origin)
    entries = document.get("backbone", [])
    if not isinstance(entries, list):
        raise RegistryError("'backbone' must be an array of tables ([[backbone]])", path=origin)
    specs: list[BackboneSpec] = []
    seen: set[str] = set()
    for index, table in enumerate(entries):
        try:
            if not isinstance(table, dict):
                raise RegistryError(f"entry #{index + 1} is not a table", path=origin)
            spec = _parse_entry(table, origin, schemes, base)
            if spec.name in seen:
                raise RegistryError("duplicate name in the same file", path=origin, entry=spec.name, field="name")
        except RegistryError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        seen.add(spec.name)
        specs.append(spec)
    return specs


# --- the merged registry ----------------------------------------------------------------------------------------


class Registry:
    """An ordered, merged set of backbone specs with lookup and filtering."""

    def __init__(self, specs: Iterable[BackboneSpec] = ()) -> None:
        self._specs: dict[str, BackboneSpec] = {}
        self.overridden: list[tuple[BackboneSpec, BackboneSpec]] = []  # (replaced, replacement)
        self.add(specs)

    def add(self, specs: Iterable[BackboneSpec]) -> None:
        """Add specs; one whose name is already known replaces the earlier entry, with a notice (a UserWarning):
        a user's registry file may override a backbone deliberately, and should know that it did."""
        for spec in specs:
            if spec.name in self._specs:
                replaced = self._specs[spec.name]
                self.overridden.append((replaced, spec))
                warnings.warn(f"{spec.origin or 'a registry entry'}: backbone {spec.name!r} replaces the entry from "
                              f"{replaced.origin or 'an earlier source'} (source {spec.source})", UserWarning,
                              stacklevel=2)
            self._specs[spec.name] = spec

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[BackboneSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> BackboneSpec:
        """Return the spec called ``name``.

        Raises:
            UnknownBackboneError: if there is none; the message suggests the closest names.
        """
        try:
            return self._specs[name]
        except KeyError:
            by_source = [s for s in self._specs.values() if s.source == name]
            if by_source:
                return by_source[0]
            raise UnknownBackboneError(name, self.names()) from None

    def query(self, *, task: str | None = None, family: str | None = None,
              pattern: str | None = None) -> list[BackboneSpec]:
        """Specs matching every given filter; ``pattern`` is a shell wildcard over names (``convnext*``), and a
        pattern without wildcard characters matches a part of the name (``tiny`` finds ``tiny-bert``), as a
        search box would. Case does not matter."""
        if pattern is not None and not any(ch in pattern for ch in "*?["):
            pattern = f"*{pattern}*"
        return [
            spec for spec in self._specs.values()
            if (task is None or task in spec.tasks)
            and (family is None or spec.family == family)
            and (pattern is None or fnmatch.fnmatch(spec.name.lower(), pattern.lower()))
        ]


def user_registry_files(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """User registry files in merge order: ``ZOO_REGISTRY`` (``os.pathsep``-separated), the user file, ``extra``."""
    files = [Path(p) for p in os.environ.get(USER_REGISTRY_ENV, "").split(os.pathsep) if p]
    if user_registry_path().is_file():
        files.append(user_registry_path())
    files.extend(Path(p) for p in extra)
    return files
