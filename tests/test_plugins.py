"""Plugins: first-party discovery, an outsider's installed plugin, a broken one, duplicates, autoload control."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS, run_zoo

from zoo.family import Family
from zoo.plugins import PluginManager, hookimpl

PLUGIN_SOURCES = [TESTS / "plugins" / "zoo_tinycnn", TESTS / "plugins" / "zoo_broken"]


@pytest.fixture(scope="session")
def installed_plugins(session_dir, hub) -> Path:
    """Install the example plugin packages with pip into a folder put on PYTHONPATH, as a user would install
    them into an environment, and upload the example plugin's backbone to the local Hub."""
    target = session_dir / "site-plugins"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), *map(str, PLUGIN_SOURCES)],
                   check=True, capture_output=True, text=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    from safetensors.torch import save_model
    from zoo_tinycnn.family import TinyCnn

    folder = session_dir / "tiny" / "tinycnn-s"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"family": "tinycnn", "widths": [8, 16, 32],
                                                    "image_size": 32, "num_classes": 10}))
    save_model(TinyCnn(num_classes=10), str(folder / "model.safetensors"))
    hub.store.add_repo("zoo-test/tinycnn-s", folder)
    yield target
    sys.path.remove(str(target))
    importlib.invalidate_caches()


def _env(target: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]), **extra}


def test_first_party_plugins_register_through_entry_points(fresh_plugins):
    infos = fresh_plugins.infos
    assert infos["timm"].status == "ok" and infos["timm"].families == ["timm"]
    assert infos["transformers"].status == "ok" and infos["transformers"].families == ["transformers"]
    assert infos["timm"].distribution == "zoo-hub" and infos["timm"].version


def test_installed_plugin_appears_in_plugins_and_list(installed_plugins):
    plugins = json.loads(run_zoo("plugins", "--json", env=_env(installed_plugins), check=True).stdout)
    by_name = {p["name"]: p for p in plugins}
    assert by_name["tinycnn"]["status"] == "ok"
    assert by_name["tinycnn"]["distribution"] == "zoo-tinycnn" and by_name["tinycnn"]["version"] == "0.2.0"
    assert by_name["tinycnn"]["families"] == ["tinycnn"] and by_name["tinycnn"]["backbones"] == ["tinycnn-s"]
    assert by_name["timm"]["status"] == "ok" and len(by_name["timm"]["backbones"]) >= 15
    listed = json.loads(run_zoo("list", "--family", "tinycnn", "--json", env=_env(installed_plugins),
                                check=True).stdout)
    assert [s["name"] for s in listed] == ["tinycnn-s"]


def test_broken_plugin_is_reported_and_the_rest_keeps_working(installed_plugins):
    env = _env(installed_plugins)
    plugins = {p["name"]: p for p in json.loads(run_zoo("plugins", "--json", env=env, check=True).stdout)}
    assert plugins["broken"]["status"] == "failed"
    assert "import failed" in plugins["broken"]["errors"][0] and "on purpose" in plugins["broken"]["errors"][0]
    table = run_zoo("plugins", env=env, check=True).stdout
    assert "broken" in table and "failed" in table
    for command in (["list", "--json"], ["recommend", "--task", "image-cls", "--json"],
                    ["info", "tinycnn-s", "--json"]):
        result = run_zoo(*command, env=env)
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout)


def test_installed_plugin_backbone_loads_through_the_hub(installed_plugins, fresh_plugins):
    from zoo import api

    classifier = api.load_classifier("tinycnn-s", task="image-cls", labels=["cat", "dog"])
    from PIL import Image

    batch = classifier.collate([classifier.preprocess(Image.new("RGB", (40, 30)))])
    assert classifier.forward(batch).shape == (1, 2)


def test_duplicate_family_is_refused_and_the_first_kept(fresh_plugins):
    class Impostor(Family):
        name = "timm"
        tasks = ("image-cls",)

        def load_classifier(self, *a, **k): ...
        def load_saved(self, *a, **k): ...
        def architecture(self, *a, **k): ...

    class ImpostorPlugin:
        @hookimpl
        def zoo_families(self):
            return [Impostor]

    original = fresh_plugins.family("timm")
    info = fresh_plugins.register(ImpostorPlugin(), "impostor")
    try:
        assert "already provided by plugin 'timm'" in info.errors[0]
        assert fresh_plugins.family("timm") is original
    finally:
        fresh_plugins.unregister("impostor")


def test_plugin_whose_hook_raises_is_isolated(fresh_plugins):
    class Raising:
        @hookimpl
        def zoo_families(self):
            raise RuntimeError("boom")

    info = fresh_plugins.register(Raising(), "raising")
    try:
        assert info.status == "failed" and "boom" in info.errors[0]
        assert {"timm", "transformers"} <= set(fresh_plugins.families)
    finally:
        fresh_plugins.unregister("raising")


def test_bad_plugin_registry_contribution_is_recorded(fresh_plugins, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[backbone]]\nname = "x"\n')

    class BadRegistry:
        @hookimpl
        def zoo_registry(self):
            return [bad]

    info = fresh_plugins.register(BadRegistry(), "bad-registry")
    try:
        from zoo import api

        api.load_registry(plugins=fresh_plugins)
        assert "missing required field" in info.errors[0] and str(bad) in info.errors[0]
    finally:
        fresh_plugins.unregister("bad-registry")


def test_disable_autoload_loads_only_named_plugins(installed_plugins, monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("ZOO_PLUGINS", "timm")
    manager = PluginManager()
    manager.load_entry_points()
    assert set(manager.families) == {"timm"}
    assert manager.infos["transformers"].status == "disabled"
    assert manager.infos["broken"].status == "disabled"
    result = run_zoo("recommend", "--task", "text-cls", "--json",
                     env=_env(installed_plugins, ZOO_DISABLE_PLUGIN_AUTOLOAD="1", ZOO_PLUGINS="timm"), check=True)
    data = json.loads(result.stdout)
    assert data["candidates"] == []
    assert all("family 'transformers' is not available" in e["reason"] for e in data["excluded"])


def test_plugin_guide_code_is_the_tested_plugin():
    """docs/plugins.md shows the example plugin's code; the installed-and-tested package is that code."""
    import re

    doc = (TESTS.parent / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```(?:python|toml)\n(.*?)```", doc, re.S)
    package = TESTS / "plugins" / "zoo_tinycnn"
    files = {path: path.read_text() for path in [package / "pyproject.toml", *package.glob("zoo_tinycnn/*")]}
    for block in blocks:
        if "tinycnn" not in block.lower() or block.startswith("from zoo import api"):
            continue
        code_lines = [line.split("#")[0].rstrip() for line in block.splitlines() if line.split("#")[0].strip()]
        assert any(all(line in text for line in code_lines) for text in files.values()), block[:80]


def test_installed_plugin_backbone_adapts_with_every_strategy(installed_plugins, fresh_plugins, tmp_path):
    """An outsider's family gets the whole engine: linear (cached head inputs), LoRA and full fine-tuning."""
    import data_factory as factory

    from zoo import api
    from zoo.engine.config import AdaptConfig

    images = factory.make_image_folder(tmp_path / "images", per_class=6)
    for strategy in ("linear", "lora", "full"):
        record = api.adapt("tinycnn-s", str(images), output=tmp_path / strategy, store=False,
                           config=AdaptConfig(strategy=strategy, epochs=1, batch_size=6))
        assert record["status"] == "finished"
        assert api.predict(tmp_path / strategy, [str(next((images / "red").iterdir()))], top_k=1)
