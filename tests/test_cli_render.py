"""How the command line renders: errors once at the root, flags without type tags, tables that fit 80 columns,
progress on stderr only, headers that say what a number is, the shared number formats."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from conftest import FIXTURE_REGISTRY
from typer.testing import CliRunner

from zoo.cli import _format as fmt
from zoo.cli import app
from zoo.store import RunStore

runner = CliRunner()
CLI = Path(__file__).resolve().parents[1] / "zoo" / "cli"


def command_paths(command=None, prefix=()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the app, as the words that call it: [("list",), ("runs", "show"), ...]."""
    command = command or typer.main.get_command(app)
    paths = []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths.append((*prefix, name))
        paths += command_paths(sub, (*prefix, name))
    return paths


def test_the_app_has_the_commands_people_use():
    top = {path[0] for path in command_paths()}
    assert top >= {"list", "info", "plugins", "recommend", "fetch", "adapt", "predict", "bench", "push", "runs"}
    assert ("runs", "show") in command_paths() and ("runs", "compare") in command_paths()


# --- one error wrapper, at the root -----------------------------------------------------------------------------


def test_no_command_renders_errors_itself():
    for module in CLI.glob("*_cmd.py"):
        assert "handle_errors" not in module.read_text(), f"{module.name}: errors are rendered by the root command"


