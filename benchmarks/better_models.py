"""Better models from the same data: does each of `zoo tune`, `zoo soup`, `zoo ensemble` and `zoo distill` help?

Real pretrained weights cannot be downloaded everywhere this must run, so the script builds the text task of
`benchmarks/quality.py` (a 2-layer, 128-wide BERT pretrained by the script on 20 synthetic topics; a target of 10
classes, each the union of two topics, from a small training set), with a larger validation split so that choices
made on it are not noise, and a smaller encoder of the same kind (1 layer, 64 wide, pretrained the same way) as the
distillation student. Every step goes through `zoo.api`, as a person would through the commands:

1. **defaults**: `zoo adapt --strategy full` with its defaults (the baseline tune must beat);
2. **tune**: `zoo tune --strategy full --trials 16` (TPE, median pruning); the best trial against the defaults;
3. **soup**: the tuned recipe trained with two more seeds; `zoo soup` (greedy, and uniform) of the three against
   the best of them; `zoo adapt --soup-top-k 3` (a soup of one run's best epochs) against the same run without;
4. **ensemble**: `zoo ensemble` (Caruana) of the three seeds, the linear probe and a LoRA run against its best
   member;
5. **distill**: `zoo distill` from that ensemble into the small encoder (the defaults, T 5 and alpha 0.9, and T 2
   with alpha 0.5), against the small encoder alone with its own tuned recipe (`zoo tune` of it, the best trial),
   which the distilled students train with too: the gap closed, and the speed-up that `zoo bench` measures (batch-1
   latency).

Figures are macro-F1 (what the targets are stated in; the choices themselves go by the task's main metric,
accuracy), on validation (where every choice is made) and on the held-out test split (never used for a choice).

    python benchmarks/better_models.py [--write] [--trials 16] [--threads 2] [--quick]

`--quick` is a smoke run of a few minutes (tiny pretraining, 4 trials, 2 epochs); its figures mean nothing and
--write refuses them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import machine, table, write_section
from quality import Encoder, TextModality, isolate

POINT = 0.01
GAP_TARGET = 0.3          # the share of the teacher-student gap distillation should close
SPEEDUP_TARGET = 3.0      # the student's batch-1 latency against the teacher's, by zoo bench


class Task(TextModality):
    """quality.py's text task with a validation split as large as the training split: ensemble selection, greedy
    soups and tuning all choose on it."""

    SIZES = (20, 20, 40)
    QUICK_SIZES = (6, 6, 6)


class SmallTask(Task):
    """The same, with the distillation student's smaller encoder."""

    LAYERS, WIDTH = 1, 64


@dataclass
class Step:
    """One comparison: what was made, its validation and test macro-F1, against what."""

    name: str
    rows: list[list[str]] = field(default_factory=list)
    checks: list[tuple[str, str, bool | None]] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def scores(record: dict[str, Any]) -> tuple[float, float | None]:
    """(validation, test) macro-F1 of a run record."""
    metrics = record["metrics"]
    test = (metrics.get("test") or {}).get("macro_f1")
    return metrics["best"]["macro_f1"], test


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def row(what: str, record: dict[str, Any], note: str = "") -> list[str]:
    val, test = scores(record)
    return [what, fmt(val), fmt(test), note]


def rename(encoder: Encoder, name: str) -> Encoder:
    return Encoder(name, encoder.folder, encoder.registry_block.replace(f'name = "{encoder.name}"',
                                                                          f'name = "{name}"'), encoder.summary)


def adapt(name: str, registry: Path, paths: dict[str, str], output: Path, **config: Any) -> dict[str, Any]:
    from zoo import api
    from zoo.engine.config import AdaptConfig

    return api.adapt(name, paths["train"], val=paths["val"], test=paths["test"], output=output,
                     config=AdaptConfig(**config), registry_files=[registry], store=False)


