"""Does `zoo recommend --data` rank backbones in the order of their accuracy after `zoo adapt`? Image, text and audio.

Real pretrained weights cannot be downloaded everywhere this must run, so each modality has a surrogate zoo that
the script pretrains itself (`surrogate_image.py`, `surrogate_text.py`, `surrogate_audio.py`; the interface is in
`surrogate.py`): backbones that differ for the reasons real ones do, each with its held-out source accuracy as its
published number, and at least two target tasks with small training sets. Each zoo is built twice, from two zoo
seeds (different source data and initial weights): a second, independent zoo.

For every zoo and target:

1. `zoo recommend --data` scores every backbone of the zoo on the target's training set (`zoo.api.recommend_with_data`
   with successive halving off, so every backbone is ranked); its raw estimator scores on the sample and on every
   subsample are kept, so any combination rule can be replayed on them;
2. the same with successive halving on, from an empty feature cache: its time, and whether the backbone that is
   truly best survives the cuts;
3. the ground truth: held-out accuracy after `zoo adapt --strategy full` (each zoo's `TRUTH` settings), for each of
   `--seeds` fine-tuning seeds.

Each ranking is compared with the truth (mean over fine-tuning seeds) by weighted Kendall τ (`scipy.stats.weightedtau`,
which weighs agreement at the top most): the data-free prior (the quality `zoo recommend` derives from the published
numbers), a size-only ranker (bigger is better, which scores well on some published benchmarks), each estimator
alone, the combination as `zoo recommend --data` ranks (`zoo.recommend.combine.COMBINATION`), and the rule it
replaced (a fixed pseudo-count of 200 examples for the prior). The combination rule is chosen leave-one-zoo-out:
for each zoo, the rule that does best on the other zoos is scored on it.

    python benchmarks/recommend_eval.py [--write] [--modalities image,text,audio] [--zoo-seeds 2] [--seeds 3]
                                        [--workers 2] [--raw FILE] [--from-raw FILE] [--quick]

Each zoo runs in a process of its own on one torch thread, `--workers` at a time. `--raw FILE` keeps every score
and accuracy as JSON; `--from-raw FILE` writes the report again from it without training anything. `--quick` is a
smoke run of a few minutes whose figures mean nothing (and --write refuses them).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from _report import machine, table, write_section

MODULES = {"image": "surrogate_image", "text": "surrogate_text", "audio": "surrogate_audio"}
DEFAULTS = {"modalities": "image,text,audio", "zoo_seeds": 2, "seeds": 3, "bootstrap": 30, "device": "cpu"}
PRIOR_FLOORS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, math.inf)
POOLINGS = ("random-effects", "equal")
POOLED = ((), ("logme",), ("logme", "hscore"), ("logme", "hscore", "knn"))     # (): every estimator
PREVIOUS_PSEUDO_COUNT = 200       # the rule this one replaced: prior weight 200 / (200 + N)
WITHIN = 0.05                     # the combination within this of the best single ranking, on every zoo
ABOVE_PRIOR = 0.1                 # and at least this above the prior
TARGET_MEAN = 0.8


# --- one zoo, in a process of its own ---------------------------------------------------------------------------


def run_zoo(modality: str, zoo_seed: int, *, seeds: int, bootstrap: int, device: str, quick: bool) -> dict:
    """Build one zoo, score it on each target with and without successive halving, and adapt every backbone."""
    started = time.monotonic()
    try:
        import torch

        torch.set_num_threads(1)
        module = importlib.import_module(MODULES[modality])
        with tempfile.TemporaryDirectory(prefix=f"zoo-recommend-eval-{modality}-") as tmp:
            work = Path(tmp)
            os.environ["HF_HOME"] = str(work / "hf")
            return _run_zoo(module, modality, zoo_seed, work, seeds=seeds, bootstrap=bootstrap, device=device,
                            quick=quick, started=started)
    except Exception:   # noqa: BLE001 - one zoo failing is reported beside the others
        return {"modality": modality, "zoo_seed": zoo_seed, "error": traceback.format_exc(),
                "seconds": time.monotonic() - started}


def _run_zoo(module, modality: str, zoo_seed: int, work: Path, *, seeds: int, bootstrap: int, device: str,
             quick: bool, started: float) -> dict:
    from zoo import api
    from zoo.engine.config import AdaptConfig

    def say(text: str) -> None:
        print(f"[{modality} zoo {zoo_seed}] {text}", file=sys.stderr, flush=True)

    say("pretraining the zoo")
    registry, backbones = module.build_zoo(work / "zoo", seed=zoo_seed, quick=quick)
    built = time.monotonic()
    names = [b.name for b in backbones]
    targets = {}
    for target_name in module.TARGETS:
        target = module.make_target(target_name, work / "targets", seed=zoo_seed, quick=quick)
        timings, halved = {}, None
        for halving in (False, True):
            os.environ["ZOO_FEATURE_CACHE"] = str(work / "features" / f"{target_name}-{halving}")
            t0 = time.monotonic()
            result = api.recommend_with_data(task=module.TASK, data=str(target.train), candidates=names,
                                             registry_files=[registry], device=device, sample=1000,
                                             bootstrap=bootstrap, seed=zoo_seed, halving=halving)
            timings[halving] = time.monotonic() - t0
            if halving:
                halved = result
            else:
                full = result
        say(f"{target_name}: recommend {timings[False]:.1f} s, with halving {timings[True]:.1f} s")
        truth: dict[str, list[float]] = {}
        for name in names:
            for seed in range(seeds):
                record = api.adapt(name, str(target.train), val=str(target.test),
                                   output=work / "runs" / f"{target_name}-{name}-{seed}",
                                   config=AdaptConfig(**module.TRUTH, seed=seed), device=device,
                                   registry_files=[registry], store=False)
                truth.setdefault(name, []).append(record["metrics"]["epochs"][-1]["val"]["accuracy"])
        say(f"{target_name}: truth " + ", ".join(f"{n.split('.')[-1]} {statistics.mean(v):.3f}"
                                                 for n, v in truth.items()))
        by_name = {c.name: c for c in full.candidates}
        targets[target_name] = {
            "description": target.description, "recommend_s": timings[False], "halving_s": timings[True],
            "estimates": full.estimates.to_dict(),
            "prior_quality": {n: by_name[n].prior_quality for n in names},
            "combined": {n: by_name[n].combined for n in names},
            "sample": full.sample["size"],
            "halving": {"stages": halved.stages, "final": [c.name for c in halved.candidates if c.status == "scored"]},
            "truth": truth,
        }
    return {"modality": modality, "zoo_seed": zoo_seed, "task": module.TASK, "source_metric": module.SOURCE_METRIC,
            "truth_config": {k: v for k, v in module.TRUTH.items() if k != "checkpoint_every"},
            "backbones": [asdict(b) for b in backbones], "targets": targets,
            "build_s": built - started, "seconds": time.monotonic() - started}


# --- rankings and their weighted τ ------------------------------------------------------------------------------


def weighted_tau(truth: list[float], score: list[float]) -> float | None:
    from scipy.stats import weightedtau

    if len(set(score)) < 2:
        return None                  # a constant ranking orders nothing
    return float(weightedtau(truth, score).statistic)


def previous_rule(prior: np.ndarray, estimates) -> np.ndarray:
    """The rule the combination replaced: standardised prior and mean standardised estimator scores, weighted
    200 / (200 + N) and the rest."""
    from zoo.recommend.combine import standardise, worst_where_undefined

    data = np.mean([standardise(worst_where_undefined(v)) for v in estimates.scores.values()], axis=0)
    weight = PREVIOUS_PSEUDO_COUNT / (PREVIOUS_PSEUDO_COUNT + estimates.size)
    return weight * standardise(prior) + (1 - weight) * data


def rankings(zoo: dict, target: dict, rule=None) -> dict[str, list[float]]:
    """Every ranking of one target's backbones, as scores in the zoo's backbone order (higher is better)."""
    from zoo.recommend.combine import COMBINATION, Estimates, combine

    estimates = Estimates.from_dict(target["estimates"])
    names = [b["name"] for b in zoo["backbones"]]
    order = [estimates.names.index(n) for n in names]
    prior = np.array([target["prior_quality"][n] for n in estimates.names])
    scores = {"data-free prior": [target["prior_quality"][n] for n in names],
              "size only": [b["params_m"] for b in zoo["backbones"]]}
    for estimator, values in estimates.scores.items():
        scores[f"{estimator} alone"] = [float(values[i]) if math.isfinite(values[i]) else -math.inf for i in order]
    scores["previous rule (prior pseudo-count 200)"] = list(previous_rule(prior, estimates)[order])
    scores["combined, as `zoo recommend --data` ranks"] = list(combine(prior, estimates, rule or COMBINATION)
                                                                .combined[order])
    return scores


def truth_of(zoo: dict, target: dict, seed: int | None = None) -> list[float]:
    return [statistics.mean(target["truth"][b["name"]]) if seed is None else target["truth"][b["name"]][seed]
            for b in zoo["backbones"]]


def zoo_taus(zoo: dict, rule=None) -> dict[str, float | None]:
    """Each ranking's weighted τ on one zoo: the mean over its targets."""
    per_target = [{k: weighted_tau(truth_of(zoo, t), v) for k, v in rankings(zoo, t, rule).items()}
                  for t in zoo["targets"].values()]
    return {k: None if any(p[k] is None for p in per_target) else statistics.mean(p[k] for p in per_target)
            for k in per_target[0]}


