"""Run history: the SQLite store (record, update, list, get, compare, benches, two writers) and `zoo runs`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from zoo.compare import Comparison, RunSummary, main_metric
from zoo.errors import InvalidInputError, StoreError, UnknownRunError, ZooError
from zoo.store import DEFAULT_ENV, SCHEMA_VERSION, RunStore, default_store_path
from zoo.tasks import lower_is_better

runner = CliRunner()


def make_record(run_dir, *, backbone="resnet18", task="image-cls", status="finished", strategy="lora",
                started_at="2024-05-01T10:00:00+00:00", accuracy=0.9, macro_f1=0.88, extra_metrics=None,
                test=None, lr=1e-3, fingerprint="f" * 64, multi_label=False, epochs=3) -> dict:
    best = {"accuracy": accuracy, "macro_f1": macro_f1, "per_class": {"cat": 0.9, "dog": 0.8}}
    if multi_label:
        best = {"micro_f1": accuracy, "macro_f1": macro_f1}
    best.update(extra_metrics or {})
    return {
        "run_dir": str(run_dir), "status": status,
        "backbone": {"name": backbone, "family": "timm", "source": f"timm/{backbone}"},
        "task": task, "strategy": strategy, "started_at": started_at,
        "finished_at": None if status == "running" else "2024-05-01T10:02:00+00:00", "wall_s": 120.5,
        "data": {"source": "data/pets", "fingerprint": fingerprint, "sizes": {"train": 100, "val": 10, "test": 5},
                 "labels": ["cat", "dog"], "multi_label": multi_label},
        "config": {"lr": lr, "epochs": epochs, "optim": {"name": "adamw", "weight_decay": 0.01}},
        "metrics": {"best": best, "test": test,
                    "epochs": [{"epoch": i, "train_loss": 1.0 / i, "val": {"accuracy": accuracy * i / epochs}}
                               for i in range(1, epochs + 1)]},
        "best_epoch": epochs,
    }


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "history" / "runs.sqlite")


# --- The store --------------------------------------------------------------------------------------------------


def test_default_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(DEFAULT_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_store_path() == tmp_path / "cache" / "zoo" / "runs.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_store_path() == Path.home() / ".cache" / "zoo" / "runs.sqlite"
    monkeypatch.setenv(DEFAULT_ENV, str(tmp_path / "elsewhere.sqlite"))
    assert default_store_path() == tmp_path / "elsewhere.sqlite"
    assert RunStore().path == tmp_path / "elsewhere.sqlite"


def test_creates_parent_folders_and_versions_the_schema(tmp_path):
    path = tmp_path / "a" / "b" / "runs.sqlite"
    store = RunStore(path)
    assert path.parent.is_dir()
    assert store.list_runs() == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    assert {"runs", "benches"} <= tables
    assert {"id", "run_dir", "status", "task", "backbone", "strategy", "started_at", "finished_at", "wall_s",
            "best_metric_json", "record_json"} <= columns


def test_a_version_1_history_is_upgraded_in_place(tmp_path):
    from zoo.store import _SCHEMA_V1

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(_SCHEMA_V1)
        conn.execute("PRAGMA user_version = 1")
    old = make_record(tmp_path / "run-old")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO runs (run_dir, status, record_json, recorded_at) VALUES (?, ?, ?, ?)",
                     (old["run_dir"], "finished", json.dumps(old), "2026-01-01T00:00:00+00:00"))
    store = RunStore(path)
    assert [run.run_dir for run in store.list_runs()] == [old["run_dir"]]
    store.record_push({"run_dir": old["run_dir"], "repo_id": "me/model", "commit": "abc"})
    store.record_fetch({"backbone": "tiny-bert", "commit": "def"})
    assert [p["repo_id"] for p in store.list_pushes(run_dir=old["run_dir"])] == ["me/model"]
    assert [f["commit"] for f in store.list_fetches(backbone="tiny-bert")] == ["def"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2


def test_record_and_get_round_trip(store, tmp_path):
    record = make_record(tmp_path / "run-a", test={"accuracy": 0.87})
    run_id = store.record_run(record)
    assert isinstance(run_id, int)
    got = store.get_run(run_id)
    assert list(got)[0] == "id" and got["id"] == run_id
    assert {k: v for k, v in got.items() if k != "id"} == record


def test_relative_run_dir_is_stored_absolute(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_id = store.record_run(make_record("runs/rel"))
    assert store.get_run(run_id)["run_dir"] == str(tmp_path / "runs" / "rel")
    assert store.record_run(make_record(tmp_path / "runs" / "rel")) == run_id


def test_second_record_of_a_run_dir_updates_it(store, tmp_path):
    run_dir = tmp_path / "run-a"
    other = store.record_run(make_record(tmp_path / "run-b"))
    first = store.record_run(make_record(run_dir, status="running", accuracy=0.5))
    again = store.record_run(make_record(run_dir, status="finished", accuracy=0.93))
    assert again == first != other
    runs = store.list_runs()
    assert len(runs) == 2
    summary = next(run for run in runs if run.id == first)
    assert summary.status == "finished" and summary.main_value == pytest.approx(0.93)
    assert store.get_run(first)["metrics"]["best"]["accuracy"] == pytest.approx(0.93)


def test_records_without_run_dir_or_status_are_refused(store):
    with pytest.raises(InvalidInputError, match="run_dir"):
        store.record_run({"status": "running"})
    with pytest.raises(InvalidInputError, match="status"):
        store.record_run({"run_dir": "/tmp/x"})
    with pytest.raises(InvalidInputError):
        store.record_run(["not", "a", "dict"])  # type: ignore[arg-type]


def test_values_json_cannot_hold_are_stored_as_text(store, tmp_path):
    record = make_record(tmp_path / "run")
    record["config"]["output"] = tmp_path / "out"
    record["config"]["sizes"] = (1, 2)
    got = store.get_run(store.record_run(record))
    assert got["config"]["output"] == str(tmp_path / "out") and got["config"]["sizes"] == [1, 2]


def test_running_run_without_metrics_is_listed(store, tmp_path):
    record = make_record(tmp_path / "run", status="running")
    record["metrics"] = None
    record["wall_s"] = None
    run_id = store.record_run(record)
    (summary,) = store.list_runs()
    assert summary.id == run_id and summary.main_value is None and summary.macro_f1 is None
    assert summary.wall_s is None and summary.best == {}


def test_list_is_newest_first_and_filters(store, tmp_path):
    ids = {}
    for name, backbone, task, status, started in (
        ("old", "resnet18", "image-cls", "finished", "2024-01-01T00:00:00+00:00"),
        ("mid", "convnext_tiny", "image-cls", "failed", "2024-03-01T00:00:00+00:00"),
        ("new", "bert-base", "text-cls", "running", "2024-06-01T00:00:00+00:00"),
        ("conv2", "convnext_small", "image-cls", "finished", "2024-02-01T00:00:00+00:00"),
        ("unknown-start", "resnet18", "image-cls", "running", None),
    ):
        ids[name] = store.record_run(make_record(tmp_path / name, backbone=backbone, task=task, status=status,
                                                 started_at=started))
    order = [run.id for run in store.list_runs()]
    assert order == [ids[n] for n in ("new", "mid", "conv2", "old", "unknown-start")]
    assert all(isinstance(run, RunSummary) for run in store.list_runs())
    assert [r.id for r in store.list_runs(task="text-cls")] == [ids["new"]]
    assert [r.id for r in store.list_runs(backbone="resnet18")] == [ids["old"], ids["unknown-start"]]
    assert [r.id for r in store.list_runs(backbone="convnext*")] == [ids["mid"], ids["conv2"]]
    assert [r.id for r in store.list_runs(status="running")] == [ids["new"], ids["unknown-start"]]
    assert [r.id for r in store.list_runs(task="image-cls", status="finished")] == [ids["conv2"], ids["old"]]
    assert store.list_runs(task="audio-cls") == []
    assert len(store.list_runs(limit=2)) == 2
    assert len(store.list_runs(limit=0)) == len(store.list_runs(limit=None)) == 5
    with pytest.raises(InvalidInputError):
        store.list_runs(limit=-1)


def test_summary_main_metric(store, tmp_path):
    single = store.record_run(make_record(tmp_path / "single", accuracy=0.81, macro_f1=0.7))
    multi = store.record_run(make_record(tmp_path / "multi", multi_label=True, accuracy=0.66, macro_f1=0.5))
    runs = {run.id: run for run in store.list_runs()}
    assert (runs[single].main_metric, runs[single].main_value, runs[single].macro_f1) == ("accuracy", 0.81, 0.7)
    assert (runs[multi].main_metric, runs[multi].main_value, runs[multi].macro_f1) == ("micro_f1", 0.66, 0.5)
    assert main_metric(store.get_run(multi)) == "micro_f1"
    assert main_metric({"multi_label": True, "metrics": {"best": {"micro_f1": 0.5}}}) == "micro_f1"  # engine's key
    assert main_metric({"metrics": None}) == "accuracy"
    assert runs[single].best_epoch == 3 and runs[single].data_fingerprint == "f" * 64
    as_dict = runs[single].to_dict()
    assert as_dict["id"] == single and as_dict["backbone"] == "resnet18"
    json.dumps(as_dict)


def test_unknown_run_id(store, tmp_path):
    store.record_run(make_record(tmp_path / "run"))
    with pytest.raises(UnknownRunError) as info:
        store.get_run(999)
    error = info.value
    assert isinstance(error, ZooError) and isinstance(error, LookupError)
    assert error.run_id == 999 and "zoo runs" in str(error) and str(store.path) in str(error)
    with pytest.raises(UnknownRunError):
        store.summary(999)


def test_compare_puts_metrics_side_by_side(store, tmp_path):
    a = store.record_run(make_record(tmp_path / "a", accuracy=0.90, macro_f1=0.85,
                                     extra_metrics={"loss": 0.40, "ece": 0.05}))
    b = store.record_run(make_record(tmp_path / "b", backbone="convnext_tiny", accuracy=0.95, macro_f1=0.85,
                                     extra_metrics={"loss": 0.30}, test={"accuracy": 0.93}, lr=3e-4))
    c = store.record_run(make_record(tmp_path / "c", strategy="full", accuracy=0.70, macro_f1=0.60,
                                     extra_metrics={"loss": 0.90, "ece": 0.02}, fingerprint="0" * 64, epochs=5))
    comparison = store.compare([a, b, c])
    assert isinstance(comparison, Comparison)
    assert comparison.run_ids == [a, b, c]
    assert [run.id for run in comparison.runs] == [a, b, c]
    assert list(comparison.metrics)[:2] == ["accuracy", "macro_f1"]
    assert set(comparison.metrics) == {"accuracy", "macro_f1", "loss", "ece"}   # union; per_class is not a number
    assert comparison.metrics["ece"] == [0.05, None, 0.02]
    assert comparison.best["accuracy"] == [b]
    assert comparison.best["macro_f1"] == [a, b]            # ties keep every winner
    assert comparison.best["loss"] == [b]                   # lower is better
    assert comparison.best["ece"] == [c]
    assert comparison.test_metrics == {"accuracy": [None, 0.93, None]} and comparison.test_best == {"accuracy": [b]}
    assert comparison.facts["backbone"] == ["resnet18", "convnext_tiny", "resnet18"]
    assert comparison.facts["strategy"] == ["lora", "lora", "full"]
    assert comparison.facts["data fingerprint"] == ["f" * 64, "f" * 64, "0" * 64]
    assert {"backbone", "strategy", "data fingerprint", "best epoch"} <= set(comparison.differing_facts)
    assert "task" not in comparison.differing_facts
    assert comparison.config == {"lr": [1e-3, 3e-4, 1e-3], "epochs": [3, 3, 5]}   # only what differs
    assert not comparison.same_data
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["run_ids"] == [a, b, c] and data["best"]["accuracy"] == [b]
    assert "config" in data and "differing_facts" in data


def test_compare_same_data_and_bad_ids(store, tmp_path):
    a = store.record_run(make_record(tmp_path / "a"))
    b = store.record_run(make_record(tmp_path / "b", lr=1e-4))
    comparison = store.compare([a, b, a])
    assert comparison.run_ids == [a, b] and comparison.same_data
    with pytest.raises(InvalidInputError, match="two"):
        store.compare([a])
    with pytest.raises(InvalidInputError):
        store.compare([a, a])
    with pytest.raises(UnknownRunError):
        store.compare([a, 404])


def test_lower_is_better():
    assert all(lower_is_better(m) for m in ("loss", "val_loss", "ece", "error_rate", "latency_ms", "wall_s"))
    assert not any(lower_is_better(m) for m in ("accuracy", "macro_f1", "micro_f1", "top5_accuracy", "precision",
                                                "samples_per_second"))


def test_bench_table(store, tmp_path):
    run_dir = tmp_path / "run"
    first = store.record_bench({"run_dir": str(run_dir), "target": "cpu", "latency_ms": 12.5})
    second = store.record_bench({"run_dir": str(run_dir), "target": "onnx", "latency_ms": 8.0,
                                 "created_at": "2099-01-01T00:00:00+00:00"})
    third = store.record_bench({"target": "cpu", "backbone": "resnet18"})
    assert len({first, second, third}) == 3
    benches = store.list_benches()
    assert [b["id"] for b in benches][0] == second  # newest first
    assert {b["id"] for b in store.list_benches(run_dir=run_dir)} == {first, second}
    assert {b["id"] for b in store.list_benches(target="cpu")} == {first, third}
    cpu = next(b for b in benches if b["id"] == first)
    assert cpu["latency_ms"] == 12.5 and cpu["created_at"]
    assert store.list_runs() == []   # benches are not runs
    with pytest.raises(InvalidInputError):
        store.record_bench("nope")  # type: ignore[arg-type]


def test_two_store_objects_share_one_file(tmp_path):
    path = tmp_path / "runs.sqlite"
    first, second = RunStore(path), RunStore(path)
    a = first.record_run(make_record(tmp_path / "a", status="running"))
    assert [run.id for run in second.list_runs()] == [a]
    b = second.record_run(make_record(tmp_path / "b"))
    assert second.record_run(make_record(tmp_path / "a", status="finished")) == a
    assert first.get_run(a)["status"] == "finished"
    assert {run.id for run in first.list_runs()} == {a, b}


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "runs.sqlite"
    code = textwrap.dedent("""
        import sys
        from zoo.store import RunStore
        store = RunStore(sys.argv[1])
        for i in range(25):
            run_dir = f"{sys.argv[2]}/{sys.argv[3]}-{i}"
            store.record_run({"run_dir": run_dir, "status": "running", "task": "text-cls"})
            store.record_run({"run_dir": run_dir, "status": "finished", "task": "text-cls",
                              "metrics": {"best": {"accuracy": i / 25}}})
            store.record_bench({"run_dir": run_dir, "target": "cpu"})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(tmp_path), name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("p", "q")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    runs = RunStore(path).list_runs(limit=0)
    assert len(runs) == 50 and len({run.id for run in runs}) == 50
    assert {run.status for run in runs} == {"finished"}
    assert len(RunStore(path).list_benches(limit=0)) == 50


