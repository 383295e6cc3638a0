"""zoo explain: attributions per modality, the completeness check, the files drawn, the CLI's output and errors."""

from __future__ import annotations

import json

import pytest
from conftest import run_zoo, val_inputs
from typer.testing import CliRunner

from zoo.cli import app as cli_app


@pytest.mark.parametrize("task", ["text-cls", "image-cls", "audio-cls"])
def test_explain_cli_draws_each_modality(serve_runs, task, tmp_path):
    run = serve_runs(task)
    inputs = val_inputs(run, 2)
    result = run_zoo("explain", str(run), *inputs, "-o", str(tmp_path), "--json", check=True)
    explanations = json.loads(result.stdout)
    assert [e["input"] for e in explanations] == inputs
    for explanation in explanations:
        assert explanation["units"] and explanation["steps"] in (4, 8, 16, 32, 64)
        assert explanation["completeness_error"] is not None
        total = sum(u["attribution"] for u in explanation["units"])
        change = explanation["logit"] - explanation["baseline_logit"]
        if explanation["completeness_error"] <= 0.05:   # the units account for the whole change
            assert total == pytest.approx(change, rel=0.06, abs=1e-3)
        else:   # the steps did not suffice, and the explanation says so
            assert explanation["steps"] == 64 and "completeness error" in explanation["warnings"][0]
        (path,) = explanation["files"]
        assert path.endswith(".html" if task == "text-cls" else ".png")
        assert (tmp_path / path.split("/")[-1]).stat().st_size > 0


def test_predict_explain_says_why_the_top_label(serve_runs):
    run = serve_runs("text-cls")
    inputs = val_inputs(run, 2)
    # In-process: a second start of the CLI would cost more than the explanations.
    result = CliRunner().invoke(cli_app, ["predict", str(run), *inputs, "--explain", "--json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert [p["input"] for p in predictions] == inputs
    for prediction, text in zip(predictions, inputs, strict=True):
        assert prediction["explanation"]["label"] == prediction["labels"][0]["label"]
        assert prediction["explanation"]["method"] == "ig" and prediction["explanation"]["seconds"] > 0
        because = prediction["because"]
        assert 0 < len(because) <= 3 and all(entry["name"] in text for entry in because)
        weights = [entry["attribution"] for entry in because]
        assert weights == sorted(weights, reverse=True) and weights[-1] > 0
    table = CliRunner().invoke(cli_app, ["predict", str(run), inputs[0], "--explain", "--explain-method",
                                         "occlusion"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "because (#1)" in table.output and "occlusion attributions to the top label" in table.output
    refused = CliRunner().invoke(cli_app, ["predict", str(run), inputs[0], "--explain-method", "shap"])
    assert refused.exit_code != 0 and "--explain-method is for --explain" in refused.output