def rule_grid():
    from zoo.recommend.combine import CombinationRule

    return [CombinationRule(prior_floor=f, pooling=p, estimators=e) for e in POOLED for p in POOLINGS
            for f in PRIOR_FLOORS]


def combined_tau(zoo: dict, rule) -> float:
    return zoo_taus(zoo, rule)["combined, as `zoo recommend --data` ranks"]


def choose_rule(zoos: list[dict], grid: list):
    """The rule with the best mean weighted τ over ``zoos`` (the first of equals, in grid order)."""
    means = [statistics.mean(combined_tau(z, rule) for z in zoos) for rule in grid]
    return grid[int(np.argmax(means))], means


# --- the report -------------------------------------------------------------------------------------------------


def _label(zoo: dict) -> str:
    return f"{zoo['modality']} #{zoo['zoo_seed']}"


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def report(zoos: list[dict], args, total_s: float) -> str:
    from zoo.recommend.combine import COMBINATION

    failed = [z for z in zoos if "error" in z]
    zoos = [z for z in zoos if "error" not in z]
    taus = {_label(z): zoo_taus(z) for z in zoos}
    methods = list(next(iter(taus.values())))
    combined_key = "combined, as `zoo recommend --data` ranks"
    single = [m for m in methods if m == "data-free prior" or m.endswith(" alone")]

    rows = []
    for method in methods:
        values = [taus[_label(z)][method] for z in zoos]
        defined = [v for v in values if v is not None]
        mean = f"**{statistics.mean(defined):+.3f}**" if len(defined) == len(values) else \
            (f"{statistics.mean(defined):+.3f} (where defined)" if defined else "—")
        rows.append([method, *map(_cell, values), mean])

    check_rows, not_within, not_above = [], [], []
    for z in zoos:
        t = taus[_label(z)]
        best = max(single, key=lambda m: -math.inf if t[m] is None else t[m])
        within = t[combined_key] >= t[best] - WITHIN
        above = t[combined_key] >= t["data-free prior"] + ABOVE_PRIOR
        not_within += [] if within else [_label(z)]
        if not above:
            why = ("the prior is the best single ranking there" if best == "data-free prior" else
                   f"no single ranking is {ABOVE_PRIOR} above it there (the best, {best}, is "
                   f"{t[best] - t['data-free prior']:+.3f})" if t[best] < t["data-free prior"] + ABOVE_PRIOR else
                   "the combination falls short of the best single ranking")
            not_above.append(f"{_label(z)} ({t[combined_key] - t['data-free prior']:+.3f}: {why})")
        check_rows.append([_label(z), f"{best} {t[best]:+.3f}", f"{t['data-free prior']:+.3f}",
                           f"**{t[combined_key]:+.3f}**", "met" if within else "**not met**",
                           "met" if above else "**not met**"])
    mean_combined = statistics.mean(taus[_label(z)][combined_key] for z in zoos)

    grid = rule_grid()
    lozo_rows, lozo_values = [], []
    for held_out in zoos:
        others = [z for z in zoos if z is not held_out]
        chosen, _ = choose_rule(others, grid) if others else (COMBINATION, [])
        value = combined_tau(held_out, chosen)
        lozo_values.append(value)
        best = max(single, key=lambda m: -math.inf if taus[_label(held_out)][m] is None
                   else taus[_label(held_out)][m])
        lozo_rows.append([_label(held_out), chosen.label(), f"{value:+.3f}",
                          f"{best} {taus[_label(held_out)][best]:+.3f}"])
    overall, means = choose_rule(zoos, grid)
    grid_rows = []
    for pooled in POOLED:
        for pooling in POOLINGS if len(pooled) != 1 else POOLINGS[:1]:
            cells = [" + ".join(pooled) if pooled else "all", pooling if len(pooled) != 1 else "—"]
            for floor in PRIOR_FLOORS:
                index = next(i for i, r in enumerate(grid) if r.estimators == pooled and r.pooling == pooling
                             and r.prior_floor == floor)
                mark = "**" if grid[index] == overall else ""
                cells.append(f"{mark}{means[index]:+.3f}{mark}")
            grid_rows.append(cells)
    shipped = ("the rule `zoo recommend --data` ships (`zoo.recommend.combine.COMBINATION`)" +
               (" is the one chosen on all zoos" if overall == COMBINATION else
                f" ({COMBINATION.label()}) is **not** the one chosen on all zoos ({overall.label()})"))

    zoo_rows = []
    for z in zoos:
        if z["zoo_seed"] != min(x["zoo_seed"] for x in zoos if x["modality"] == z["modality"]):
            continue
        combined = {name: rankings(z, target)[combined_key] for name, target in z["targets"].items()}
        for i, b in enumerate(z["backbones"]):
            cells = [z["modality"], f"`{b['recipe']}`", b["description"], f"{b['params_m']:.2f}",
                     f"{b['source_score']:.3f}"]
            for name, target in z["targets"].items():
                accuracies = target["truth"][b["name"]]
                place = sorted(combined[name], reverse=True).index(combined[name][i]) + 1
                cells.append(f"{name}: {statistics.mean(accuracies):.3f} ± {statistics.pstdev(accuracies):.3f} "
                             f"(#{place})")
            zoo_rows.append([*cells[:5], "; ".join(cells[5:])])

    halving_rows = []
    for z in zoos:
        for name, target in z["targets"].items():
            truth = dict(zip([b["name"] for b in z["backbones"]], truth_of(z, target), strict=True))
            best = max(truth, key=truth.get)
            stages = target["halving"]["stages"]
            halving_rows.append([_label(z), name, " → ".join(f"{len(s['scored'])} on {s['sample']}" for s in stages),
                                 f"{target['recommend_s']:.1f} s", f"{target['halving_s']:.1f} s",
                                 "yes" if best in target["halving"]["final"] else "**no**"])

    seeds = len(next(iter(zoos[0]["targets"].values()))["truth"][zoos[0]["backbones"][0]["name"]])
    per_seed = []
    for seed in range(seeds):
        values = []
        for z in zoos:
            values.append(statistics.mean(weighted_tau(truth_of(z, t, seed), rankings(z, t)[combined_key])
                                          for t in z["targets"].values()))
        per_seed.append(statistics.mean(values))
    describe = []
    for modality in dict.fromkeys(z["modality"] for z in zoos):
        first = next(z for z in zoos if z["modality"] == modality)
        targets = "; ".join(f"{n}: {t['description']}" for n, t in first["targets"].items())
        config = ", ".join(f"{k} {v}" for k, v in first["truth_config"].items())
        describe.append(f"- **{modality}** ({first['task']}, published number `{first['source_metric']}`): "
                        f"{len(first['backbones'])} backbones; targets: {targets}; truth: `zoo adapt` with {config}.")
    verdict = (f"Mean weighted τ of the combination over the {len(zoos)} zoos: **{mean_combined:+.3f}** (target ≥ "
               f"{TARGET_MEAN}: {'met' if mean_combined >= TARGET_MEAN else '**not met**'}). Within {WITHIN} of the "
               "best single ranking on every zoo: " + ("met" if not not_within else
                                                       f"**not met** on {', '.join(not_within)}")
               + f". At least {ABOVE_PRIOR} above the prior on every zoo: " +
               ("met." if not not_above else f"**not met** on {'; '.join(not_above)}."))
    timing = ", ".join(f"{_label(z)} {z['seconds'] / 60:.1f} min" for z in zoos)
    failures = "".join(f"\n\n**{_label(z)} failed:**\n\n```\n{z['error'].strip()}\n```" for z in failed)
    return "\n".join([
        "## Does `zoo recommend --data` rank backbones in the order `zoo adapt` finds?", "",
        f"Machine: {machine()}; device {args.device}. Reproduce: `.venv/bin/python benchmarks/recommend_eval.py "
        f"{options(args)}--write` ({total_s / 60:.0f} min here, {args.workers} zoos at a time on one thread each: "
        f"{timing}).", "",
        "Surrogate zoos pretrained by the script (real pretrained weights cannot be downloaded where this must run), "
        "each built from two zoo seeds; ground truth is held-out accuracy after `zoo adapt --strategy full`, mean "
        f"over {seeds} fine-tuning seeds; the whole training set of each target is the sample (up to 1000):", "",
        *describe, "",
        "Weighted Kendall τ against the ground truth (1 = same order, 0 = unrelated, −1 = reversed), the mean over "
        "each zoo's targets; `#0` and `#1` are the two zoo seeds. Size only is undefined where all backbones have "
        "one size:", "",
        table(["ranking", *taus, "mean"], rows), "",
        verdict, f"Against one fine-tuning seed's truth at a time, the combination's mean τ ranges "
        f"{min(per_seed):+.3f} to {max(per_seed):+.3f}: the truth's own noise.", "",
        table(["zoo", "best single ranking", "prior", "combined", f"within {WITHIN} of the best",
               f"≥ prior + {ABOVE_PRIOR}"], check_rows), "",
        "**Choosing the rule, leave one zoo out.** For each zoo, the combination rule with the best mean τ on the "
        "other zoos (from the grid below), scored on the zoo left out:", "",
        table(["zoo left out", "rule chosen on the others", "its τ on the zoo left out", "best single there"],
              lozo_rows), "",
        f"Mean τ on the zoos left out: **{statistics.mean(lozo_values):+.3f}**. The grid's mean τ over all zoos (the "
        "rule chosen on all of them in bold):", "",
        table(["estimators pooled", "pooling", *(("no prior" if math.isinf(f) else f"prior floor {f:g}")
                                                  for f in PRIOR_FLOORS)], grid_rows), "",
        f"Here {shipped}.", "",
        "**Successive halving** (`zoo recommend --data` with more than 5 candidates; here every zoo's backbones "
        "as `--candidates`, each run from an empty feature cache): the stages, the time without and with it, and "
        "whether the truly best backbone reached the last stage:", "",
        table(["zoo", "target", "stages", "all at full sample", "halving", "best kept"], halving_rows), "",
        "Per backbone (zoo seed #0): parameters (M), source accuracy (its published number), then per target the "
        "test accuracy after `zoo adapt` (mean ± sd over seeds) and its place in the combined ranking:", "",
        table(["modality", "backbone", "pretraining", "params (M)", "source", "per target"], zoo_rows), "",
        "The estimators' own cost is timed by `benchmarks/estimator_speed.py` (below)." + failures,
    ])


