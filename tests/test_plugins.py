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
    from zoo_tinycnn.model import TinyCnn

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
    files = {path: path.read_text() for path in [package / "pyproject.toml", *package.glob("zoo_tinycnn/*"),
                                                  *package.glob("tests/*.py")]}
    for block in blocks:
        if "tinycnn" not in block.lower() or block.startswith("from zoo import api"):
            continue
        code_lines = [line.split("#")[0].rstrip() for line in block.splitlines() if line.split("#")[0].strip()]
        assert any(all(line in text for line in code_lines) for text in files.values()), block[:80]


def test_the_plugin_template_builds_from_the_guide_and_passes_the_contract(tmp_path):
    """docs/plugins.md is a copyable package: its file blocks, written out, make a plugin whose own test (the
    contract checker) passes."""
    import re

    doc = (TESTS.parent / "docs" / "plugins.md").read_text()
    written = set()
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", doc, re.S):
        first = block.splitlines()[0]
        if first.startswith("# zoo-tinycnn/"):
            path = tmp_path / first.removeprefix("# ")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block)
            written.add(first.removeprefix("# zoo-tinycnn/"))
    assert written == {"pyproject.toml", "zoo_tinycnn/__init__.py", "zoo_tinycnn/family.py", "zoo_tinycnn/model.py",
                       "zoo_tinycnn/backbones.toml", "tests/test_contract.py"}
    package = tmp_path / "zoo-tinycnn"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package,
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


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


# --- names: first come, first served, built-ins first -----------------------------------------------------------

class _Impostor(Family):
    name = "timm"
    tasks = ("image-cls",)

    def load_classifier(self, *a, **k): ...
    def load_saved(self, *a, **k): ...
    def architecture(self, *a, **k): ...


def test_builtins_load_first_so_an_earlier_sorting_plugin_cannot_take_their_family(monkeypatch):
    """A third-party entry point whose name sorts before 'timm' offering family 'timm' is refused, not preferred."""
    import types
    from importlib.metadata import EntryPoint

    import zoo.plugins

    module = types.ModuleType("zoo_test_impostor")
    module.zoo_families = hookimpl(lambda: [_Impostor])
    monkeypatch.setitem(sys.modules, "zoo_test_impostor", module)
    real = zoo.plugins.entry_points
    impostor = EntryPoint(name="aaa-impostor", value="zoo_test_impostor", group="zoo")
    monkeypatch.setattr(zoo.plugins, "entry_points", lambda group: [impostor, *real(group=group)])
    manager = PluginManager()
    manager.load_entry_points()
    assert type(manager.family("timm")).__module__ == "zoo_timm.family"
    assert manager.infos["aaa-impostor"].status == "failed"
    assert "already provided by plugin 'timm'" in manager.infos["aaa-impostor"].errors[0]
    assert list(manager.infos)[:2] == ["timm", "transformers"]


def test_plugin_backbone_that_repoints_an_existing_one_is_refused(fresh_plugins, tmp_path):
    from zoo import api
    from zoo.registry import CORE_REGISTRY, read_registry_file

    core = read_registry_file(CORE_REGISTRY)[0]
    table = {**{k: v for k, v in core.to_dict().items() if v not in (None, "")}, "source": "attacker/weights"}
    table.pop("origin", None)
    mine = {**table, "name": "my-own-net"}

    class Repointing:
        @hookimpl
        def zoo_registry(self):
            return [table, mine]

    class Late:   # a second plugin offering a name the first already contributed
        @hookimpl
        def zoo_registry(self):
            return [{**mine, "source": "other/weights"}]

    info = fresh_plugins.register(Repointing(), "repointing")
    late = fresh_plugins.register(Late(), "late")
    try:
        registry = api.load_registry(plugins=fresh_plugins)
        assert registry.get(core.name).source == core.source and registry.get(core.name).origin == str(CORE_REGISTRY)
        assert registry.get("my-own-net").source == table["source"]
        assert info.backbones == ["my-own-net"] and late.backbones == []
        assert any(repr(core.name) in e and "already defined" in e for e in info.errors)
        assert any("'my-own-net'" in e and "already defined" in e for e in late.errors)
        api.load_registry(plugins=fresh_plugins)
        assert len(info.errors) == 1, "reading the registry again does not repeat the report"
    finally:
        fresh_plugins.unregister("repointing")
        fresh_plugins.unregister("late")


