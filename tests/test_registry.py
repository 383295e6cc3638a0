"""The registry: the curated catalogue's content, its facts against the real architectures, and validation."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import FIXTURE_REGISTRY, TESTS, run_zoo

from zoo import api
from zoo.errors import RegistryError, UnknownBackboneError
from zoo.registry import CORE_REGISTRY, read_registry_file

CORE = read_registry_file(CORE_REGISTRY)
FIXTURES = read_registry_file(FIXTURE_REGISTRY)
HF_ARCHITECTURES = tomllib.loads((TESTS / "data" / "transformers_architectures.toml").read_text())
MINIMUM_PER_TASK = {"image-cls": 15, "text-cls": 12, "audio-cls": 8}


def test_core_registry_covers_every_task():
    for task, minimum in MINIMUM_PER_TASK.items():
        names = [s.name for s in CORE if task in s.tasks]
        assert len(names) >= minimum, f"{task}: {len(names)} backbones, want {minimum}"


def test_core_registry_lives_at_the_repository_root():
    # The packaged file is the repository's registry.toml (a link inside the package, a copy in wheels).
    root_file = TESTS.parent / "registry.toml"
    assert root_file.read_bytes() == CORE_REGISTRY.read_bytes()


@pytest.mark.parametrize("spec", CORE, ids=lambda s: s.name)
def test_core_entry_is_complete(spec):
    assert spec.reference, "every curated entry has at least one published quality number"
    for ref in spec.reference:
        assert ref.source.startswith("https://"), f"{ref.metric}: source must be a URL, got {ref.source!r}"
    assert spec.license != "unknown" and spec.pretrain and spec.notes
    if {"text-cls"} & set(spec.tasks):
        assert spec.languages, "text backbones name their languages"
    assert not spec.is_local, "the curated catalogue points at the Hub"


def test_every_core_family_is_provided_by_a_first_party_plugin(fresh_plugins):
    assert {s.family for s in CORE} <= set(fresh_plugins.families)


@pytest.mark.parametrize("spec", CORE + FIXTURES, ids=lambda s: s.name)
def test_registry_facts_match_the_architecture(spec, fresh_plugins, hub):
    """params_m and gflops equal what the family's real architecture has, counted by torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    config = HF_ARCHITECTURES.get(spec.name) if spec.family == "transformers" and spec in CORE else None
    if spec.family == "transformers" and spec in CORE:
        assert config is not None, f"add {spec.name} to tests/data/transformers_architectures.toml"
    arch = fresh_plugins.family(spec.family).architecture(spec, task=spec.tasks[0], config=config)
    params_m = sum(p.numel() for p in arch.model.parameters()) / 1e6
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        arch.model(**arch.example_inputs)
    assert params_m == pytest.approx(spec.params_m, rel=0.01, abs=0.006)
    assert counter.get_total_flops() / 1e9 == pytest.approx(spec.gflops, rel=0.02, abs=0.006)


def test_names_are_unique_and_lookups_suggest():
    registry = api.load_registry()
    assert len(registry.names()) == len(set(registry.names()))
    with pytest.raises(UnknownBackboneError) as info:
        registry.get("convnext_tiny")
    assert "convnext_tiny." in str(info.value)


def test_user_registry_adds_and_overrides(tmp_path, monkeypatch):
    first = CORE[0]
    user = tmp_path / "mine.toml"
    user.write_text(f'''
[[backbone]]
name = "{first.name}"
family = "{first.family}"
source = "me/my-copy"
tasks = {list(first.tasks)!r}
params_m = 1.0
gflops = 1.0
input = {{ image_size = 224 }}
license = "mit"
''')
    monkeypatch.setenv("ZOO_REGISTRY", str(user))
    registry = api.load_registry()
    assert registry.get(first.name).source == "me/my-copy"
    assert registry.get(first.name).origin == str(user)


GOOD_ENTRY = '''[[backbone]]
name = "my-net"
family = "timm"
source = "me/my-net"
tasks = ["image-cls"]
params_m = 3.0
gflops = 0.5
input = { image_size = 224 }
license = "mit"
'''

BAD_FILES = {
    "unknown-field": (GOOD_ENTRY.replace("gflops", "glops"), "my-net", "glops"),
    "missing-field": (GOOD_ENTRY.replace('license = "mit"\n', ""), "my-net", "license"),
    "wrong-type": (GOOD_ENTRY.replace("params_m = 3.0", 'params_m = "three"'), "my-net", "params_m"),
    "negative": (GOOD_ENTRY.replace("gflops = 0.5", "gflops = -1"), "my-net", "gflops"),
    "unknown-task": (GOOD_ENTRY.replace('"image-cls"]', '"video-cls"]'), "my-net", "tasks"),
    "missing-input": (GOOD_ENTRY.replace("image_size", "img"), "my-net", "input"),
    "bad-source": (GOOD_ENTRY.replace("me/my-net", "https://example.com/x/y"), "my-net", "source"),
    "reference-without-source": (GOOD_ENTRY + 'reference = [{ metric = "a", value = 1 }]\n', "my-net",
                                 "reference[0]"),
    "duplicate": (GOOD_ENTRY + "\n" + GOOD_ENTRY, "my-net", "name"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_user_registry_names_file_entry_and_field(case, tmp_path):
    text, entry, field = BAD_FILES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(RegistryError) as info:
        read_registry_file(path)
    message = str(info.value)
    assert str(path) in message and repr(entry) in message and repr(field) in message
    assert info.value.field == field


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[[backbone]\nname = ")
    with pytest.raises(RegistryError, match="not valid TOML"):
        read_registry_file(path)


@pytest.mark.parametrize("command", [["list"], ["recommend", "--task", "image-cls"], ["info", "resnet18.a1_in1k"]])
def test_cli_reports_a_bad_registry_in_one_line(command, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_FILES["unknown-field"][0])
    result = run_zoo(*command, "--registry", str(path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "'glops'" in lines[0] and "'my-net'" in lines[0]
    assert "Traceback" not in result.stderr


def test_good_user_registry_file_is_listed(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD_ENTRY)
    result = run_zoo("list", "--json", "--registry", str(path), check=True)
    assert "my-net" in result.stdout


def test_spec_round_trips_through_to_dict():
    from zoo.registry import parse_registry_document

    for spec in CORE[:3]:
        data = spec.to_dict()
        data.pop("origin")
        data = {k: v for k, v in data.items() if v is not None}
        again = parse_registry_document({"backbone": [data]}, origin=spec.origin)[0]
        assert again == spec


def test_registry_file_path_is_a_packaged_file():
    assert Path(CORE_REGISTRY).is_file()
