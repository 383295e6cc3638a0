"""zoo tune: trials that are ordinary runs, pruning, a worker killed with SIGKILL and resumed, two workers on one
study, bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURE_REGISTRY
from typer.testing import CliRunner

from zoo import api
from zoo.cli import app
from zoo.errors import InvalidInputError
from zoo.runs.record import read_finished_record

ZOO = Path(sys.executable).with_name("zoo")


def _args(datasets, output: Path, *, trials: int, epochs: int) -> list[str]:
    return ["tune", "tiny-bert", "--data", str(datasets["text-cls"]), "--output", str(output), "--trials",
            str(trials), "--epochs", str(epochs), "--batch-size", "32", "--val-fraction", "0.25", "--registry",
            str(FIXTURE_REGISTRY)]


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _finished(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["state"] in ("complete", "pruned")]


def test_a_tune_makes_trials_that_are_ordinary_finished_runs(hub, datasets, tmp_path, monkeypatch):
    output = tmp_path / "tune"
    monkeypatch.setenv("ZOO_STORE", str(tmp_path / "runs.sqlite"))
    result = CliRunner().invoke(app, [*_args(datasets, output, trials=4, epochs=1), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = _strict(result.stdout)
    assert "trial 3 (4 of 4)" in result.stderr   # progress, a line per trial

    assert summary["counts"]["complete"] == 4 and len(summary["trials"]) == 4
    assert summary["strategy"] == "full" and "lr" in summary["space"] and "epochs_scale" not in summary["space"]
    for row in summary["trials"]:
        record = read_finished_record(row["run_dir"]).to_dict()
        assert record["tune"]["study"] == summary["study"] and record["tune"]["trial"] == row["number"]
        assert record["tune"]["params"] == row["params"] and record["config"]["lr"] == row["params"]["lr"]
        assert record["metrics"]["best"]["accuracy"] == row["value"]
        assert "--weight-decay" in record["command"]   # the recorded command repeats the trial
        assert "Trial" in (Path(row["run_dir"]) / "README.md").read_text()
    values = [row["value"] for row in summary["trials"]]
    assert summary["best"]["value"] == max(values) and Path(summary["best"]["run_dir"]).is_dir()
    # Tiny data may leave every trial at chance: then the note says the parameters cannot be ranked.
    assert set(summary["importances"] or summary["space"]) == set(summary["space"]) and summary["importance_note"]
    assert _strict((output / "zoo_tune.json").read_text())["study"] == summary["study"]
    # The best trial is an ordinary run; the history lists the study's trials.
    assert api.predict(summary["best"]["run_dir"], ["a wonderful film"])[0].labels
    assert len(api.list_runs(study=summary["study"]).runs) == 4

    # The same again: the study has its trials, nothing more runs.
    again = api.tune("tiny-bert", str(datasets["text-cls"]), output=output, trials=4, val_fraction=0.25,
                     fixed={"epochs": 1, "batch_size": 32}, registry_files=[str(FIXTURE_REGISTRY)], store=False)
    assert again.ran == [] and len(again.trials) == 4 and again.best.number == summary["best"]["number"]


def test_a_pruned_trial_stops_early_and_finishes_soundly(hub, datasets, tmp_path, monkeypatch):
    import optuna

    from zoo.better import tune as tuning

    # A pruner that stops every trial after its first epoch.
    monkeypatch.setattr(tuning, "_pruner", lambda name: optuna.pruners.ThresholdPruner(lower=2.0))
    options = {"val_fraction": 0.25, "registry_files": [str(FIXTURE_REGISTRY)], "store": False}
    result = api.tune("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "tune", trials=2, strategy="lora",
                      fixed={"epochs": 3, "batch_size": 32}, **options)

    assert [row.state for row in result.trials] == ["pruned", "pruned"]
    assert {"lora_r", "lora_alpha"} <= set(result.space) and "layer_decay" not in result.space
    assert all(row.pruned_at_epoch == 1 and row.epochs_run == 1 for row in result.trials)
    record = read_finished_record(result.best.run_dir).to_dict()
    assert record["metrics"]["stopped_by"].startswith("pruned") and len(record["metrics"]["epochs"]) == 1
    assert record["strategy"] == "lora" and record["config"]["lora_r"] == result.best.params["lora_r"]
    assert result.importances is None and "too few" in result.importance_note

    # A worker that died after its trial's run finished, before telling the study: the next worker tells it.
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{tmp_path / 'tune' / 'study.db'}")
    study.ask().set_user_attr("run_dir", "trial-orphan")
    shutil.copytree(tmp_path / "tune" / "trial-000", tmp_path / "tune" / "trial-orphan")
    told = api.tune("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "tune", trials=3, strategy="lora",
                    fixed={"epochs": 3, "batch_size": 32}, **options)
    assert told.recovered == [2] and told.ran == [] and told.counts["pruned"] == 3
    # Joining the study with other options is refused, before any trial runs.
    with pytest.raises(InvalidInputError, match="started with other options"):
        api.tune("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "tune", trials=2,
                 strategy="lora", fixed={"epochs": 2, "batch_size": 32}, **options)


def test_importances_rank_the_parameter_that_decides():
    import random

    import optuna
    from optuna.distributions import FloatDistribution

    from zoo.better.tune import param_importances

    study = optuna.create_study(direction="maximize")
    space = {"lr": FloatDistribution(1e-5, 1e-2, log=True), "weight_decay": FloatDistribution(0.0, 0.1)}
    draw = random.Random(0)
    for _ in range(20):   # the score depends on the learning rate alone
        params = {"lr": 10 ** draw.uniform(-5, -2), "weight_decay": draw.uniform(0, 0.1)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space,
                                                  value=1 - abs(math.log10(params["lr"]) + 3.5) / 2))
    importances, note = param_importances(study, "accuracy")
    assert max(importances, key=importances.get) == "lr" and "PED-ANOVA over 20" in note


def test_a_killed_worker_is_resumed_by_the_same_command(hub, datasets, tmp_path):
    output = tmp_path / "tune"
    args = [*_args(datasets, output, trials=2, epochs=3), "--no-store", "--json"]
    process = subprocess.Popen([str(ZOO), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    state = output / "trial-000" / ".zoo" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and json.loads(state.read_text())["progress"]["epoch"] >= 1:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the tune ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    result = CliRunner().invoke(app, args)   # the same command again
    assert result.exit_code == 0, result.stderr
    summary = _strict(result.stdout)
    rows = summary["trials"]
    assert len(_finished(rows)) == 2 and summary["counts"]["interrupted"] == 1
    assert summary["recovered"] == [0]
    (resumed,) = [row for row in rows if row["resumes_trial"] == 0]
    assert resumed["state"] == "complete" and Path(resumed["run_dir"]).name == "trial-000"
    record = read_finished_record(resumed["run_dir"]).to_dict()
    assert record["resumed"] == 1 and record["tune"]["trial"] == resumed["number"]
    assert len(record["metrics"]["epochs"]) == 3
    # No trial ran twice: one folder and one parameter set each.
    assert len({row["run_dir"] for row in _finished(rows)}) == 2
    assert len({json.dumps(row["params"], sort_keys=True) for row in _finished(rows)}) == 2


def test_two_workers_share_one_study(hub, datasets, tmp_path):
    import optuna

    output = tmp_path / "tune"
    args = [*_args(datasets, output, trials=3, epochs=1), "--no-store", "--json"]
    workers = [subprocess.Popen([str(ZOO), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err for _, err in outputs]
    summaries = [_strict(out) for out, _ in outputs]

    ran = [set(summary["ran"]) for summary in summaries]
    assert not ran[0] & ran[1] and ran[0] | ran[1] == {0, 1, 2}
    study = optuna.load_study(study_name=summaries[0]["study"], storage=f"sqlite:///{output / 'study.db'}")
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["run_dir"] for t in trials}) == 3
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    for trial in trials:
        assert read_finished_record(output / trial.user_attrs["run_dir"]).to_dict()["tune"]["trial"] == trial.number


@pytest.mark.parametrize("options,message", [
    (["--strategy", "linear"], "--strategy linear has nothing to tune"),
    (["--trials", "0"], "--trials must be"),
    (["--study", "nosuch://host/db"], "--study nosuch://"),
    (["--pruner", "hyperband"], "--pruner must be"),
])
def test_bad_input_is_one_line_and_leaves_nothing(options, message, hub, datasets, tmp_path):
    output = tmp_path / "tune"
    result = CliRunner().invoke(app, [*_args(datasets, output, trials=2, epochs=1), *options])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not output.exists()
