"""The data-free recommender: constraints hold, every candidate is explained, scenarios parse visibly."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from conftest import run_zoo
from typer.testing import CliRunner

from zoo import api
from zoo.cli import app
from zoo.errors import InvalidInputError, NoCandidateError
from zoo.recommend import Constraints, estimate_cost, parse_scenario
from zoo.recommend.prior import rank_candidates
from zoo.registry import CORE_REGISTRY, read_registry_file
from zoo.tasks import TASKS

CORE = {s.name: s for s in read_registry_file(CORE_REGISTRY)}
runner = CliRunner()

SCENARIOS = {
    "image-cls": "sort product photos from a phone camera, 5k labelled images, under 30 ms on a laptop CPU",
    "text-cls": "classify support tickets in English, 2k labelled examples, must answer in 20 ms on a laptop CPU",
    "audio-cls": "spot spoken keywords in 1 second clips recorded on a GPU server, 20k examples, 50 ms",
}


def assert_meets(candidate: dict, constraints: dict) -> None:
    spec = api.load_registry().get(candidate["name"])
    cost = estimate_cost(spec, constraints["device"])
    if constraints["max_latency_ms"] is not None:
        assert cost.latency_ms <= constraints["max_latency_ms"]
        assert candidate["latency_ms"] <= constraints["max_latency_ms"]
    if constraints["max_params_m"] is not None:
        assert spec.params_m <= constraints["max_params_m"]
    if constraints["max_memory_gb"] is not None:
        assert cost.memory_gb <= constraints["max_memory_gb"]
    if constraints["licenses"]:
        assert spec.license in constraints["licenses"]
    if constraints["language"] and constraints["language"] != "multilingual":
        assert not spec.languages or constraints["language"] in spec.languages or "multilingual" in spec.languages
    assert constraints["task"] in spec.tasks
    assert candidate["reason"] and candidate["next_command"].startswith(f"zoo adapt {spec.name} ")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_cli_json_candidates_meet_constraints(task):
    latency = {"image-cls": 30, "text-cls": 150, "audio-cls": 100}[task]
    result = run_zoo("recommend", "--task", task, "--device", "cpu", "--max-latency-ms", str(latency), "--json",
                     check=True)
    data = json.loads(result.stdout)
    assert data["task"] == task and data["candidates"]
    for candidate in data["candidates"]:
        assert_meets(candidate, data["constraints"])
    ranks = [c["rank"] for c in data["candidates"]]
    assert ranks == list(range(1, len(ranks) + 1))
    scores = [c["score"] for c in data["candidates"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_cli_json_with_scenario(task):
    result = run_zoo("recommend", "--scenario", SCENARIOS[task], "--json", check=True)
    data = json.loads(result.stdout)
    assert data["task"] == task
    assert data["scenario"]["values"]["task"] == task and data["scenario"]["evidence"]["task"]
    for candidate in data["candidates"]:
        assert_meets(candidate, data["constraints"])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_registry_constraint_combination_is_respected(task):
    for device in ("cpu", "cuda"):
        for params in (None, 30.0, 120.0):
            rec = api.recommend(task, device=device, max_params_m=params, max_memory_gb=1.0, top=50)
            for candidate in rec.candidates:
                assert_meets(candidate.to_dict(), rec.constraints.to_dict())


def test_scenario_parse_is_shown_and_explicit_options_win():
    rec = api.recommend(scenario=SCENARIOS["text-cls"], max_latency_ms=500, top=3)
    assert rec.scenario.values == {"task": "text-cls", "max_latency_ms": 20.0, "device": "cpu",
                                   "num_examples": 2000, "language": "en"}
    assert rec.constraints.max_latency_ms == 500
    top = rec.candidates[0]
    from zoo.recommend.prior import choose_strategy

    assert rec.constraints.num_examples == 2000
    assert rec.strategy == choose_strategy(2000, top.params_m, "cpu")[0]
    table = run_zoo("recommend", "--scenario", SCENARIOS["text-cls"], check=True).stdout
    assert "Scenario parsed as" in table and "support tickets" not in table.split("Scenario parsed as")[0]


@pytest.mark.parametrize("text,expected", [
    ("German customer emails, commercial use, at most 2 GB of RAM",
     {"task": "text-cls", "language": "de", "licenses": ("permissive",), "max_memory_gb": 2.0}),
    ("classify bird sounds, 800 recordings, on an H100", {"task": "audio-cls", "focus": "sound events",
                                                          "num_examples": 800, "device": "cuda"}),
    ("x-ray images, 12k examples, under 50M parameters", {"task": "image-cls", "num_examples": 12000,
                                                          "max_params_m": 50.0}),
    ("reviews; latency under 0.2 seconds", {"task": "text-cls", "max_latency_ms": 200.0}),
])
def test_parse_scenario(text, expected):
    assert parse_scenario(text).values == expected


def test_impossible_constraints_give_the_nearest_misses():
    rec = api.recommend("image-cls", max_latency_ms=0.5)
    assert rec.candidates == [] and "Relax a constraint" in rec.message
    assert rec.nearest and rec.nearest[0]["name"] in rec.message
    distances = [miss["distance"] for miss in rec.nearest]
    assert distances == sorted(distances)
    result = run_zoo("recommend", "--task", "image-cls", "--max-latency-ms", "0.5", "--json", check=True)
    data = json.loads(result.stdout)
    assert data["candidates"] == [] and data["nearest"] and data["message"]
    table = run_zoo("recommend", "--task", "image-cls", "--max-latency-ms", "0.5", check=True).stdout
    assert "Nearest misses" in table


def test_task_without_backbones_is_an_error(tmp_path, monkeypatch):
    from zoo.recommend import recommend_data_free

    with pytest.raises(NoCandidateError, match="no audio-cls backbones"):
        recommend_data_free([s for s in CORE.values() if "audio-cls" not in s.tasks],
                            Constraints(task="audio-cls"))


def test_missing_task_and_bad_values_are_one_line_errors():
    with pytest.raises(InvalidInputError, match="no task given"):
        api.recommend()
    for args in (["--task", "video-cls"], ["--task", "image-cls", "--device", "tpu"],
                 ["--task", "image-cls", "--max-params", "lots"], ["--task", "image-cls", "--top", "0"]):
        result = run_zoo("recommend", *args)
        assert result.returncode != 0, args
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "did you mean 'image-cls'" in run_zoo("recommend", "--task", "imge-cls").stderr.lower()


def test_language_and_license_filters():
    rec = api.recommend("text-cls", language="de", licenses=["mit"], top=50)
    for candidate in rec.candidates:
        assert candidate.license == "mit"
        assert "multilingual" in candidate.languages or "de" in candidate.languages
    english = api.recommend("text-cls", language="en", top=50)
    assert any("en" in c.languages for c in english.candidates)


def test_strategy_follows_data_size_like_adapt_auto():
    assert api.recommend("image-cls", num_examples=300).strategy == "auto"    # adapt tries linear and full
    assert api.recommend("image-cls", num_examples=100_000, device="cuda").strategy == "full"
    assert api.recommend("image-cls", num_examples=50_000, device="cuda", max_params_m=25).strategy == "full"
    big = api.recommend("text-cls", num_examples=5000, device="cuda", top=1)
    assert big.candidates[0].params_m > 30 and big.strategy == "auto" and "LoRA" in big.strategy_reason
    on_cpu = api.recommend("text-cls", num_examples=5000, device="cpu", top=1, max_latency_ms=10_000)
    if on_cpu.candidates[0].params_m > 30:     # fine-tuning a large backbone on a CPU is out of reach: probed
        assert on_cpu.strategy == "linear"
    assert "--strategy auto" in api.recommend("image-cls", num_examples=300).candidates[0].next_command


def test_cost_model_is_monotonic_in_flops():
    specs = sorted(CORE.values(), key=lambda s: s.gflops)
    latencies = [estimate_cost(s, "cpu").latency_ms for s in specs]
    assert latencies == sorted(latencies)
    assert Constraints(device="cpu", licenses=("permissive",)).licenses


# --- ties, and the next command as printed ----------------------------------------------------------------------


def write_registry(path: Path, entries: dict[str, tuple[str, float]]) -> Path:
    """A registry file of tiny text backbones with no published numbers: name -> (source, GFLOPs)."""
    path.write_text("\n".join(f'''[[backbone]]
name = "{name}"
family = "transformers"
source = "{source}"
tasks = ["text-cls"]
params_m = 0.07
gflops = {gflops}
input = {{ max_tokens = 64, seq_len = 16 }}
license = "apache-2.0"
languages = ["en"]
pretrain = "random weights (test fixture)"
''' for name, (source, gflops) in entries.items()))
    return path


def test_equal_scores_share_a_rank_and_say_so(tmp_path, monkeypatch):
    # Without published numbers the score is the speed alone; the two -same backbones cost the same. The core
    # backbones are all over 1M parameters.
    registry = write_registry(tmp_path / "ties.toml", {name: (f"zoo-test/{name}", gflops) for name, gflops in
                                                       [("d-slow", 0.004), ("c-same", 0.002), ("b-same", 0.002),
                                                        ("a-fast", 0.001)]})
    rec = api.recommend("text-cls", max_params_m=1, registry_files=[registry])
    assert [(c.rank, c.name, c.tied_with) for c in rec.candidates] == [
        (1, "a-fast", []), (2, "b-same", ["c-same"]), (2, "c-same", ["b-same"]), (4, "d-slow", [])]
    assert rec.candidates[1].score == rec.candidates[2].score
    assert rec.candidates[1].reason.startswith("tied for #2 with c-same; ")
    assert rec.candidates[2].reason.startswith("tied for #2 with b-same; ")
    assert not any("tied" in c.reason for c in (rec.candidates[0], rec.candidates[3]))

    # a narrower set (--candidates) is ranked among itself, the old tie note replaced
    again = rank_candidates(rec.candidates[1:])
    assert [(c.rank, c.name) for c in again] == [(1, "b-same"), (1, "c-same"), (3, "d-slow")]
    assert again[0].reason == rec.candidates[1].reason.replace("#2", "#1")
    assert rank_candidates(again[2:])[0].tied_with == [] and "tied" not in again[2].reason

    args = ["recommend", "--task", "text-cls", "--max-params", "1", "--registry", str(registry)]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert [(c["rank"], c["tied_with"]) for c in data["candidates"]] == [
        (1, []), (2, ["c-same"]), (2, ["b-same"]), (4, [])]
    table = runner.invoke(app, args, env={"COLUMNS": "200"}).stdout
    assert re.search(r"│ +=2 │ b-same ", table) and re.search(r"│ +=2 │ c-same ", table)
    assert re.search(r"│ +1 │ a-fast ", table) and re.search(r"│ +4 │ d-slow ", table)

    # with --data, the data-free column shows the tie too
    from zoo.recommend.transfer import DataRecommendation, ScoredCandidate

    def with_data(task, **options):
        scored = [ScoredCandidate(c.name, c.family, c.rank, c.score, status="scored", rank=i, combined=-i,
                                  interval=(-i, -i), scores={"logme": -i}, reason="a reason")
                  for i, c in enumerate(rec.candidates, start=1)]
        return DataRecommendation(
            task=task, data="x.csv", sample={"size": 40, "of": 40, "class_counts": {"a": 20, "b": 20}},
            layers="mean", prior_weight=0.8, estimators=["logme"], candidates=scored, agreement={}, strategy="full",
            strategy_reason="why", next_command="zoo adapt ...", budget_s=60, elapsed_s=1, data_free=rec)

    monkeypatch.setattr(api, "recommend_with_data", with_data)
    table = runner.invoke(app, [*args, "--data", "x.csv"], env={"COLUMNS": "200"}).stdout
    assert re.search(r"│ +3 │ c-same +│ +=2 │", table) and re.search(r"│ +4 │ d-slow +│ +4 │", table)


def test_the_printed_next_command_runs_as_printed(tmp_path, monkeypatch):
    import data_factory
    from tiny_models import build_distilbert, seeded

    with seeded("tiny-distilbert"):
        build_distilbert(tmp_path / "tiny-distilbert")
    # a name with a space: the command quotes it
    registry = write_registry(tmp_path / "my backbones.toml",
                              {"tiny-distilbert": (f"local-dir:{tmp_path / 'tiny-distilbert'}", 0.002)})
    shown = runner.invoke(app, ["recommend", "--task", "text-cls", "--max-params", "0.1", "--registry", str(registry)],
                          env={"COLUMNS": "80"})   # a narrow terminal folds no command
    assert shown.exit_code == 0, shown.output
    words = shlex.split(next(line for line in shown.stdout.splitlines() if line.startswith("Next: "))[6:])
    assert words[:3] == ["zoo", "adapt", "tiny-distilbert"]
    assert words[words.index("--registry") + 1] == str(registry)
    assert json.loads(runner.invoke(app, ["recommend", "--task", "text-cls", "--max-params", "0.1", "--registry",
                                          str(registry), "--json"]).stdout)["registry_files"] == [str(registry)]

    # run it as printed, on a small CSV where it says DATA, one epoch for a short test (its run directory lands in
    # the working directory)
    words[words.index("DATA")] = str(data_factory.make_text_csv(tmp_path / "reviews.csv", per_class=12))
    monkeypatch.chdir(tmp_path)
    ran = runner.invoke(app, [*words[1:], "--epochs", "1"])
    assert ran.exit_code == 0, ran.output
    record = json.loads(next((tmp_path / "runs").glob("*/zoo_run.json")).read_text())
    assert record["status"] == "finished" and record["backbone"]["name"] == "tiny-distilbert"