def tuned_config(record: dict[str, Any]) -> dict[str, Any]:
    """The AdaptConfig values a tune trial ran with (its record's resolved configuration, the seed aside)."""
    config = dict(record["config"])
    keep = ("strategy", "epochs", "lr", "batch_size", "weight_decay", "warmup_ratio", "label_smoothing", "layer_decay",
            "lora_r", "lora_alpha", "patience")
    return {k: config[k] for k in keep if k in config}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--write", action="store_true", help="write the section into docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="a smoke run; its figures mean nothing")
    parser.add_argument("--keep", type=Path, help="keep the work folder here (runs, study) instead of a temporary one")
    args = parser.parse_args()
    if args.quick and args.write:
        parser.error("--quick figures mean nothing: they are not written")
    if args.quick:
        args.trials = min(args.trials, 4)

    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zoo-better-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        isolate(work)
        body = run(work, args)
        if args.keep is None:
            shutil.rmtree(work / "runs", ignore_errors=True)
    body = body.replace("{minutes}", f"{(time.monotonic() - started) / 60:.0f}")
    print(body)
    if args.write:
        write_section("better_models", body)
    return 0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(work: Path, args) -> str:
    from zoo import api

    quick = args.quick
    extra = {"epochs": 2} if quick else {}
    clock = time.monotonic()
    say("pretraining the encoders")
    task = Task(work / "teacher", quick=quick)
    task.encoder = task.build_encoder()
    small = SmallTask(work / "student", quick=quick)
    small.encoder = rename(small.build_encoder(), "quality-bert-small")
    registry = work / "better.toml"
    registry.write_text(task.encoder.registry_block + "\n" + small.encoder.registry_block)
    target = task.make_target(0)
    paths = target.paths
    runs = work / "runs"
    say(f"  {task.encoder.summary}\n  {small.encoder.summary} ({time.monotonic() - clock:.0f} s)")
    steps: list[Step] = []

    # 1-2. defaults, then tune.
    clock = time.monotonic()
    say("defaults")
    defaults = adapt(task.encoder.name, registry, paths, runs / "defaults", strategy="full", seed=0, **extra)
    say("tune")
    tuned = api.tune(task.encoder.name, paths["train"], val=paths["val"], test=paths["test"], trials=args.trials,
                     strategy="full", pruner="median", output=runs / "tune", registry_files=[registry], store=False,
                     seed=0, fixed=extra)
    best = api.run_record(tuned.best.run_dir).to_dict()
    step = Step("tune", seconds=time.monotonic() - clock)
    finished = [t for t in tuned.trials if t.state in ("complete", "pruned")]
    step.rows = [row("`zoo adapt --strategy full` (defaults)", defaults, _config_note(defaults)),
                 row(f"`zoo tune --strategy full --trials {args.trials}`: the best trial", best, _config_note(best))]
    gain = scores(best)[0] - scores(defaults)[0]
    test_gain = (scores(best)[1] or 0) - (scores(defaults)[1] or 0)
    step.checks.append(("tune ≥ defaults + 1 point macro-F1 (test)", f"{test_gain / POINT:+.1f} points on test, "
                        f"{gain / POINT:+.1f} on validation", test_gain >= POINT))
    pruned = sum(t.state == "pruned" for t in tuned.trials)
    step.notes.append(f"{len(finished)} trials finished ({pruned} pruned by the median rule); parameter importances: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in (tuned.importances or {}).items()))
    steps.append(step)

    # 3. soup of three seeds of the tuned recipe; a within-run soup.
    clock = time.monotonic()
    say("soup")
    recipe = tuned_config(best)
    seeds = [best]
    for seed in (1, 2):
        seeds.append(adapt(task.encoder.name, registry, paths, runs / f"seed{seed}", **{**recipe, "seed": seed}))
    seed_dirs = [r["run_dir"] for r in seeds]
    greedy = api.soup(seed_dirs, method="greedy", output=runs / "soup-greedy", store=False)
    uniform = api.soup(seed_dirs, method="uniform", output=runs / "soup-uniform", store=False)
    # The model soups recipe proper: the sweep's runs (one seed, so one head initialisation), best first.
    swept = sorted((t for t in tuned.trials if t.state == "complete" and t.run_dir), key=lambda t: -(t.value or 0))
    sweep = api.soup([t.run_dir for t in swept], method="greedy", output=runs / "soup-trials", store=False) \
        if len(swept) >= 2 else None
    step = Step("soup", seconds=time.monotonic() - clock)
    step.rows = [row(f"the tuned recipe, seed {k}", record) for k, record in enumerate(seeds)]
    top = max(seeds, key=lambda r: scores(r)[0])
    step.rows += [row("`zoo soup --method greedy` of the three", greedy, _soup_note(greedy)),
                  row("`zoo soup --method uniform` of the three", uniform)]
    if sweep is not None:
        step.rows.append(row(f"`zoo soup --method greedy` of the tune's {len(swept)} complete trials", sweep,
                             _soup_note(sweep)))
        step.checks.append(("greedy soup of the trials ≥ the best trial on validation (by construction)",
                            _soup_versus(sweep, best), _soup_met(sweep)))
    step.checks.append(("greedy soup of three seeds ≥ its best ingredient on validation (by construction)",
                        _soup_versus(greedy, top), _soup_met(greedy)))
    within = adapt(task.encoder.name, registry, paths, runs / "soup-top-k", **{**recipe, "seed": 0, "soup_top_k": 3})
    step.rows.append(row("the tuned recipe, seed 0, `zoo adapt --soup-top-k 3`", within, _within_note(within)))
    step.checks.append(("`--soup-top-k 3` does no harm against the same run without (test)",
                        f"{fmt(scores(within)[1])} against {fmt(scores(best)[1])}",
                        (scores(within)[1] or 0) >= (scores(best)[1] or 0) - 1e-9))
    steps.append(step)

    # 4. ensemble of different runs.
    clock = time.monotonic()
    say("ensemble")
    linear = adapt(task.encoder.name, registry, paths, runs / "linear", strategy="linear", seed=0)
    lora = adapt(task.encoder.name, registry, paths, runs / "lora", strategy="lora", seed=0, **extra)
    members = [*seeds, linear, lora]
    ensemble = api.ensemble([r["run_dir"] for r in members], method="caruana", output=runs / "ensemble",
                            store=False)
    step = Step("ensemble", seconds=time.monotonic() - clock)
    step.rows = [row(name, record) for name, record in
                 zip(("full, tuned, seed 0", "full, tuned, seed 1", "full, tuned, seed 2",
                      "`--strategy linear` (defaults)", "`--strategy lora` (defaults)"), members, strict=True)]
    step.rows.append(row("`zoo ensemble --method caruana` of the five", ensemble, _ensemble_note(ensemble)))
    best_member = max(members, key=lambda r: scores(r)[0])
    step.checks.append(("ensemble ≥ its best member on validation",
                        f"{fmt(scores(ensemble)[0])} against {fmt(scores(best_member)[0])}; test "
                        f"{fmt(scores(ensemble)[1])} against {fmt(scores(best_member)[1])}",
                        scores(ensemble)[0] >= scores(best_member)[0] - 1e-9))
    steps.append(step)

    # 5. distillation of the ensemble into the small encoder, against the small encoder with its own tuned recipe.
    clock = time.monotonic()
    say("distill")
    student_tune = api.tune(small.encoder.name, paths["train"], val=paths["val"], test=paths["test"],
                            trials=args.trials, strategy="full", pruner="median", output=runs / "student-tune",
                            registry_files=[registry], store=False, seed=0, fixed=extra)
    alone = api.run_record(student_tune.best.run_dir).to_dict()
    student_recipe = tuned_config(alone)
    step = Step("distill", seconds=0.0)
    step.rows = [row("teacher: the ensemble", ensemble),
                 row(f"student alone: `zoo tune` of the small encoder, {args.trials} trials, the best", alone,
                     _config_note(alone))]
    for temperature, alpha in ((5.0, 0.9), (2.0, 0.5)):
        distilled = api.distill(ensemble["run_dir"], small.encoder.name, paths["train"], val=paths["val"],
                                test=paths["test"], temperature=temperature, alpha=alpha, baseline=alone["run_dir"],
                                output=runs / f"student-distilled-t{temperature:g}-a{alpha:g}",
                                registry_files=[registry], store=False,
                                config=api.AdaptConfig(**{**student_recipe, "seed": 0}))
        facts = distilled["distill"]
        gap = facts.get("gap_closed") or {}
        speed = facts.get("speed_up") or {}
        default = (temperature, alpha) == (5.0, 0.9)
        step.rows.append(row(f"student distilled, the same recipe, T {temperature:g}, alpha {alpha:g}"
                             + (" (the defaults)" if default else ""), distilled,
                             f"gap closed: validation {fmt(gap.get('val'))}, test {fmt(gap.get('test'))}"))
        if default:
            step.checks.append(("distillation closes ≥ 0.3 of the gap (test, the defaults T 5, alpha 0.9)",
                                f"{fmt(gap.get('test'))} (validation {fmt(gap.get('val'))})",
                                None if gap.get("test") is None else gap["test"] >= GAP_TARGET))
            step.checks.append((f"student ≥ {SPEEDUP_TARGET:g}× faster by `zoo bench` (batch-1 latency)",
                                f"{speed.get('latency') or float('nan'):.2f}× ({_speed_note(speed)})",
                                None if speed.get("latency") is None else speed["latency"] >= SPEEDUP_TARGET))
    step.seconds = time.monotonic() - clock
    steps.append(step)
    return report(task, small, steps, args)


def _config_note(record: dict[str, Any]) -> str:
    config = record["config"]
    parts = [f"lr {config['lr']:.2g}", f"{config['epochs']} epochs", f"warm-up {config['warmup_ratio']:.2f}",
             f"weight decay {config['weight_decay']:.2g}", f"label smoothing {config['label_smoothing']:.2f}"]
    if config.get("layer_decay"):
        parts.append(f"layer decay {config['layer_decay']:.2f}")
    return ", ".join(parts)


def _soup_note(record: dict[str, Any]) -> str:
    soup = record.get("soup") or {}
    kept = soup.get("kept") or soup.get("chosen") or []
    return f"kept {len(kept)} of {len(soup.get('ingredients') or [])}" if soup else ""


def _soup_versus(soup: dict[str, Any], top: dict[str, Any]) -> str:
    """The soup against its best ingredient, on validation as the soup measured both, and on test."""
    section = soup["soup"]
    return (f"{section['score']:.3f} against {section['best_ingredient']:.3f} (the best ingredient alone, "
            f"measured alike); test {fmt(scores(soup)[1])} against {fmt(scores(top)[1])}")


def _soup_met(soup: dict[str, Any]) -> bool:
    return soup["soup"]["score"] >= soup["soup"]["best_ingredient"] - 1e-9


def _within_note(record: dict[str, Any]) -> str:
    soup = record.get("soup") or {}
    return f"soup of {', '.join(soup.get('kept') or []) or 'no epochs'} (of the {soup.get('top_k')} best kept)"


def _ensemble_note(record: dict[str, Any]) -> str:
    members = (record.get("ensemble") or {}).get("members") or []
    return "weights " + ", ".join(f"{m.get('weight', 0):.2f}" for m in members)


def _speed_note(speed: dict[str, Any]) -> str:
    teacher, student = speed.get("teacher") or {}, speed.get("student") or {}
    if not teacher or not student:
        return "not measured"
    return (f"p50 {teacher['latency_p50_ms']:.2f} ms against {student['latency_p50_ms']:.2f} ms; batch "
            f"{student['throughput_batch']} throughput {speed.get('throughput') or float('nan'):.2f}×; "
            f"{teacher['gflops']:.3f} against {student['gflops']:.3f} GFLOPs")


def report(task: Task, small: SmallTask, steps: list[Step], args) -> str:
    lines = [
        "## Better models from the same data: tune, soup, ensemble, distill",
        "",
        f"Machine: {machine()}; device cpu. Reproduce: `.venv/bin/python benchmarks/better_models.py --write` "
        "({minutes} min here).",
        "",
        f"{task.description} Distillation student's encoder: {small.encoder.summary}. "
        "Macro-F1 (what the targets are stated in; every choice goes by the task's main metric, accuracy) on "
        "validation, where every choice is made, and on the held-out test split, never used for a choice; one draw "
        "of the data (seed 0).",
        "",
        table(["target", "measured", ""],
              [[what, measured, "n/a" if met is None else "met" if met else "**not met**"]
               for step in steps for what, measured, met in step.checks]),
    ]
    for step in steps:
        lines += ["", f"### {step.name} ({step.seconds / 60:.1f} min)", "",
                  table(["model", "validation macro-F1", "test macro-F1", "notes"], step.rows)]
        lines += [""] + step.notes if step.notes else []
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
