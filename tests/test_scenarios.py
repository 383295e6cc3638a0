"""Everyday scenarios, as people write them: each parses to the right task, language, device and job, and gets at
least one candidate with its reason; a named job (keyword spotting, speaker identification...) puts the backbones
with published evidence for it first. Adding a scenario is one line in SCENARIOS."""

from __future__ import annotations

import json

import pytest
from conftest import run_zoo

from zoo import api
from zoo.recommend import parse_scenario
from zoo.tasks import FOCUS_WEIGHT, get_task

# (free text, what the parse must find); "focus" is the narrower job within the task, when the text names one.
SCENARIOS = [
    ("English support tickets, 50 ms on a laptop CPU", {"task": "text-cls", "language": "en", "device": "cpu"}),
    ("German support tickets, 50 ms on a laptop CPU", {"task": "text-cls", "language": "de", "device": "cpu"}),
    ("Chinese product reviews, 50 ms on a laptop CPU", {"task": "text-cls", "language": "zh", "device": "cpu"}),
    ("tag English news articles with several topics each (multi-label), 100 ms on a CPU",
     {"task": "text-cls", "language": "en", "device": "cpu"}),
    ("sort product photos on a mobile phone, 20 ms", {"task": "image-cls", "device": "cpu"}),
    ("keyword spotting on a phone, one-second clips, 100 ms",
     {"task": "audio-cls", "device": "cpu", "focus": "keyword spotting"}),
    ("wake-word detection on a phone, 100 ms", {"task": "audio-cls", "device": "cpu", "focus": "keyword spotting"}),
    ("identify the speaker of voice recordings on a GPU server",
     {"task": "audio-cls", "device": "cuda", "focus": "speaker identification"}),
    ("recognise the emotion in recorded customer calls on a laptop",
     {"task": "audio-cls", "device": "cpu", "focus": "emotion recognition"}),
    ("spoken language identification of call-centre audio on a GPU",
     {"task": "audio-cls", "device": "cuda", "focus": "language identification"}),
    ("detect environmental sounds (sirens, barking, breaking glass) in audio clips on a GPU",
     {"task": "audio-cls", "device": "cuda", "focus": "sound events"}),
]


@pytest.mark.parametrize("text,expected", SCENARIOS, ids=[text for text, _ in SCENARIOS])
def test_everyday_scenario_parses_and_gets_a_candidate(text, expected):
    rec = api.recommend(scenario=text, top=3)
    assert {key: rec.scenario.values.get(key) for key in expected} == expected
    assert rec.candidates, rec.message
    for candidate in rec.candidates:
        assert candidate.reason.strip()
        if rec.constraints.max_latency_ms:
            assert candidate.latency_ms <= rec.constraints.max_latency_ms
        if rec.constraints.language not in (None, "multilingual"):
            assert {rec.constraints.language, "multilingual"} & set(candidate.languages) or not candidate.languages
    focus = get_task(rec.task).focus(expected.get("focus"))
    if focus is not None:    # the first candidate is one whose published numbers speak to the job
        assert f"ranked ahead for {focus.name}" in rec.candidates[0].reason


def test_german_tickets_on_a_laptop_cli():
    scenario = "German support tickets, 50 ms on a laptop CPU"
    data = json.loads(run_zoo("recommend", "--scenario", scenario, "--json", check=True).stdout)
    assert data["scenario"]["values"] == {"task": "text-cls", "max_latency_ms": 50.0, "device": "cpu",
                                          "language": "de"}
    assert data["candidates"] and all(c["latency_ms"] <= 50 and c["reason"] for c in data["candidates"])
    assert all("multilingual" in c["languages"] or "de" in c["languages"] for c in data["candidates"])
    table = run_zoo("recommend", "--scenario", scenario, check=True).stdout
    assert data["candidates"][0]["name"][:20] in table and "No text-cls backbone" not in table


def test_a_named_job_ranks_the_backbones_with_evidence_for_it_first():
    rec = api.recommend(scenario="classify environmental sounds in audio clips", top=50)
    focus = get_task("audio-cls").focus("sound events")
    ahead = [any(m in {e["metric"] for e in c.evidence} or f"reports {m}" in c.reason for m in focus.metrics)
             for c in rec.candidates]
    assert ahead[0] and ahead == sorted(ahead, reverse=True) and not all(ahead)
    assert all("no published sound events number" in c.reason
               for c, first in zip(rec.candidates, ahead, strict=True) if not first)
    # Among encoders that all report the job's benchmark, that benchmark leads: the best at speaker ID comes first
    # and its reason quotes superb/sid, not the keyword-spotting number the task ranks by otherwise.
    sid = api.recommend(scenario="identify the speaker in recordings on a GPU", top=50)
    assert sid.candidates[0].evidence[0]["metric"] == "superb/sid" and sid.candidates[0].evidence[0]["rank"] == 1
    assert sid.candidates[0].reason.startswith("superb/sid ")


def test_focus_weights_and_parse_order():
    audio = get_task("audio-cls")
    weights = audio.prior_weights(focus=audio.focus("keyword spotting"))
    assert list(weights)[:2] == ["superb/ks", "speechcommands-v2/accuracy"]
    assert weights["superb/ks"] == FOCUS_WEIGHT and weights["superb/sid"] == audio.prior_metrics["superb/sid"]
    assert audio.prior_weights() == dict(audio.prior_metrics)
    # The most specific job wins where words of two appear; a task's focus only counts for that task.
    assert parse_scenario("the emotion of each speaker in call recordings").values["focus"] == "emotion recognition"
    assert "focus" not in parse_scenario("sentiment of support tickets").values
    assert not api.recommend("text-cls", scenario="spot keywords in customer e-mails").candidates[0].reason.count(
        "ranked ahead")


def test_a_language_brings_its_own_benchmarks_and_foreign_models_wait_without_one():
    chinese = api.recommend("text-cls", language="zh", top=50)
    electra = next(c for c in chinese.candidates if c.name == "chinese-electra-180g-small-discriminator")
    assert [e["metric"] for e in electra.evidence] == ["xnli-zh/accuracy"]
    unstated = api.recommend("text-cls", top=50)
    electra = next(c for c in unstated.candidates if c.name == "chinese-electra-180g-small-discriminator")
    assert not electra.evidence and "no language was given" in electra.reason
    assert all("zh" not in c.languages for c in unstated.candidates[:5])
