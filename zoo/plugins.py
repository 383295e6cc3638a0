"""Plugin discovery and management (pluggy + entry points, group ``zoo``).

A plugin is a module (or object) with hook implementations, registered under the entry-point group ``zoo``::

    [project.entry-points.zoo]
    my_family = "my_package"

Hooks:

- ``zoo_families()`` returns the :class:`~zoo.family.Family` classes the plugin provides.
- ``zoo_registry()`` returns registry contributions: paths of TOML files and/or ``[[backbone]]``-style dicts.

One plugin that fails to import, raises in a hook, or provides a family name already taken never takes the others
down: it is recorded with its error, and ``zoo plugins`` shows it. ``ZOO_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the
entry points named in ``ZOO_PLUGINS`` (comma-separated).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from zoo.errors import FamilyUnavailableError, PluginError, RegistryError, ZooError

GROUP = "zoo"
AUTOLOAD_ENV = "ZOO_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "ZOO_PLUGINS"

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
    status: str = "ok"                          # ok | failed | disabled
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
        self._contributions: dict[str, list[Any]] = {}
        self._autoload = autoload

    # --- loading --------------------------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Discover and load every plugin of the ``zoo`` entry-point group."""
        autoload = self._autoload if self._autoload is not None else os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
        allowed = {n.strip() for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()}
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
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
                info.status, info.errors = "failed", [f"import failed: {type(exc).__name__}: {exc}"]
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
            info.errors.append(f"hook {hook} raised {type(exc).__name__}: {exc}")
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
        try:
            family = family_cls() if isinstance(family_cls, type) else family_cls
        except Exception as exc:
            info.errors.append(f"family {name!r} could not be created: {type(exc).__name__}: {exc}")
            return
        self._families[name], self._family_owner[name] = family, info.name
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

    def registry_contributions(self) -> Iterable[tuple[str, list[Any]]]:
        """Yield (plugin name, contributions) for every plugin that contributes registry entries."""
        for name, items in self._contributions.items():
            if items:
                yield name, items

    def read_contributions(self) -> list[Any]:
        """Parse every plugin's registry contributions into specs, recording bad ones against the plugin."""
        from zoo.registry import parse_registry_document, read_registry_file

        specs = []
        for plugin, items in self.registry_contributions():
            info = self.infos[plugin]
            info.backbones = []
            for item in items:
                try:
                    if isinstance(item, (str, os.PathLike)):
                        found = read_registry_file(Path(item))
                    elif isinstance(item, dict):
                        found = parse_registry_document({"backbone": [item]}, origin=f"plugin {plugin}")
                    else:
                        raise RegistryError(f"unsupported registry contribution {item!r}",
                                            path=f"plugin {plugin}")
                except ZooError as exc:
                    info.errors.append(str(exc))
                    continue
                info.backbones.extend(spec.name for spec in found)
                specs.extend(found)
        return specs


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