def test_a_user_registry_override_gives_a_notice(tmp_path, monkeypatch):
    from zoo import api
    from zoo.registry import CORE_REGISTRY, read_registry_file

    first = read_registry_file(CORE_REGISTRY)[0]
    user = tmp_path / "mine.toml"
    user.write_text(f'[[backbone]]\nname = "{first.name}"\nfamily = "{first.family}"\nsource = "me/my-copy"\n'
                    f'tasks = {list(first.tasks)!r}\nparams_m = 1.0\ngflops = 1.0\ninput = {{ image_size = 224 }}\n'
                    'license = "mit"\n')
    with pytest.warns(UserWarning, match=f"{user}: backbone '{first.name}' replaces the entry from"):
        registry = api.load_registry([user])
    assert registry.get(first.name).source == "me/my-copy"


# --- plugin registry files --------------------------------------------------------------------------------------

def test_one_bad_entry_of_a_plugin_toml_is_skipped_and_local_dirs_are_relative_to_the_file(fresh_plugins, tmp_path,
                                                                                           monkeypatch):
    from zoo import api

    folder = tmp_path / "plugin-data"
    folder.mkdir()
    (folder / "weights").mkdir()
    toml = folder / "backbones.toml"
    entry = ('[[backbone]]\nname = "{name}"\nfamily = "timm"\nsource = "{source}"\ntasks = ["image-cls"]\n'
             'params_m = 1.0\ngflops = 1.0\ninput = {{ image_size = 32 }}\nlicense = "mit"\n')
    toml.write_text(entry.format(name="first-good", source="local-dir:weights")
                    + entry.format(name="bad", source="me/bad").replace("params_m = 1.0", 'params_m = "x"')
                    + entry.format(name="second-good", source="me/second"))

    class Shipped:
        @hookimpl
        def zoo_registry(self):
            return [toml]

    info = fresh_plugins.register(Shipped(), "shipped")
    monkeypatch.chdir(tmp_path)   # a folder other than the TOML file's
    try:
        registry = api.load_registry(plugins=fresh_plugins)
        assert info.backbones == ["first-good", "second-good"]
        assert registry.get("first-good").local_path == folder.resolve() / "weights"
        assert "bad" not in registry
        (error,) = info.errors
        assert str(toml) in error and "'bad'" in error and "'params_m'" in error and "skipped" in error
        assert info.status == "ok"
    finally:
        fresh_plugins.unregister("shipped")


