"""Test fixtures: an isolated Hugging Face cache, a local Hub-compatible server with tiny models, helpers.

The server is bound at import time, before anything imports huggingface_hub, because the client reads
``HF_ENDPOINT`` once when it is imported. Nothing here touches the internet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="zoo-tests-"))

# pytest-xdist runs test files in several processes (pyproject.toml): each, and every `zoo` it starts, gets its
# share of the CPUs for its thread pools, set before torch is imported, so the pools do not oversubscribe the cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

from hub_server import HubServer  # noqa: E402

HUB = HubServer(_SESSION_DIR / "hub").__enter__()
os.environ.update({
    "HF_ENDPOINT": HUB.endpoint,
    "HF_HOME": str(_SESSION_DIR / "hf-home"),
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_OFFLINE": "0",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "XDG_CONFIG_HOME": str(_SESSION_DIR / "config"),   # no user registry file leaks in
    "XDG_CACHE_HOME": str(_SESSION_DIR / "cache"),
})
os.environ.pop("ZOO_REGISTRY", None)
os.environ.pop("ZOO_DISABLE_PLUGIN_AUTOLOAD", None)
os.environ.pop("HF_TOKEN", None)

FIXTURE_REGISTRY = TESTS / "data" / "fixture_registry.toml"
# The example plugins' own tests run in a process of their own, against the package as a user installs it.
collect_ignore = ["plugins"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` (the engine's CUDA-only paths) are skipped, saying why, where no CUDA device is."""
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if not marked:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device: run `pytest -m gpu` (or benchmarks/gpu_suite.sh) on one")
        for item in marked:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    HUB.__exit__(None, None, None)
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def hub() -> HubServer:
    """The local Hub with every tiny model of tests/tiny_models.py uploaded."""
    from tiny_models import TINY_REPOS, seeded

    for repo_id, build in TINY_REPOS.items():
        if repo_id not in HUB.store.repos:
            folder = _SESSION_DIR / "tiny" / repo_id
            folder.mkdir(parents=True)
            with seeded(repo_id):
                build(folder)
            HUB.store.add_repo(repo_id, folder)
    return HUB


@pytest.fixture
def fresh_plugins():
    """A plugin manager rediscovered for this test, and forgotten after it."""
    from zoo.plugins import get_plugin_manager, reset_plugin_manager

    reset_plugin_manager()
    yield get_plugin_manager()
    reset_plugin_manager()


def run_zoo(*args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed `zoo` console script in a fresh process."""
    zoo = shutil.which("zoo", path=str(Path(sys.executable).parent)) or "zoo"
    result = subprocess.run([zoo, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def datasets(session_dir) -> dict[str, Path]:
    """Small learnable datasets of each task type (tests/data_factory.py)."""
    import data_factory as factory

    root = session_dir / "datasets"
    return {
        "image-cls": factory.make_image_folder(root / "images", per_class=16),
        "text-cls": factory.make_text_csv(root / "reviews.csv", per_class=40),
        "audio-cls": factory.make_audio_folder(root / "tones", per_class=12),
    }


# One small backbone per task type for the server's tests: the serving path is the same for every family.
SERVE_BACKBONES = {"text-cls": "tiny-bert", "image-cls": "test_resnet.r160_in1k", "audio-cls": "tiny-wav2vec2"}


@pytest.fixture(scope="module")
def serve_runs(hub, datasets, tmp_path_factory):
    """One finished linear-probe run per task type, made on first use."""
    from zoo import api
    from zoo.engine.config import AdaptConfig

    root = tmp_path_factory.mktemp("serve-runs")
    made: dict[str, Path] = {}

    def run(task: str) -> Path:
        if task not in made:
            api.adapt(SERVE_BACKBONES[task], str(datasets[task]), output=root / task, val_fraction=0.25,
                      registry_files=[str(FIXTURE_REGISTRY)],
                      config=AdaptConfig(strategy="linear", epochs=1, batch_size=8), store=False)
            made[task] = root / task
        return made[task]

    return run


def val_inputs(run: Path, n: int = 4, *, sample_rate: int | None = None) -> list[str]:
    """Validation inputs of a run as a person would send them: texts, or image and audio file paths. With
    ``sample_rate``, only audio files at that rate (for code that feeds a file's samples to the model unresampled)."""
    import json

    from zoo.engine.run import AdaptRequest

    record = json.loads((run / "zoo_run.json").read_text())
    val = AdaptRequest(**record["request"]).read_data(seed=record["seed"]).val
    inputs = [str(example.input) for example in val]
    if sample_rate is not None and record["task"] == "audio-cls":
        import soundfile

        inputs = [path for path in inputs if soundfile.info(path).samplerate == sample_rate]
    return inputs[:n]