def test_an_unexpected_error_in_a_command_is_one_line(monkeypatch):
    from zoo import api

    def broken(**kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(api, "plugin_report", broken)
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: unexpected KeyError")


# --- --help -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_flags_have_no_type_tag_in_help(path):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output, result.output
    for flag in ("--json", "--help"):
        line = next(line for line in result.output.splitlines() if flag in line)
        assert "<" not in line, line


def test_valued_options_keep_their_type_tag():
    result = runner.invoke(app, ["list", "--help"], env={"COLUMNS": "120"})
    assert "<str>" in next(line for line in result.output.splitlines() if "--family" in line)


# --- tables on an 80-column terminal ----------------------------------------------------------------------------


def header_cells(output: str) -> list[str]:
    """The header cells of the first table in ``output``, each the words of its (possibly wrapped) header."""
    lines = output.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    rule = next(i for i in range(top, len(lines)) if lines[i].startswith("┡"))
    rows = [line.strip("┃").split("┃") for line in lines[top + 1:rule]]
    return [" ".join(row[i].strip() for row in rows if row[i].strip()) for i in range(len(rows[0]))]


def column_widths(output: str) -> list[int]:
    top = next(line for line in output.splitlines() if line.startswith("┏"))
    return [len(part) - 2 for part in top.strip("┏┓").split("┳")]


@pytest.mark.parametrize("task", ["image-cls", "text-cls", "audio-cls"])
def test_recommend_fits_80_columns_and_keeps_the_reason_readable(task):
    result = runner.invoke(app, ["recommend", "--task", task], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    # but the next command, which is never folded: cut over two lines, it would not run when pasted
    assert max(len(line) for line in result.stdout.splitlines() if not line.startswith("Next: ")) <= 80
    assert result.stdout.splitlines()[-1].startswith("Next: zoo adapt ")
    headers, widths = header_cells(result.stdout), column_widths(result.stdout)
    assert headers[:2] == ["#", "backbone"] and headers[-1] == "why"
    for header, width in zip(headers, widths, strict=True):
        assert width >= max(len(word) for word in header.split()), (header, width)
    assert widths[-1] >= 25, "the reason keeps a readable width"
    assert "--wide shows every column" in " ".join(result.stdout.split())
    # what is hidden is what the reason already says: latency and parameters
    assert "est. ms" not in headers and "params (M)" not in headers


def test_recommend_wide_shows_every_column():
    result = runner.invoke(app, ["recommend", "--task", "image-cls", "--wide"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert header_cells(result.stdout) == ["#", "backbone", "score", "est. ms", "params (M)", "licence", "why"]
    assert "--wide shows" not in result.stdout
    # every reason on one line: nothing folds
    assert len([line for line in result.stdout.splitlines() if line.startswith("│")]) == 5


def test_a_wide_terminal_shows_every_column_with_whole_headers():
    result = runner.invoke(app, ["recommend", "--task", "image-cls"], env={"COLUMNS": "200"})
    assert header_cells(result.stdout) == ["#", "backbone", "score", "est. ms", "params (M)", "licence", "why"]
    assert "--wide" not in result.stdout


def test_list_fits_80_columns():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    headers, widths = header_cells(result.stdout), column_widths(result.stdout)
    assert headers[0] == "name" and "params (M)" in headers
    for header, width in zip(headers, widths, strict=True):
        assert width >= max(len(word) for word in header.split()), (header, width)
    wide = runner.invoke(app, ["list", "--wide"], env={"COLUMNS": "80"})
    assert header_cells(wide.stdout) == ["name", "family", "tasks", "params (M)", "GFLOPs", "input", "licence",
                                         "reference"]


# --- progress: stderr, when it is a terminal --------------------------------------------------------------------


@pytest.fixture
def fake_data_recommend(monkeypatch):
    """api.recommend_with_data as --data calls it: it reports progress, then returns a result."""
    from zoo import api

    def recommend(task, progress=None, message=None, **options):
        if progress:
            progress("tiny-bert", 1, 2)
            progress("tiny-bert", 2, 2)
        if message:
            message("features of tiny-bert cached")
        return SimpleNamespace(to_dict=lambda: {"task": task, "candidates": []})

    monkeypatch.setattr(api, "recommend_with_data", recommend)


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_goes_to_stderr_when_it_is_a_terminal_also_with_json(fake_data_recommend, monkeypatch, terminal):
    from zoo.cli import _common

    monkeypatch.setattr(_common, "stderr_is_terminal", lambda: terminal)
    result = runner.invoke(app, ["recommend", "--task", "text-cls", "--data", "x.csv", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"task": "text-cls", "candidates": []}   # stdout: the JSON alone
    assert ("features of tiny-bert cached" in result.stderr) == terminal


def test_adapt_draws_its_progress_on_stderr(monkeypatch):
    from zoo.cli import _common, adapt_cmd

    monkeypatch.setattr(_common, "stderr_is_terminal", lambda: True)
    console = _common.progress_console()
    assert console is not None and console.stderr
    assert adapt_cmd.RichReporter(console).console.stderr
    monkeypatch.setattr(_common, "stderr_is_terminal", lambda: False)
    assert _common.progress_console() is None


# --- zoo list PATTERN -------------------------------------------------------------------------------------------


def test_list_pattern_without_wildcards_is_a_part_of_the_name():
    names = [e["name"] for e in json.loads(runner.invoke(
        app, ["list", "tiny", "--json", "--registry", str(FIXTURE_REGISTRY)]).stdout)]
    assert {"tiny-bert", "tiny-wav2vec2", "tiny-whisper"} <= set(names)
    assert all("tiny" in name for name in names)
    glob = [e["name"] for e in json.loads(runner.invoke(
        app, ["list", "tiny-w*", "--json", "--registry", str(FIXTURE_REGISTRY)]).stdout)]
    assert sorted(glob) == ["tiny-wav2vec2", "tiny-wav2vec2-group", "tiny-whisper"]
    exact = json.loads(runner.invoke(app, ["list", "TINY-BERT", "--json", "--registry",
                                           str(FIXTURE_REGISTRY)]).stdout)
    assert [e["name"] for e in exact] == ["tiny-bert"]


# --- headers say what a number is -------------------------------------------------------------------------------


def _record(run_dir, backbone="resnet18", accuracy=0.9) -> dict:
    return {"run_dir": str(run_dir), "status": "finished", "task": "image-cls", "strategy": "linear",
            "backbone": {"name": backbone, "family": "timm", "source": f"timm/{backbone}"},
            "started_at": "2024-05-01T10:00:00+00:00", "wall_s": 3.0,
            "data": {"source": "pets", "fingerprint": "f" * 64, "sizes": {"train": 8, "val": 2}, "labels": ["a", "b"]},
            "metrics": {"best": {"accuracy": accuracy, "macro_f1": accuracy},
                        "epochs": [{"epoch": 1, "val": {"accuracy": accuracy}, "skipped_steps": 0}]},
            "config": {"lr": 1e-3}, "best_epoch": 1}


def test_runs_headers_say_the_metrics_are_validation_metrics(tmp_path):
    store = tmp_path / "runs.sqlite"
    RunStore(store).record_run(_record(tmp_path / "a"))
    result = runner.invoke(app, ["runs", "--store", str(store)], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    headers = header_cells(result.stdout)
    assert "val accuracy" in headers and "val macro-F1" in headers and "accuracy" not in headers


def test_bench_compare_headers_tell_two_runs_of_one_backbone_apart():
    from zoo.cli.bench_cmd import _headers

    results = [SimpleNamespace(backbone="tiny-bert", target="runs/a"), SimpleNamespace(backbone="tiny-bert",
                                                                                       target="runs/b"),
               SimpleNamespace(backbone="resnet18", target="resnet18")]
    assert _headers(results) == ["tiny-bert\nruns/a", "tiny-bert\nruns/b", "resnet18"]
    same = [SimpleNamespace(backbone="resnet18", target="resnet18")] * 2
    headers = _headers(same)
    assert len(set(headers)) == 2 and all(h.startswith("resnet18") for h in headers)


# --- what `zoo runs` shows is decided below the CLI -------------------------------------------------------------


def test_run_details_are_typed_by_the_api(tmp_path):
    from zoo import api

    store = tmp_path / "runs.sqlite"
    run_id = RunStore(store).record_run({**_record(tmp_path / "a"), "data": "not a dict", "metrics": None})
    detail = api.run_details(run_id, store=store)
    assert detail.sizes == {} and detail.num_labels is None and detail.best == {} and detail.epochs == []
    assert detail.to_dict()["data"] == "not a dict" and detail.to_dict()["pushes"] == []
    good = api.run_details(RunStore(store).record_run(_record(tmp_path / "b")), store=store)
    assert good.epochs == [{"epoch": 1, "val.accuracy": 0.9, "skipped_steps": 0}]
    assert good.main_metric == "accuracy" and good.sizes == {"train": 8, "val": 2} and good.num_labels == 2
    assert good.source == "timm/resnet18" and good.config == {"lr": 1e-3}
    shown = runner.invoke(app, ["runs", "show", str(run_id), "--store", str(store)])
    assert shown.exit_code == 0 and f"run {run_id}" in shown.stdout


def test_comparison_marks_a_best_run_only_when_there_is_a_choice(tmp_path):
    from zoo import api

    history = RunStore(tmp_path / "runs.sqlite")
    a = history.record_run(_record(tmp_path / "a", accuracy=0.8))
    b = history.record_run(_record(tmp_path / "b", accuracy=0.9))
    c = history.record_run(_record(tmp_path / "c", accuracy=0.9))
    comparison = api.compare_runs([a, b], store=history.path)
    assert comparison.highlighted("accuracy") == [b]
    tie = api.compare_runs([b, c], store=history.path)
    assert tie.best["accuracy"] == [b, c] and tie.highlighted("accuracy") == []
    assert tie.highlighted("no-such-metric") == [] and tie.highlighted("accuracy", test=True) == []


# --- shared formats ---------------------------------------------------------------------------------------------


def test_number_formats():
    assert fmt.metric(0.91234) == "0.9123" and fmt.metric(3e-4) == "3.00e-04" and fmt.metric(12345.6) == "12345.6"
    assert fmt.metric(None) == "—" and fmt.metric(3) == "3"
    assert fmt.setting(3e-4) == "0.0003" and fmt.setting([1, 2]) == "1, 2" and fmt.setting([]) == "[]"
    assert fmt.duration(12.34) == "12.3s" and fmt.duration(125) == "2m05s" and fmt.duration(3840) == "1h04m"
    assert fmt.duration(None) == "—" and fmt.when("2024-05-02T10:00:00+00:00") == "2024-05-02 10:00"
    assert fmt.megabytes(2_500_000) == "2.5 MB" and fmt.milliseconds(1.234) == "1.23 ms"
    assert re.fullmatch(r"~/x", fmt.home(str(Path.home() / "x")))
