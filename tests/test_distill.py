"""zoo distill: a teacher run distilled into a smaller student on adapt's engine, the teacher's logits computed once
(and read back on resume), the gap closed and the speed-up recorded and on the card; refusals; the loss itself."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURE_REGISTRY, run_zoo, val_inputs

from zoo import api
from zoo.engine.config import AdaptConfig, distill_strategy
from zoo.engine.teacher import teacher_path
from zoo.errors import InvalidInputError

REGISTRY = [str(FIXTURE_REGISTRY)]
TEACHER, STUDENT = "test_resnet.r160_in1k", "test_vit.r160_in1k"


def student_config(**overrides) -> AdaptConfig:
    # small inputs: the student is the faster model, as a distilled one should be
    values = {"strategy": "full", "epochs": 2, "batch_size": 8, "lr": 1e-3, "patience": 0, "image_size": 64,
              "explain_card": 0}
    return AdaptConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def teacher(hub, datasets, tmp_path_factory):
    """A finished teacher that has learned the image data (full fine-tuning, as test_adapt shows it learns)."""
    run = tmp_path_factory.mktemp("distill") / "teacher"
    api.adapt(TEACHER, str(datasets["image-cls"]), output=run, val_fraction=0.25, registry_files=REGISTRY,
              config=AdaptConfig(strategy="full", epochs=4, batch_size=8, lr=1e-3, patience=0, explain_card=0),
              store=False)
    return run


def test_an_interrupted_distillation_resumes_on_its_cached_teacher_logits_and_reports_gap_and_speed_up(
        teacher, hub, datasets, tmp_path, monkeypatch):
    import zoo.better.distill
    import zoo.engine.setup
    import zoo.engine.teacher

    def killed(*args, **kwargs):
        raise RuntimeError("killed before saving")

    finalize_model = zoo.engine.setup.finalize_model
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", killed)
    run = tmp_path / "student"
    with pytest.raises(RuntimeError, match="killed before saving"):
        api.distill(teacher, STUDENT, str(datasets["image-cls"]), output=run, config=student_config(),
                    val_fraction=0.25, registry_files=REGISTRY, store=False, bench_min_seconds=0.05)
    left = json.loads((run / "zoo_run.json").read_text())
    assert left["status"] == "failed" and left["request"]["teacher"] == str(teacher.resolve())
    assert left["distill"]["teacher_logits"] == {"examples": {"train": 36, "val": 12}, "seconds": pytest.approx(
        left["distill"]["teacher_logits"]["seconds"]), "read_back": False}
    assert teacher_path(run).is_file(), "the teacher's logits wait in the run's state folder"

    # Resumed: the teacher is not run again, the student finishes, and the comparison is made.
    monkeypatch.setattr(zoo.engine.setup, "finalize_model", finalize_model)
    loads = []
    real_load = zoo.engine.teacher.load_saved
    monkeypatch.setattr(zoo.engine.teacher, "load_saved", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(zoo.better.distill, "BENCH_MIN_SECONDS", 0.05)
    record = api.resume(run, store=False)
    assert loads == [] and record["distill"]["teacher_logits"]["read_back"] is True
    assert record["status"] == "finished" and record["resumed"] == 1 and record["strategy"] == "full"
    assert not teacher_path(run).exists(), "the cached logits go when the run finishes"
    assert record["command"][:4] == ["zoo", "distill", "--teacher", str(teacher.resolve())]
    at = record["command"].index("--temperature")
    assert record["command"][at:at + 4] == ["--temperature", "5.0", "--alpha", "0.9"]

    section = record["distill"]
    assert section["temperature"] == 5.0 and section["alpha"] == 0.9
    assert section["teacher"]["backbone"] == TEACHER and section["teacher"]["metrics"]["val"]["accuracy"] >= 0.5
    alone = section["student_alone"]
    assert alone["run"] == str((tmp_path / "student-alone").resolve()) and alone["trained"] is True
    alone_record = json.loads((tmp_path / "student-alone" / "zoo_run.json").read_text())
    assert alone_record["status"] == "finished" and alone_record["strategy"] == "full"
    assert "distill" not in alone_record and alone_record["config"]["distill_alpha"] is None
    gap = section["gap_closed"]
    assert gap["metric"] == "accuracy"
    assert gap["val"] is not None or "no gap to close" in " ".join(gap["notes"])
    speed = section["speed_up"]
    assert speed["latency"] > 0 and speed["throughput"] > 0 and speed["student"]["throughput_batch"] == 32
    assert speed["student"]["gflops"] < speed["teacher"]["gflops"]
    assert record["bench"][-1]["backbone"] == STUDENT

    card = (run / "README.md").read_text()
    assert "## Distillation" in card and "`teacher`" in card and "gap closed" in card and "speed-up" in card
    predictions = api.predict(run, val_inputs(run, 2))
    assert [entry["label"] for entry in predictions[0].labels] and len(predictions) == 2

    # The CLI, comparing with that student alone instead of training another.
    again = run_zoo("distill", "--teacher", str(teacher), "--student", STUDENT, "--data",
                    str(datasets["image-cls"]), "--output", str(tmp_path / "again"), "--val-fraction", "0.25",
                    "--baseline", str(tmp_path / "student-alone"), "--strategy", "full", "--epochs", "1",
                    "--batch-size", "8", "--lr", "1e-3", "--image-size", "64", "--explain-card", "0",
                    "--alpha", "0.5", "--registry", str(FIXTURE_REGISTRY), "--no-store", "--json", check=True)
    cli = json.loads(again.stdout)
    assert cli["status"] == "finished" and cli["distill"]["alpha"] == 0.5
    assert cli["distill"]["student_alone"]["trained"] is False and not (tmp_path / "again-alone").exists()
    assert cli["distill"]["speed_up"]["latency"] > 0


def _edited_copy(run, folder, **changes):
    shutil.copytree(run, folder)
    record = json.loads((folder / "zoo_run.json").read_text())
    record.update(changes)
    (folder / "zoo_run.json").write_text(json.dumps(record))
    return folder


def test_refusals_are_one_line_and_leave_nothing(teacher, hub, datasets, tmp_path):
    labels = json.loads((teacher / "zoo_run.json").read_text())["labels"]
    cases = {
        "another order": dict(teacher=_edited_copy(teacher, tmp_path / "reordered", labels=labels[::-1])),
        "has not finished": dict(teacher=_edited_copy(teacher, tmp_path / "running", status="running")),
        "takes no soft targets": dict(config=student_config(strategy="linear")),
        "--alpha must be": dict(alpha=1.5),
        "--temperature must be": dict(temperature=0),
        f"a run of {TEACHER}, not of the student": dict(baseline=str(teacher)),
    }
    for expected, options in cases.items():
        options = {"teacher": teacher, "config": student_config(), **options}
        out = tmp_path / "out"
        with pytest.raises(InvalidInputError, match=expected) as caught:
            api.distill(options.pop("teacher"), STUDENT, str(datasets["image-cls"]), output=out, val_fraction=0.25,
                        registry_files=REGISTRY, store=False, **options)
        assert "\n" not in str(caught.value)
        assert not out.exists() and not (tmp_path / "out-alone").exists(), expected
    cli = run_zoo("distill", "--teacher", str(teacher), "--student", STUDENT, "--data", str(datasets["image-cls"]),
                  "--alpha", "2", "--registry", str(FIXTURE_REGISTRY), "--no-store")
    assert cli.returncode == 2 and "--alpha" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1


# --- the loss ------------------------------------------------------------------------------------------------------


def _loss(alpha: float, temperature: float = 4.0, multi_label: bool = False):
    import torch

    from zoo.engine.trainer import distillation_loss

    hard = torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    return hard, distillation_loss(hard, temperature=temperature, alpha=alpha, multi_label=multi_label)


def _batch(multi_label: bool = False):
    import torch

    from zoo.engine.batches import SoftTargets

    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 3, generator=generator), 3 * torch.randn(6, 3, generator=generator)
    labels = (torch.rand(6, 3, generator=generator) > 0.5).float() if multi_label else torch.tensor([0, 1, 2, 0, 1, 2])
    return student, SoftTargets(labels, teacher)


@pytest.mark.parametrize("multi_label", [False, True])
def test_distillation_loss_is_the_hard_loss_at_alpha_0_and_scales_the_soft_term_by_t_squared(multi_label):
    import torch
    import torch.nn.functional as F

    student, target = _batch(multi_label)
    hard, loss = _loss(0.0, multi_label=multi_label)
    assert torch.equal(loss(student, target), hard(student, target.labels))

    for temperature in (1.0, 4.0):
        _, soft_only = _loss(1.0, temperature, multi_label)
        t = temperature
        if multi_label:
            expected = F.binary_cross_entropy_with_logits(student / t, (target.teacher_logits / t).sigmoid())
        else:
            p = (target.teacher_logits / t).softmax(-1)
            expected = (p * (p.log() - (student / t).log_softmax(-1))).sum(-1).mean()
        assert float(soft_only(student, target)) == pytest.approx(t * t * float(expected), rel=1e-5)
    _, mixed = _loss(0.25, 4.0, multi_label)
    _, soft_only = _loss(1.0, 4.0, multi_label)
    assert float(mixed(student, target)) == pytest.approx(
        0.25 * float(soft_only(student, target)) + 0.75 * float(hard(student, target.labels)), rel=1e-5)
    # a batch split for memory slices the teacher's logits with the labels
    assert torch.equal(target[1:3].teacher_logits, target.teacher_logits[1:3])


def test_gap_closed_is_the_share_of_the_teachers_lead_won_back():
    from zoo.better.distill import gap_closed

    section = {"teacher": {"metrics": {"val": {"accuracy": 0.9}, "test": {"accuracy": 0.8}}},
               "student_alone": {"metrics": {"val": {"accuracy": 0.7}, "test": {"accuracy": 0.85}}}}
    record = {"metrics": {"best": {"accuracy": 0.78}, "test": {"accuracy": 0.86}}}
    gap = gap_closed(section, record, "accuracy")
    assert gap["val"] == pytest.approx(0.4) and gap["test"] is None
    assert "no gap to close" in gap["notes"][0]
    assert gap_closed({**section, "student_alone": None}, record, "accuracy")["val"] is None


def test_auto_distils_with_the_fine_tuning_auto_would_use():
    assert distill_strategy(200, 5.0, "cpu")[0] == "full"
    assert distill_strategy(200, 80.0, "cuda")[0] == "lora"
    assert distill_strategy(200, 80.0, "cpu")[0] == "lora"   # auto would only probe: LoRA, not linear