def test_an_unknown_name_in_zoo_plugins_is_reported(monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("ZOO_PLUGINS", "timm,timmm")
    manager = PluginManager()
    manager.load_entry_points()
    assert set(manager.families) == {"timm"}
    info = manager.infos["timmm"]
    assert info.status == "not found" and "ZOO_PLUGINS names 'timmm'" in info.errors[0] and "timm" in info.errors[0]


def test_zoo_debug_shows_a_failed_plugins_traceback(fresh_plugins, monkeypatch):
    class Raising:
        @hookimpl
        def zoo_families(self):
            raise RuntimeError("boom")

    info = fresh_plugins.register(Raising(), "quiet")
    monkeypatch.setenv("ZOO_DEBUG", "1")
    loud = fresh_plugins.register(Raising(), "loud")
    try:
        assert info.errors == ["hook zoo_families raised RuntimeError: boom"]
        first, _, rest = loud.errors[0].partition("\n")
        assert first == "hook zoo_families raised RuntimeError: boom"
        assert rest.startswith("Traceback") and 'raise RuntimeError("boom")' in rest
    finally:
        fresh_plugins.unregister("quiet")
        fresh_plugins.unregister("loud")


def test_zoo_debug_zoo_plugins_shows_the_import_traceback(installed_plugins):
    quiet = {p["name"]: p for p in json.loads(run_zoo("plugins", "--json", env=_env(installed_plugins),
                                                      check=True).stdout)}
    assert "Traceback" not in quiet["broken"]["errors"][0]
    loud = {p["name"]: p for p in json.loads(run_zoo("plugins", "--json", env=_env(installed_plugins, ZOO_DEBUG="1"),
                                                     check=True).stdout)}
    error = loud["broken"]["errors"][0]
    assert error.startswith("import failed") and "\nTraceback" in error and "on purpose" in error.splitlines()[-1]


# --- weights from outside the Hub: a source scheme a family claims ----------------------------------------------

ARCHIVE_PLUGIN = TESTS / "plugins" / "zoo_archive"


@pytest.fixture
def archive_plugin(fresh_plugins, monkeypatch):
    """The example plugin whose family fetches 'archive:URL#sha256=HEX' sources, registered for one test."""
    monkeypatch.syspath_prepend(str(ARCHIVE_PLUGIN))
    import zoo_archive

    fresh_plugins.register(zoo_archive, "archive")
    yield fresh_plugins
    fresh_plugins.unregister("archive")


def _archived_backbone(tmp_path, *, checksum: str | None = None) -> tuple[Path, str]:
    """A tiny timm folder packed in a tar file, and a registry file naming it by file URL and checksum."""
    import hashlib
    import tarfile

    from tiny_models import TINY_REPOS

    folder = tmp_path / "model"
    TINY_REPOS["zoo-test/test_resnet.r160_in1k"](folder)
    archive = tmp_path / "resnet.tar"
    with tarfile.open(archive, "w") as tar:
        for path in folder.iterdir():
            tar.add(path, arcname=path.name)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    registry = tmp_path / "archived.toml"
    registry.write_text(f'''[[backbone]]
name = "archived-resnet"
family = "timm-archive"
source = "archive:{archive.as_uri()}#sha256={checksum or digest}"
arch = "test_resnet"
tasks = ["image-cls"]
params_m = 0.469688
gflops = 0.205094
input = {{ image_size = 160 }}
license = "apache-2.0"
''')
    return registry, digest


def test_a_source_scheme_no_family_claims_is_refused_when_the_registry_is_read(tmp_path, fresh_plugins):
    from zoo import api
    from zoo.errors import RegistryError

    path = tmp_path / "tv.toml"
    path.write_text('[[backbone]]\nname = "tv-resnet34"\nfamily = "torchvision"\nsource = "torchvision:resnet34"\n'
                    'tasks = ["image-cls"]\nparams_m = 21.8\ngflops = 3.7\ninput = { image_size = 224 }\n'
                    'license = "bsd-3-clause"\n')
    with pytest.raises(RegistryError) as info:
        api.load_registry([path], plugins=fresh_plugins)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "'tv-resnet34'" in message and info.value.field == "source"
    assert "source scheme 'torchvision' is not claimed" in message
    result = run_zoo("fetch", "tv-resnet34", "--registry", str(path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "'torchvision'" in result.stderr


def test_a_claimed_source_is_fetched_through_its_family_and_then_loads_offline(archive_plugin, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from zoo import api
    from zoo.errors import BackboneNotFetchedError
    from zoo.hub.fetch import ensure_fetched, loaded_commit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    registry_file, digest = _archived_backbone(tmp_path)
    spec = api.load_registry([registry_file], plugins=archive_plugin).get("archived-resnet")
    assert spec.source_scheme == "archive"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneNotFetchedError, match="zoo fetch archived-resnet") as not_fetched:
        ensure_fetched(spec)
    assert "archive: source" in str(not_fetched.value) and "Hugging Face" not in str(not_fetched.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    (result,) = api.fetch(["archived-resnet"], registry_files=[registry_file], store=False).results
    assert result.status == "fetched" and result.commit == digest and result.files == 2 and result.bytes > 0
    assert Path(result.path, "model.safetensors").is_file()

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    ensure_fetched(spec)   # cached now: no hint
    assert loaded_commit(spec) == digest
    classifier = api.load_classifier("archived-resnet", task="image-cls", labels=["a", "b"],
                                     registry_files=[registry_file])
    from PIL import Image

    assert classifier.forward(classifier.collate([classifier.preprocess(Image.new("RGB", (40, 30)))])).shape == (1, 2)


def test_a_claimed_source_with_a_wrong_checksum_fails_that_backbone_only(archive_plugin, tmp_path, monkeypatch):
    from zoo import api

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    registry_file, digest = _archived_backbone(tmp_path, checksum="0" * 64)
    (result,) = api.fetch(["archived-resnet"], registry_files=[registry_file], store=False).results
    assert result.status == "failed" and f"sha256 is {digest}" in result.error and "\n" not in result.error


def test_a_claimed_source_is_no_hub_repo_in_the_card_or_the_errors(archive_plugin, tmp_path):
    """The card links a base model only on the Hub, and a load error names the source, not a Hub repo or cache."""
    from zoo import api
    from zoo.errors import ModelLoadError
    from zoo.runs.card import base_model

    registry_file, digest = _archived_backbone(tmp_path)
    spec = api.load_registry([registry_file], plugins=archive_plugin).get("archived-resnet")
    assert base_model({"source": spec.source, "commit": digest}) is None
    assert base_model({"source": "org/model", "commit": "abc123"}) == "org/model"
    message = str(ModelLoadError.for_backbone(spec, "timm", OSError("no such archive")))
    assert f"source {spec.source!r}" in message and "zoo fetch archived-resnet" in message
    assert "Hub" not in message and "Hugging Face" not in message