def options(args) -> str:
    """The command-line options that differ from the defaults, so the reproduce line is exact."""
    return "".join(f"--{key.replace('_', '-')} {getattr(args, key)} " for key, default in DEFAULTS.items()
                   if getattr(args, key) != default)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", default=DEFAULTS["modalities"], help="comma-separated: image,text,audio")
    parser.add_argument("--zoo-seeds", type=int, default=DEFAULTS["zoo_seeds"], help="independent zoos per modality")
    parser.add_argument("--seeds", type=int, default=DEFAULTS["seeds"], help="fine-tuning seeds of the ground truth")
    parser.add_argument("--bootstrap", type=int, default=DEFAULTS["bootstrap"], help="subsamples per ranking")
    parser.add_argument("--device", default=DEFAULTS["device"])
    parser.add_argument("--workers", type=int, default=2, help="zoos built at a time (one torch thread each)")
    parser.add_argument("--raw", type=Path, help="write every score and accuracy to this JSON file")
    parser.add_argument("--from-raw", type=Path, help="report from a --raw file instead of running")
    parser.add_argument("--write", action="store_true", help="write the report into docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="a smoke run: figures mean nothing, --write refused")
    args = parser.parse_args()
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = [m for m in modalities if m not in MODULES]
    if unknown:
        parser.error(f"--modalities: unknown {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if args.quick:
        if args.write:
            parser.error("--quick figures mean nothing: they are not written")
        args.seeds, args.bootstrap = min(args.seeds, 2), 5

    started = time.monotonic()
    if args.from_raw:
        raw = json.loads(args.from_raw.read_text())
        zoos, total_s = raw["zoos"], raw["total_s"]
    else:
        jobs = [(m, s) for s in range(args.zoo_seeds) for m in modalities]
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_zoo, m, s, seeds=args.seeds, bootstrap=args.bootstrap, device=args.device,
                                   quick=args.quick) for m, s in jobs]
            zoos = [f.result() for f in futures]
        total_s = time.monotonic() - started
        if args.raw:
            args.raw.write_text(json.dumps({"zoos": zoos, "total_s": total_s}, indent=1))
    body = report(zoos, args, total_s)
    print(body)
    if args.write:
        write_section("recommend_eval", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