def test_unreadable_database_is_a_store_error(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a database") as info:
        RunStore(garbage).list_runs()
    assert isinstance(info.value, ZooError) and "ZOO_STORE" in str(info.value)
    with pytest.raises(StoreError, match="folder"):
        RunStore(tmp_path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).list_runs()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer zoo"):
        RunStore(path).list_runs()


# --- `zoo runs` -------------------------------------------------------------------------------------------------


@pytest.fixture
def app() -> typer.Typer:
    # The real root: it is where errors become one line (zoo.cli._OneLineErrors).
    from zoo.cli import app

    return app


@pytest.fixture
def filled(tmp_path) -> tuple[Path, list[int]]:
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    ids = [
        store.record_run(make_record(tmp_path / "run-a", started_at="2024-05-01T10:00:00+00:00", accuracy=0.9,
                                     extra_metrics={"loss": 0.5})),
        store.record_run(make_record(tmp_path / "run-b", backbone="convnext_tiny", accuracy=0.95, lr=3e-4,
                                     started_at="2024-05-02T10:00:00+00:00", extra_metrics={"loss": 0.4},
                                     test={"accuracy": 0.94})),
        store.record_run(make_record(tmp_path / "run-c", backbone="bert-base", task="text-cls", status="running",
                                     started_at="2024-05-03T10:00:00+00:00", multi_label=True, accuracy=0.6)),
    ]
    return path, ids


def invoke(app, *args, env=None):
    return runner.invoke(app, ["runs", *args], env={"COLUMNS": "200", **(env or {})})


@pytest.mark.parametrize("command", [[], ["show"], ["compare"]])
def test_runs_help_has_an_example(app, command):
    result = invoke(app, *command, "--help")
    assert result.exit_code == 0
    assert "Example: zoo runs" in result.output and "--json" in result.output and "--store" in result.output


def test_runs_lists_as_json_and_table(app, filled):
    path, (a, b, c) = filled
    result = invoke(app, "--store", str(path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [run["id"] for run in data] == [c, b, a]
    assert data[0]["main_metric"] == "micro_f1" and data[1]["main_metric"] == "accuracy"
    filtered = json.loads(invoke(app, "--store", str(path), "--json", "--task", "image-cls",
                                 "--backbone", "convnext*").stdout)
    assert [run["id"] for run in filtered] == [b]
    assert len(json.loads(invoke(app, "--store", str(path), "--json", "--limit", "1").stdout)) == 1
    assert json.loads(invoke(app, "--store", str(path), "--json", "--status", "failed").stdout) == []

    table = invoke(app, "--store", str(path))
    assert table.exit_code == 0
    for text in ("3 runs", "convnext_tiny", "bert-base", "running", "macro-F1", "0.9500", "micro_f1", "2m00s",
                 "run-b"):
        assert text in table.stdout, text


def test_runs_reads_the_store_from_the_environment(app, filled):
    path, ids = filled
    result = invoke(app, "--json", env={DEFAULT_ENV: str(path)})
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == len(ids)


def test_runs_on_an_empty_store(app, tmp_path):
    path = tmp_path / "new" / "runs.sqlite"
    result = invoke(app, "--store", str(path))
    assert result.exit_code == 0 and "No runs recorded yet" in result.stdout
    assert json.loads(invoke(app, "--store", str(path), "--json").stdout) == []
    filtered = invoke(app, "--store", str(path), "--task", "text-cls")
    assert "No runs match" in filtered.stdout


def test_runs_show(app, filled):
    path, (a, b, _) = filled
    result = invoke(app, "show", str(b), "--store", str(path), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {**RunStore(path).get_run(b), "pushes": []}
    # options given before the subcommand count too
    before = invoke(app, "--store", str(path), "--json", "show", str(b))
    assert before.exit_code == 0 and json.loads(before.stdout)["id"] == b

    table = invoke(app, "show", str(b), "--store", str(path))
    assert table.exit_code == 0
    for text in (f"run {b}", "convnext_tiny", "timm/convnext_tiny", "lora", "train 100, val 10, test 5",
                 "per epoch", "train_loss", "val.accuracy", "best (validation)", "test", "0.9400", "optim.name",
                 "adamw", "2024-05-02 10:00"):
        assert text in table.stdout, text


def test_runs_compare(app, filled):
    path, (a, b, c) = filled
    result = invoke(app, "compare", str(a), str(b), "--store", str(path), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["run_ids"] == [a, b] and data["best"]["accuracy"] == [b] and data["best"]["loss"] == [b]
    assert data["config"] == {"lr": [1e-3, 3e-4]} and data["same_data"]

    table = invoke(app, "compare", str(a), str(b), str(c), "--store", str(path))
    assert table.exit_code == 0
    for text in ("best metrics", f"run {a}", f"run {c}", "0.9500 *", "test metrics", "data fingerprint",
                 "strategy", "config differences", "lr", "0.0003"):
        assert text in table.stdout, text


def test_runs_compare_needs_two_ids(app, filled):
    path, (a, _, _) = filled
    result = invoke(app, "compare", str(a), "--store", str(path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "at least two" in result.stderr


@pytest.mark.parametrize("command", [["show", "42"], ["compare", "1", "42"]])
def test_runs_unknown_id_is_one_line(app, filled, command):
    path, _ = filled
    result = invoke(app, *command, "--store", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: no run with id 42") and "zoo runs" in result.stderr


def test_runs_unreadable_store_is_one_line(app, tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 200)
    for args in ([], ["show", "1"], ["compare", "1", "2"]):
        result = invoke(app, *args, "--store", str(garbage))
        assert result.exit_code == 1, args
        assert result.stderr.count("\n") == 1 and "cannot use run history" in result.stderr
