"""Plugin discovery and management (pluggy + entry points, group ``zoo``).

A plugin is a module (or object) with hook implementations, registered under the entry-point group ``zoo``::

    [project.entry-points.zoo]
    my_family = "my_package"

Hooks:

- ``zoo_families()`` returns the :class:`~zoo.family.Family` classes the plugin provides.
- ``zoo_registry()`` returns registry contributions: paths of TOML files and/or ``[[backbone]]``-style dicts.

One plugin that fails to import, raises in a hook, or provides a family name already taken never takes the others
down: it is recorded with its error, and ``zoo plugins`` shows it (with the traceback under ``ZOO_DEBUG=1``).
``ZOO_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the entry points named in ``ZOO_PLUGINS`` (comma-separated); a name
there that no installed plugin has is reported too.

Names are first come, first served, and the order is fixed: the built-in plugins (those of the ``zoo-hub``
distribution) load first, then the others by entry-point name. A later plugin that offers a family name already
taken, claims a source scheme already claimed, or contributes a backbone whose name the core registry or an earlier
plugin already has, has that part refused and reported; a user's own registry file may still override a backbone.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from zoo.errors import FamilyUnavailableError, PluginError, RegistryError, ZooError
from zoo.registry import parse_registry_document, read_registry_file

GROUP = "zoo"
AUTOLOAD_ENV = "ZOO_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "ZOO_PLUGINS"
DEBUG_ENV = "ZOO_DEBUG"            # the variable that makes the CLI show tracebacks: plugin failures show theirs
BUILTIN_DISTRIBUTION = "zoo-hub"   # the distribution whose plugins load first (zoo_timm, zoo_transformers)
# Source schemes the core itself resolves; no family may claim them.
RESERVED_SCHEMES = ("local-dir",)

hookspec = pluggy.HookspecMarker(GROUP)
hookimpl = pluggy.HookimplMarker(GROUP)


class ZooHookSpecs:
    """The hooks a plugin may implement."""

    @hookspec
    def zoo_families(self) -> list[type]:
        """Return the Family subclasses this plugin provides."""

    @hookspec
    def zoo_registry(self) -> list[Any]:
        """Return registry contributions: TOML file paths and/or backbone tables (dicts)."""


@dataclass
class PluginInfo:
    """What ``zoo plugins`` shows about one plugin."""

    name: str                                   # entry-point (or registration) name
    module: str = ""                            # what the entry point points at
    distribution: str = ""                      # the installed package that provides it
    version: str = ""
    status: str = "ok"                          # ok | failed | disabled | not found (named in ZOO_PLUGINS only)
    families: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "module": self.module, "distribution": self.distribution,
                "version": self.version, "status": self.status, "families": self.families,
                "backbones": self.backbones, "errors": self.errors}


class PluginManager:
    """Loads plugins, isolates their failures and exposes their families and registry contributions."""

    def __init__(self, *, autoload: bool | None = None) -> None:
        self._pm = pluggy.PluginManager(GROUP)
        self._pm.add_hookspecs(ZooHookSpecs)
        self.infos: dict[str, PluginInfo] = {}
        self._families: dict[str, Any] = {}          # family name -> Family instance
        self._family_owner: dict[str, str] = {}      # family name -> plugin name
        self._schemes: dict[str, str] = {}           # source scheme -> family name
        self._contributions: dict[str, list[Any]] = {}
        self._autoload = autoload

    # --- loading --------------------------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Discover and load every plugin of the ``zoo`` entry-point group."""
        autoload = self._autoload if self._autoload is not None else os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
        allowed = {n.strip() for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()}
        found = list(entry_points(group=GROUP))
        for name in sorted(allowed - {ep.name for ep in found}):
            self.infos[name] = PluginInfo(name=name, status="not found", errors=[
                f"{ALLOW_ENV} names {name!r}, but no installed plugin has that name; installed: "
                f"{', '.join(sorted({ep.name for ep in found})) or 'none'}"])

        def builtin_first(ep) -> tuple[bool, str]:
            dist = getattr(ep, "dist", None)
            return (not (dist is not None and dist.metadata["Name"] == BUILTIN_DISTRIBUTION), ep.name)

        for ep in sorted(found, key=builtin_first):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(name=ep.name, module=ep.value,
                              distribution=dist.metadata["Name"] if dist else "",
                              version=dist.version if dist else "")
            if ep.name in self.infos:
                info.status, info.errors = "failed", [f"plugin name {ep.name!r} is already registered by "
                                                      f"{self.infos[ep.name].distribution or 'another plugin'}"]
                self.infos[f"{ep.name} ({info.distribution})"] = info
                continue
            if not autoload and ep.name not in allowed:
                info.status = "disabled"
                self.infos[ep.name] = info
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break the hub
                info.status, info.errors = "failed", [_failure(f"import failed: {type(exc).__name__}: {exc}", exc)]
                self.infos[ep.name] = info
                continue
            self._register(plugin, info)

    def register(self, plugin: object, name: str, *, version: str = "") -> PluginInfo:
        """Register a plugin object directly (tests, notebooks); returns what was recorded about it."""
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__name__), version=version)
        if name in self.infos:
            raise PluginError(name, "a plugin with this name is already registered")
        self._register(plugin, info)
        return info

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name`` and everything it provided."""
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
        for family in [f for f, owner in self._family_owner.items() if owner == name]:
            del self._families[family], self._family_owner[family]
            self._schemes = {scheme: f for scheme, f in self._schemes.items() if f != family}
        self._contributions.pop(name, None)
        self.infos.pop(name, None)

    def _register(self, plugin: object, info: PluginInfo) -> None:
        self.infos[info.name] = info
        try:
            self._pm.register(plugin, name=info.name)
        except Exception as exc:
            info.status, info.errors = "failed", [f"registration failed: {exc}"]
            return
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        families = self._call_one("zoo_families", others, info)
        for family_cls in families:
            self._add_family(family_cls, info)
        self._contributions[info.name] = self._call_one("zoo_registry", others, info)
        if info.errors and not info.families and not self._contributions[info.name]:
            info.status = "failed"

    def _call_one(self, hook: str, others: list[object], info: PluginInfo) -> list[Any]:
        caller = self._pm.subset_hook_caller(hook, remove_plugins=others)
        try:
            results = caller()
        except Exception as exc:
            info.errors.append(_failure(f"hook {hook} raised {type(exc).__name__}: {exc}", exc))
            return []
        return [item for result in results if result for item in result]

    def _add_family(self, family_cls: Any, info: PluginInfo) -> None:
        name = getattr(family_cls, "name", None)
        if not isinstance(name, str) or not name:
            info.errors.append(f"{family_cls!r} has no `name` attribute")
            return
        if name in self._families:
            info.errors.append(f"family {name!r} is already provided by plugin {self._family_owner[name]!r}; "
                               "this one was ignored")
            return
        schemes = getattr(family_cls, "source_schemes", ()) or ()
        for scheme in schemes:
            if not isinstance(scheme, str) or not scheme or ":" in scheme or "/" in scheme:
                info.errors.append(f"family {name!r} claims source scheme {scheme!r}: a scheme is a non-empty word "
                                   "without ':' or '/'; this family was ignored")
                return
            if scheme in RESERVED_SCHEMES or scheme in self._schemes:
                owner = f"family {self._schemes[scheme]!r}" if scheme in self._schemes else "zoo itself"
                info.errors.append(f"family {name!r} claims source scheme {scheme!r}, which {owner} already "
                                   "resolves; this family was ignored")
                return
        try:
            family = family_cls() if isinstance(family_cls, type) else family_cls
        except Exception as exc:
            info.errors.append(_failure(f"family {name!r} could not be created: {type(exc).__name__}: {exc}", exc))
            return
        self._families[name], self._family_owner[name] = family, info.name
        self._schemes.update(dict.fromkeys(schemes, name))
        info.families.append(name)

    # --- queries --------------------------------------------------------------------------------------------

    @property
    def families(self) -> dict[str, Any]:
        return dict(self._families)

    def family(self, name: str, *, backbone: str = "") -> Any:
        """Return the family called ``name``.

        Raises:
            FamilyUnavailableError: if no loaded plugin provides it.
        """
        try:
            return self._families[name]
        except KeyError:
            raise FamilyUnavailableError(name, backbone, sorted(self._families)) from None

    @property
    def source_schemes(self) -> dict[str, str]:
        """Every source scheme a loaded family claims, with the family's name."""
        return dict(self._schemes)

    def family_for_source(self, spec: Any) -> Any:
        """The family that fetches ``spec``'s weights: the one claiming its source scheme.

        Raises:
            FamilyUnavailableError: if no loaded family claims it (its plugin was uninstalled since).
        """
        scheme = spec.source_scheme
        if scheme not in self._schemes:
            raise FamilyUnavailableError(spec.family, spec.name, sorted(self._families))
        return self._families[self._schemes[scheme]]

    def registry_contributions(self) -> Iterable[tuple[str, list[Any]]]:
        """Yield (plugin name, contributions) for every plugin that contributes registry entries."""
        for name, items in self._contributions.items():
            if items:
                yield name, items

    def read_contributions(self, *, known: Any = None) -> list[Any]:
        """Parse every plugin's registry contributions into specs, recording bad ones against the plugin.

        An entry that breaks the schema is reported and skipped, and the valid entries beside it are kept; a
        relative ``local-dir:`` path is relative to the TOML file that names it. An entry whose name ``known``
        (the registry read so far: the core's) or an earlier plugin already has is refused and reported: a plugin
        adds backbones, it never re-points one.
        """
        specs: list[Any] = []
        taken = {spec.name: spec.origin for spec in known or ()}
        for plugin, items in self.registry_contributions():
            info = self.infos[plugin]
            info.backbones = []
            for item in items:
                errors: list[RegistryError] = []
                try:
                    if isinstance(item, (str, os.PathLike)):
                        found = read_registry_file(Path(item), schemes=self._schemes, errors=errors,
                                                   relative_to_file=True)
                    elif isinstance(item, dict):
                        found = parse_registry_document({"backbone": [item]}, origin=f"plugin {plugin}",
                                                        schemes=self._schemes, errors=errors)
                    else:
                        raise RegistryError(f"unsupported registry contribution {item!r}",
                                            path=f"plugin {plugin}")
                except ZooError as exc:
                    _note(info, str(exc))
                    continue
                for error in errors:
                    _note(info, f"{error}; this entry was skipped")
                for spec in found:
                    if spec.name in taken:
                        _note(info, f"{spec.origin}: backbone {spec.name!r} is already defined by "
                                           f"{taken[spec.name] or 'the registry'}; a plugin may add backbones but "
                                           "not re-point one, so this entry was ignored (a registry file of your own "
                                           "may override it)")
                        continue
                    taken[spec.name] = spec.origin
                    info.backbones.append(spec.name)
                    specs.append(spec)
        return specs


def _note(info: PluginInfo, message: str) -> None:
    """Record a registry problem once, however often the registry is read in this process."""
    if message not in info.errors:
        info.errors.append(message)


def _failure(message: str, exc: BaseException) -> str:
    """A plugin failure as ``zoo plugins`` shows it: one line, and under ``ZOO_DEBUG=1`` the traceback after it."""
    if os.environ.get(DEBUG_ENV, "") in ("", "0"):
        return message
    return message + "\n" + "".join(traceback.format_exception(exc)).rstrip("\n")


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
        _manager.load_entry_points()
    return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins, so the next call rediscovers them (tests, long-lived processes)."""
    global _manager
    _manager = None
