"""zoo explain: attributions per modality, the completeness check, the files drawn, the CLI's output and errors."""

from __future__ import annotations

import json

import pytest
from conftest import run_zoo, val_inputs


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
