"""What a finished run shows a person and what is published with it: training curves and a confusion matrix as
PNG, and the model card (README.md, with the Hub's metadata).

Written into the run directory when a run finishes and again when `zoo bench` adds a speed table; `zoo push`
writes the card once more for the repo, so that its usage snippet loads from the repo id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from zoo.data.files import VAL_FOLDERS
from zoo.engine.config import AdaptConfig
from zoo.explain.attribute import COMPLETENESS_LIMIT
from zoo.explain.decides import HOW_IT_DECIDES
from zoo.explain.render import text_pieces
from zoo.plugins import get_plugin_manager
from zoo.registry import source_scheme
from zoo.tasks import TASKS, get_task

# Folders that hold one split of a dataset: data given as one of them is named after the folder above.
SPLIT_FOLDERS = ("train", *VAL_FOLDERS, "test")


def write_plots(run_dir: Path, record: dict[str, Any]) -> list[str]:
    """curves.png (train loss and validation metric per epoch) and, single-label, confusion.png."""
    import matplotlib

    matplotlib.use("Agg")   # files only, never a window
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    epochs = record["metrics"]["epochs"]
    metric = record["metrics"]["selection_metric"]
    if epochs:
        fig, left = plt.subplots(figsize=(6, 3.5), dpi=120)
        xs = [e["epoch"] for e in epochs]
        left.plot(xs, [e["train_loss"] for e in epochs], marker="o", color="tab:blue", label="train loss")
        left.set_xlabel("epoch")
        left.set_ylabel("train loss", color="tab:blue")
        right = left.twinx()
        right.plot(xs, [e["val"][metric] for e in epochs], marker="s", color="tab:orange", label=f"val {metric}")
        right.set_ylabel(f"validation {metric}", color="tab:orange")
        left.set_title(f"{record['backbone']['name']} · {record['strategy']}")
        fig.tight_layout()
        fig.savefig(Path(run_dir) / "curves.png")
        plt.close(fig)
        written.append("curves.png")
    confusion = record["metrics"]["best"].get("confusion")
    if confusion:
        matrix = np.array(confusion)
        labels = record["labels"]
        size = max(3.5, 0.45 * len(labels) + 1.5)
        fig, ax = plt.subplots(figsize=(size, size), dpi=120)
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > matrix.max() / 2 else "black")
        ax.set_title("validation confusion matrix")
        fig.tight_layout()
        fig.savefig(Path(run_dir) / "confusion.png")
        plt.close(fig)
        written.append("confusion.png")
    return written


def _load_snippet(record: dict[str, Any], repo_id: str | None, revision: str = "main") -> str:
    """Plain code of the family's library that loads the model from the Hub repo (or PATH for a local run) and
    classifies one input (the task's ``snippet_input``)."""
    pinned = revision and revision != "main"
    example = get_task(record["task"]).snippet_input
    fit = record.get("head_fit") or {}
    if fit.get("native") is False:   # the linear head reads a pooling the library's own head lacks
        import textwrap

        note = textwrap.wrap(fit.get("load_note", ""), width=100, initial_indent="# ", subsequent_indent="# ")
        fetch = (['from huggingface_hub import snapshot_download', "",
                  f'path = snapshot_download("{repo_id}"' + (f', revision="{revision}"' if pinned else "") + ")"]
                 if repo_id else ['path = "PATH"'])
        return "\n".join([f"# The head reads the {fit['pooling']} pooling, which {record['family_library']}'s own "
                          "head does not compute. With zoo:", "from zoo import api", *fetch, "",
                          f'print(api.predict(path, ["{example}"])[0].labels)', "",
                          *(["# Without zoo:", *note] if note else [])])
    # The family writes its library's own code (Family.usage_snippet); one whose plugin is gone gets a comment.
    family = get_plugin_manager().families.get(record["backbone"]["family"])
    if family is None:
        return f"# load with {record['family_library']} from {repo_id or 'PATH'}"
    return family.usage_snippet(task=record["task"], repo_id=repo_id, revision=revision if pinned else None,
                                multi_label=record["multi_label"], example=example)


def _onnx_section(record: dict[str, Any], repo_id: str | None, revision: str = "main") -> list[str]:
    """The card's ONNX section: each export kept in the run's folder (`zoo export`), its parity figures, and how to
    run it with onnxruntime alone. Exports written elsewhere (-o outside the run) are not part of the run."""
    exports = [entry for entry in record.get("exports") or [] if not Path(entry["dir"]).is_absolute()]
    if not exports:
        return []
    lines = ["## ONNX", "", "Exported with `zoo export`, each checked against this model before it was written:", "",
             "| folder | precision | compared on | agreement | max abs logit difference | macro-F1 (torch -> ONNX) |",
             "| --- | --- | --- | ---: | ---: | --- |"]
    for entry in exports:
        parity = entry["parity"].get(entry["precision"]) or next(iter(entry["parity"].values()))
        f1 = (f"{parity['reference']['macro_f1']:.4f} -> {parity['exported']['macro_f1']:.4f}"
              if parity.get("reference") else "unlabelled")
        how = entry["precision"] + (f" ({entry['quantization']})" if entry["precision"] == "int8" else "")
        lines.append(f"| `{entry['dir']}/` | {how} | {parity['examples']} examples of {parity['data']} | "
                     f"{100 * parity['agreement']:.2f}% | {parity['max_abs_diff']:.1e} | {f1} |")
    folder = exports[0]["dir"]
    family = get_plugin_manager().families.get(record["backbone"]["family"])
    snippet = family.onnx_snippet(task=record["task"], where=folder, multi_label=record["multi_label"],
                                  example=get_task(record["task"]).snippet_input) if family else ""
    pinned = f" --revision {revision}" if revision and revision != "main" else ""
    fetch = ([f"Download the folder first: `huggingface-cli download {repo_id}{pinned} --include '{folder}/*' "
              "--local-dir .`, then, with onnxruntime and no torch:"] if repo_id else
             ["With onnxruntime and no torch, from the run's folder:"])
    lines += ["", *fetch, "", "```python", snippet, "```", ""]
    return lines


def wilson_interval(proportion: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion measured on ``n`` examples (95% for the default ``z``)."""
    centre = (proportion + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(proportion * (1 - proportion) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def hub_dataset_id(source: str) -> str | None:
    """The Hub dataset behind an ``hf:NAME[:config]`` data source, else None."""
    return source.removeprefix("hf:").split(":")[0] if source.startswith("hf:") else None


def dataset_name(source: str) -> str:
    """What the card calls the data of ``source``: the Hub name of an ``hf:`` dataset; else the folder or the
    file's stem, or, when that is a split (``photos/train``, ``tickets/train.csv``), the folder that holds it."""
    hub_dataset = hub_dataset_id(source)
    if hub_dataset:
        return hub_dataset
    path = Path(source)
    name = path.stem if path.suffix else path.name
    if name.lower() in SPLIT_FOLDERS and path.parent.name:
        return path.parent.name
    return name or source


def base_model(backbone: dict[str, Any]) -> str | None:
    """The Hub repo the backbone's weights came from, or None when they did not come from one: a ``local-dir:``
    folder, or a plugin's own source. A repo counts only when the run read it through the Hub cache (the record
    holds the commit it read), so the card never links to a repo that is not there."""
    source = backbone["source"]
    if source.startswith("local-dir:") or source_scheme(source) is not None or not backbone.get("commit"):
        return None   # a plugin's own source (archive:, torchvision:...) is no Hub repo, whatever commit it has
    return source


def model_card(record: dict[str, Any], *, repo_id: str | None = None, revision: str = "main",
               plots: list[str] = (), dataset: str | None = None, pictures: Collection[str] | None = None) -> str:
    """The model card README.md: Hub metadata (base model, library, pipeline tag, licence, datasets, model-index)
    and the facts of the run. ``repo_id`` (and a ``revision`` other than main) makes the usage snippet load from
    the Hub instead of a local PATH. ``dataset`` names the data (default: :func:`dataset_name` of its source),
    for a record whose paths were cut for publishing. ``pictures`` are the "How it decides" pictures beside the
    card (paths relative to it; None: every one the record names): only those are shown."""
    import json

    from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants

    if record.get("ensemble"):
        return ensemble_card(record, repo_id=repo_id, revision=revision, plots=plots, dataset=dataset)
    backbone, task = record["backbone"], TASKS[record["task"]]
    best, test = record["metrics"]["best"], record["metrics"].get("test")
    scored = test or best
    split = "test" if test else "validation"
    metric_names = task.headline_metrics(record["multi_label"])
    source = record["data"]["source"]
    hub_dataset = hub_dataset_id(source)
    dataset = dataset or dataset_name(source)
    eval_results = [EvalResult(task_type=task.pipeline_tag, dataset_type=dataset, dataset_name=dataset,
                               dataset_split=split, metric_type=name, metric_name=name,
                               metric_value=round(float(scored[name]), 4)) for name in metric_names]
    base = base_model(backbone)
    data = ModelCardData(
        base_model=base, library_name=record["family_library"], pipeline_tag=task.pipeline_tag,
        license=backbone["license"] if backbone["license"] != "unknown" else None,
        language=[lang for lang in backbone["languages"] if lang != "multilingual"] or None,
        datasets=[hub_dataset] if hub_dataset else None,
        tags=["zoo", record["task"], record["strategy"]], eval_results=eval_results,
        model_name=(repo_id.split("/")[-1] if repo_id else f"{backbone['name']}-{dataset}"))
    sizes, counts = record["data"]["sizes"], record["data"]["class_counts"]["train"]
    smallest, largest = min(counts.values()), max(counts.values())
    config = record["config"]
    hub = constants.ENDPOINT.rstrip("/")   # the Hub the backbone was read from, and the card is published to
    if base:
        origin = f"[{base}]({hub}/{base})"
    elif backbone["source"].startswith("local-dir:"):   # its last component: never where this machine keeps it
        origin = f"`{Path(backbone['source'].removeprefix('local-dir:')).name}`"
    else:
        origin = f"`{backbone['source']}`"
    data_link = f"[{hub_dataset}]({hub}/datasets/{hub_dataset})" if hub_dataset else dataset
    captions = {"curves.png": "training curves", "confusion.png": "validation confusion matrix"}
    at_commit = f" at commit `{backbone['commit'][:12]}`" if backbone.get("commit") else ""
    soup = record.get("soup") if (record.get("soup") or {}).get("kind") == "runs" else None
    scored_n = sizes["test"] if test else ((soup or {}).get("held_out") or {}).get("examples", sizes["val"])
    lines = [
        f"# {backbone['name']} adapted for {task.title}", "",
        _soup_intro(soup, origin, at_commit) if soup else
        f"Fine-tuned from {origin}{at_commit}"
        + (f" with `zoo distill`, learning from the teacher `{_teacher_name(record)}` " if record.get("distill")
           else " with `zoo adapt` ")
        + f"(strategy **{record['strategy']}**: {record['strategy_reason']}).", "",
        "## Results", "",
        f"Measured on the {f'{split} split' if test or not soup else _held_out_name(soup)} ({scored_n} examples):",
        "",
        "| metric | value |", "| --- | ---: |",
        *[f"| {name} | {scored[name]:.4f} |" for name in metric_names], "",
        *[f"![{captions.get(name, name)}]({name})" for name in plots],
        *([""] if plots else []),
        *_distill_section(record),
        *_how_it_decides(record, pictures),
        "## Data", "",
        f"- source: {data_link}",
        f"- labels ({len(record['labels'])}): {', '.join(record['labels'])}",
        f"- examples: {sizes['train']} train, {sizes['val']} validation, {sizes['test']} test "
        f"({record['data']['split'].get('val', '')})",
        f"- class balance in training: {smallest} to {largest} examples per class",
        f"- data fingerprint: `{record['data']['fingerprint'][:16]}`", "",
        *(_soup_made(soup, record) if soup else [*_how_trained(record), _training_line(record, config),
                                                 *_epoch_soup_line(record)]),
        f"- hardware: {record['hardware']['device']}, {record['hardware']['processes']} process(es)",
        f"- wall time: {record['wall_s']:.0f} s" if record.get("wall_s") else "",
        "", f"<details><summary>{'The first ingredient' if soup else 'Full'} training configuration</summary>", "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True, default=str), "```", "", "</details>",
        *_bench_section(record.get("bench") or []),
        "", "## Use", "", "```python", _load_snippet(record, repo_id, revision), "```", "",
        *_onnx_section(record, repo_id, revision),
        "## Limitations", "",
        f"- Trained on {sizes['train']} examples; quality outside that data's distribution is unmeasured.",
    ]
    if largest > 2 * max(smallest, 1):
        lines.append(f"- Classes are imbalanced ({smallest} to {largest} training examples); check per-class "
                     "recall in zoo_run.json before relying on rare classes.")
    if not record["multi_label"] and scored_n:
        low, high = wilson_interval(float(scored["accuracy"]), scored_n)
        lines.append(f"- The {split} accuracy comes from {scored_n} examples: its 95% (Wilson) interval is "
                     f"{low:.3f} to {high:.3f}.")
    lines.append("")
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _teacher_name(record: dict[str, Any]) -> str:
    """The distilled run's teacher as the card names it: its folder's name, never where this machine keeps it."""
    return _markdown(Path(record["distill"]["teacher"]["run"]).name)


def _distill_section(record: dict[str, Any]) -> list[str]:
    """The card's "Distillation" (the record's ``distill`` section, zoo.better.distill): the teacher and the loss;
    the teacher, the student alone and this model side by side; the gap closed and the speed-up."""
    section = record.get("distill")
    if not section:
        return []
    teacher, alpha, temperature = section["teacher"], section["alpha"], section["temperature"]
    metric = get_task(record["task"]).main_metric(record["multi_label"])
    what = f"{teacher['backbone']}, {teacher['strategy']}" if teacher.get("backbone") else "an ensemble"
    lines = ["## Distillation", "",
             f"Distilled from the teacher `{_teacher_name(record)}` ({_markdown(what)}): trained on the teacher's "
             f"logits softened at temperature T = {temperature:g} with weight alpha = {alpha:g}, and on the labels "
             f"with weight {1 - alpha:g} (loss alpha · T² · KL(teacher ‖ student) + (1 − alpha) · the label loss); "
             "the teacher's logits were computed once, on the training examples without augmentation.", ""]
    if "speed_up" not in section:
        return lines + ["Not yet compared with the student alone or timed against the teacher: run "
                        "`zoo adapt --resume RUN` to do so.", ""]
    speed, alone = section["speed_up"], section.get("student_alone")
    rows = [("teacher", teacher["metrics"], speed["teacher"])]
    if alone is not None:
        rows.append(("student alone" + (" (same recipe, no teacher)" if alone.get("trained") else ""),
                     alone["metrics"], None))
    ours = {"val": record["metrics"]["best"], "test": record["metrics"].get("test")}
    rows.append(("**this model** (distilled)", ours, speed["student"]))
    lines += [f"| model | validation {metric} | test {metric} | latency p50, batch 1 | throughput, batch "
              f"{speed['student']['throughput_batch']} |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, scores, timed in rows:
        cells = [f"{scores[split][metric]:.4f}" if (scores.get(split) or {}).get(metric) is not None else "–"
                 for split in ("val", "test")]
        timing = ([f"{timed['latency_p50_ms']:.2f} ms", f"{timed['throughput_per_s']:.1f}/s"] if timed else
                  ["–", "–"])
        lines.append(f"| {name} | {' | '.join(cells)} | {' | '.join(timing)} |")
    gap = section["gap_closed"]
    closed = [f"{gap[split]:.2f} on {'validation' if split == 'val' else 'test'}" for split in ("val", "test")
              if gap.get(split) is not None]
    lines += ["", f"- gap closed ((distilled − alone) / (teacher − alone), by {metric}): "
                  + ("; ".join(closed) if closed else "not measured") + ".",
              *[f"- {note}" for note in gap.get("notes") or []],
              f"- speed-up over the teacher on {speed['device']} ({speed['precision']}), timed as `zoo bench` does: "
              + (f"{speed['latency']:.2f}× lower latency" if speed.get("latency") else "latency not compared")
              + (f", {speed['throughput']:.2f}× the throughput" if speed.get("throughput") else "") + ".", ""]
    return lines


def _held_out_name(soup: dict[str, Any]) -> str:
    data = (soup.get("held_out") or {}).get("data", "validation split")
    return "ingredients' validation split" if data == "validation split" else f"held-out data `{Path(data).name}`"


def _soup_intro(soup: dict[str, Any], origin: str, at_commit: str) -> str:
    kept, tried = len(soup["kept"]), len(soup["ingredients"])
    runs = f"{tried} runs fine-tuned from {origin}{at_commit}"
    if kept == 1:
        return (f"A **greedy model soup** of {runs}, made with `zoo soup`: averaging any other run with the best one "
                "lowered its held-out score, so the soup is the best run's weights alone.")
    how = ("each added only if the held-out score did not drop" if soup["method"] == "greedy" else "all averaged")
    return (f"A **{soup['method']} model soup**: the weights of {kept} of {runs} averaged into one model ({how}), "
            "made with `zoo soup`. It is as fast as any one of them.")


def _soup_made(soup: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """The card's "How it was made" for a soup of runs: every ingredient, its held-out score, and the verdict."""
    import shlex

    metric = soup["metric"]
    lines = ["## How it was made", "",
             f"Ingredients, ranked by held-out {metric} on the {_held_out_name(soup)} "
             f"({soup['held_out']['examples']} examples):", "",
             f"| run | strategy | seed | {metric} | soup {metric} when tried | kept |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for entry in soup["ingredients"]:
        tried = "" if entry.get("soup_score") is None else f"{entry['soup_score']:.4f}"
        lines.append(f"| `{Path(entry['name']).name}` | {entry.get('strategy') or ''} | {entry.get('seed', '')} | "
                     f"{entry['score']:.4f} | {tried} | {'yes' if entry['kept'] else 'no'} |")
    lines += ["", f"The soup scores {soup['score']:.4f} {metric} on that data, against "
              f"{soup['best_ingredient']:.4f} for its best ingredient ({soup['gain']:+.4f}). Scores on the data "
              "that chose the soup flatter it; the test split, when there is one, does not.", ""]
    if record.get("command"):
        lines += ["Made with:", "", "```bash", shlex.join(record["command"]), "```", ""]
    return lines


def _epoch_soup_line(record: dict[str, Any]) -> list[str]:
    """A run's soup of its best epochs (`zoo adapt --soup-top-k`), as one line of "How it was trained"."""
    soup = record.get("soup")
    if not soup or soup.get("kind") != "epochs":
        return []
    return [f"- weights averaged over the best epochs (`--soup-top-k {soup['top_k']}`, greedy on validation): "
            f"{', '.join(soup['kept'])} kept, validation {soup['metric']} {soup['score']:.4f} against "
            f"{soup['best_ingredient']:.4f} for the best epoch alone"]


# How the card names each explained hyperparameter (zoo.engine.config.EXPLAINED).
_CHOICE_NAMES = {"strategy": "strategy", "epochs": "epochs", "lr": "learning rate", "batch_size": "batch size",
                 "warmup_ratio": "warm-up ratio", "patience": "patience (epochs)", "image_size": "image size (px)",
                 "workers": "data-loading workers"}


def _how_trained(record: dict[str, Any]) -> list[str]:
    """The card's "How it was trained": each explained hyperparameter with its value and the rule that chose it
    (or that the person set it), and the command that reproduces the run."""
    import shlex

    lines = ["## How it was trained", ""]
    choices = record.get("choices")
    if choices:   # runs recorded before choices were explained have only the configuration below
        lines += ["| setting | value | chosen by |", "| --- | --- | --- |"]
        lines += [f"| {_CHOICE_NAMES.get(name, name)} | {choice['value']} | {_cell(choice['rule'])} |"
                  for name, choice in choices.items()]
        lines.append("")
    tune = record.get("tune")
    if tune:   # a `zoo tune` trial: its values were drawn by the study, not by the rules above
        resumed = f", finishing the interrupted trial {tune['resumes_trial']}" if "resumes_trial" in tune else ""
        lines += [f"Trial {tune['trial']} of the `zoo tune` study `{tune['study']}`{resumed}: the values set above "
                  "were drawn by the study's sampler.", ""]
    if record.get("command"):
        # The workers change the speed only: the machine that repeats the run chooses its own.
        but = " but the workers" if "workers" in (choices or {}) else ""
        lines += [f"To train it again, or to change a value, run (every value above{but} is spelled out):", "",
                  "```bash", shlex.join(record["command"]), "```", ""]
        unexpressed = AdaptConfig.from_dict(record["config"]).command_options()[1]
        if unexpressed:
            lines += [f"Set through the Python API (`zoo.api.adapt(config=AdaptConfig(...))`), with no command-line "
                      f"option: {', '.join(unexpressed)}.", ""]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _training_line(record: dict[str, Any], config: dict[str, Any]) -> str:
    fit = record.get("head_fit") or {}
    if fit.get("solver") == "lbfgs":   # the linear head was solved: epochs and learning rate did not apply
        poolings = fit.get("poolings") or {}
        pooled = ""
        if fit.get("pooling", "native") != "native":
            pooled = f" on the {fit['pooling']} pooling of the frozen backbone"
        if len(poolings) > 1:
            pooled += (f" (of {len(poolings)} tried, by validation {fit['metric']}: "
                       + ", ".join(f"{name} {tried['val']:.4f}" for name, tried in poolings.items()) + ")")
        return (f"- linear head fitted to convergence on standardised cached features (L-BFGS, "
                f"{fit['iterations']} iterations){pooled}: L2 {fit['l2']:g} chosen on validation {fit['metric']} "
                f"from {len(fit['grid'])} strengths; seed {config['seed']}")
    stopped = record["metrics"].get("stopped_by")   # a reporter's reason: a `zoo tune` pruner's
    return (f"- epochs run: {len(record['metrics']['epochs'])} of {config['epochs']} (best: {record['best_epoch']}"
            f"{'; ' + stopped if stopped else ''}), precision {record.get('precision_used', config['precision'])}, "
            f"augmentation {config['augment']}, seed {config['seed']}")


def write_model_card(run_dir: Path, record: dict[str, Any]) -> str:
    """README.md in the run directory, with the plots and pictures that are there."""
    plots = [name for name in ("curves.png", "confusion.png") if (Path(run_dir) / name).is_file()]
    pictures = [name for name in how_it_decides_pictures(record) if (Path(run_dir) / name).is_file()]
    (Path(run_dir) / "README.md").write_text(model_card(record, plots=plots, pictures=pictures))
    return "README.md"


def how_it_decides_pictures(record: dict[str, Any]) -> list[str]:
    """The pictures the record's "How it decides" names (paths relative to the run directory)."""
    section = record.get(HOW_IT_DECIDES) or {}
    return [entry["file"] for entry in section.get("examples", []) if entry.get("file")]


# How the card names what the attributions are over, for each input kind.
_UNITS = {"text": "words", "image": "image regions", "audio": "stretches of time"}


def _how_it_decides(record: dict[str, Any], pictures: Collection[str] | None) -> list[str]:
    """The card's "How it decides" (the record's section, :mod:`zoo.explain.decides`): the most confident correct
    and wrong validation predictions with what pushed them, the confusions behind most errors, and for text the
    words that push towards each class. Nothing for a record without the section."""
    section = record.get(HOW_IT_DECIDES)
    if not section:
        return []
    kind = get_task(record["task"]).input_kind
    units = _UNITS.get(kind, "parts of the input")
    lines = ["## How it decides", "",
             f"What pushed the model to its most confident predictions on the validation split, right and wrong: "
             f"integrated gradients ([Captum](https://captum.ai)) attribute the predicted label's logit to the "
             f"{units} of each input, along a straight path from a baseline with nothing in it (as the backbone's "
             "family defines it) to the input. Positive attributions pushed towards the label, negative away from "
             "it.", ""]
    examples = section.get("examples") or []
    for which, title in (("correct", "Most confident and right"), ("wrong", "Most confident and wrong")):
        chosen = [entry for entry in examples if entry["kind"] == which]
        lines += [f"### {title}", ""]
        if not chosen:
            total = (section.get("predictions") or {}).get(which)
            lines += [f"No validation prediction is {'right' if which == 'correct' else 'wrong'}." if total == 0
                      else "None explained in the time allowed.", ""]
            continue
        for entry in chosen:
            lines += _example_lines(entry, kind, pictures)
    lines += _confusion_lines(section, record)
    lines += _word_lines(section.get("class_words"))
    lines += ["The completeness error is |Σ attributions − (f(x) − f(baseline))| relative to |f(x) − f(baseline)|, f "
              f"the explained label's logit: above {COMPLETENESS_LIMIT:.0%} the attributions do not add up to the "
              "change they explain, and more integrated-gradients steps are needed. Examples explained: "
              f"{section['rule']}; {section['seconds']:.1f} s in all. Explain any input with "
              "`zoo explain RUN INPUT`.", ""]
    lines += [f"- {note}" for note in section.get("notes") or []]
    return lines + ([""] if section.get("notes") else [])


def _example_lines(entry: dict[str, Any], kind: str, pictures: Collection[str] | None) -> list[str]:
    error = entry.get("completeness_error")
    steps = f"{entry['steps']} steps" if entry.get("steps") else ""
    honesty = ""
    if error is not None:
        honesty = f"; completeness error {100 * error:.1f}%" + (f" ({steps})" if steps else "")
        if error > COMPLETENESS_LIMIT:
            honesty += f", above {COMPLETENESS_LIMIT:.0%}: read these attributions with care"
    true = ", ".join(entry["true"]) or "none"
    lines = [f"**`{entry['input']}`**: predicted **{_markdown(entry['predicted'])}** (probability "
             f"{entry['score']:.3f}), true {_markdown(true)}{honesty}.", ""]
    if kind == "text" and entry.get("text") is not None:
        lines += [f"> {_bold_words(entry['text'], entry['top'])}", ""]
    elif entry.get("file") and (pictures is None or entry["file"] in pictures):
        lines += [f"![{_markdown(entry['input'])}: predicted {_markdown(entry['predicted'])}]({entry['file']})", ""]
    top = "; ".join(f"{_markdown(unit['name'])} ({unit['attribution']:+.3g})" for unit in entry["top"])
    lines += [f"Pushed most towards {_markdown(entry['predicted'])}: {top or 'nothing (no positive attribution)'}.",
              ""]
    return lines


def _confusion_lines(section: dict[str, Any], record: dict[str, Any]) -> list[str]:
    if section.get("errors") is None:   # multi-label: no confusion matrix
        return []
    scored = record["data"]["sizes"]["val"]
    if not section["errors"]:
        return ["### Confusions", "", f"None of the {scored} validation examples is misclassified.", ""]
    lines = ["### Confusions", "", f"{section['errors']} of the {scored} validation examples are misclassified; "
             "the confusions behind most of them:", "",
             "| true | predicted as | examples | share of the errors |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {_markdown(pair['true'])} | {_markdown(pair['predicted'])} | {pair['count']} | {pair['share']:.0%} |"
              for pair in section.get("confusion_pairs") or []]
    return lines + [""]


def _word_lines(class_words: dict[str, Any] | None) -> list[str]:
    if not class_words:
        return []
    lines = ["### Words that push towards each class", "",
             "Each word's attributions towards the predicted class, summed over the validation texts explained for "
             "it (the examples above and more of each class's confident correct predictions):", "",
             "| class | texts | words |", "| --- | ---: | --- |"]
    for label, found in class_words.items():
        words = ", ".join(f"{word['word']} ({word['attribution']:+.3g})" for word in found["words"]) or "none"
        lines.append(f"| {_markdown(label)} | {found['texts']} | {_markdown(words)} |")
    return lines + [""]


_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~])")


def _markdown(text: str) -> str:
    """``text`` shown as it is in Markdown: its special characters escaped, on one line."""
    return _inline(str(text)).strip()


def _inline(text: str) -> str:
    """``text`` escaped for Markdown, each run of white space (line breaks too) one space."""
    return _MARKDOWN.sub(r"\\\1", re.sub(r"\s+", " ", text))


def _bold_words(text: str, top: list[dict[str, Any]]) -> str:
    """The text with its top words in bold (their character spans), escaped for Markdown, on one line."""
    pieces = text_pieces(text, [(unit["span"], True) for unit in top])
    return "".join(_inline(piece) if bold is None else f"**{_markdown(piece)}**" for piece, bold in pieces).strip()


def _bench_section(benches: list[dict[str, Any]]) -> list[str]:
    """The model card's speed table: the latest `zoo bench` per device and precision."""
    if not benches:
        return []
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for result in benches:
        latest[(result["device"], result["precision"])] = result
    lines = ["", "## Speed", "", "Measured with `zoo bench` (forward pass only, after warm-up):", "",
             "| device | precision | latency p50 / p95 (batch 1) | throughput | peak memory | GFLOPs |",
             "| --- | --- | --- | --- | --- | ---: |"]
    for result in latest.values():
        prints = result["fingerprint"]
        where = prints.get("device_name") or f"{prints.get('cpu')} ({prints.get('threads')} threads)"
        speed = ", ".join(f"{t['samples_per_s']:.1f}/s at {t['batch_size']}" for t in result["throughput"])
        lines.append(f"| {where} | {result['precision']} | {result['latency_ms']['p50']:.2f} / "
                     f"{result['latency_ms']['p95']:.2f} ms | {speed} | {result['peak_memory_mb']:.0f} MB "
                     f"({result['peak_memory_kind']}) | {result['gflops']:.3f} |")
    return lines


def ensemble_card(record: dict[str, Any], *, repo_id: str | None = None, revision: str = "main",
                  plots: list[str] = (), dataset: str | None = None) -> str:
    """The model card of an ensemble (`zoo ensemble`): what it is (its members, their weights and how they were
    chosen), its validation score against its best member's, the data, how to use it (with zoo), and its cost,
    the sum of its members'."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    section, task = record["ensemble"], TASKS[record["task"]]
    best, test = record["metrics"]["best"], record["metrics"].get("test")
    scored, split = (test, "test") if test else (best, "validation")
    metric = section["metric"]
    source = (record.get("data") or {}).get("source") or ""
    dataset = dataset or dataset_name(source)
    hub_dataset = hub_dataset_id(source)
    eval_results = [EvalResult(task_type=task.pipeline_tag, dataset_type=dataset, dataset_name=dataset,
                               dataset_split=split, metric_type=name, metric_name=name,
                               metric_value=round(float(scored[name]), 4))
                    for name in task.headline_metrics(record["multi_label"]) if name in scored]
    license = record["backbone"].get("license")
    data = ModelCardData(
        library_name="zoo", pipeline_tag=task.pipeline_tag,
        license=license if license and license != "unknown" else None,
        datasets=[hub_dataset] if hub_dataset else None, tags=["zoo", record["task"], "ensemble"],
        eval_results=eval_results or None,
        model_name=repo_id.split("/")[-1] if repo_id else f"ensemble-{dataset}")
    members = section["members"]
    kept = [member for member in members if member["weight"] > 0]
    how = ("Caruana et al.'s ensemble selection (2004), with replacement: at each of "
           f"{section['size']} steps the member whose addition gives the best validation {metric} (ties to the lower "
           f"log loss) is added again or for the first time, and the best prefix "
           f"({_count(section['steps'], 'step')}) is kept; a member's weight is its share of those steps"
           if section["method"] == "caruana" else "every member weighted equally")
    validation = section["validation"]
    chosen_on = ("the validation outputs each run stored" if validation["source"] == "stored" else
                 f"`{_markdown(Path(validation['source']).name)}`")
    lines = [
        f"# An ensemble of {_count(len(kept), 'model')} for {task.title}", "",
        f"The weighted mean of its members' probabilities "
        f"({'sigmoid per label' if record['multi_label'] else 'softmax'}), made with `zoo ensemble` from runs of "
        f"`zoo adapt`: {how}. Chosen on {chosen_on} "
        f"({validation['examples']} examples).", "",
        "## Results", "",
        "| split | metric | ensemble | best member |", "| --- | --- | ---: | ---: |",
        f"| validation | {metric} | {section['score']:.4f} | {section['best_member']['score']:.4f} "
        f"({_markdown(section['best_member']['run'])}) |",
    ]
    if test:
        tests = [m["test"][metric] for m in members if m.get("test") and m["test"].get(metric) is not None]
        lines.append(f"| test | {metric} | {test[metric]:.4f} | " + (f"{max(tests):.4f}" if tests else "-") + " |")
    lines += ["", *[f"![validation confusion matrix]({name})" for name in plots if name == "confusion.png"],
              *([""] if "confusion.png" in plots else []),
              "## Members", "", f"| run | backbone | family | validation {metric} | weight |",
              "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| {_markdown(m['name'])} | {_markdown(m['backbone'])} | {_markdown(m['family'])} | "
              f"{m['validation'][metric]:.4f} | {m['weight']:.3f} |" for m in members]
    lines += ["", "Each member's saved model, in its family's native format, is in `members/` (named in "
              "`zoo_ensemble.json` with its weight): any of them loads alone with its library.", ""]
    sizes = (record.get("data") or {}).get("sizes") or {}
    if sizes:
        lines += ["## Data", "", f"- source: {dataset}", f"- labels ({len(record['labels'])}): "
                  f"{', '.join(record['labels'])}",
                  f"- examples (the first member's): {sizes.get('train', 0)} train, {sizes.get('val', 0)} validation, "
                  f"{sizes.get('test', 0)} test", ""]
    fetch = (["from huggingface_hub import snapshot_download", "",
              f'path = snapshot_download("{repo_id}"' + (f', revision="{revision}"' if revision != "main" else "")
              + ")"] if repo_id else ['path = "PATH"'])
    lines += ["## Use", "", "With zoo, which loads every member and mixes their probabilities:", "", "```python",
              "from zoo import api", *fetch, "", f'print(api.predict(path, ["{task.snippet_input}"])[0].labels)',
              "```", "", "Or serve it: `zoo serve PATH`. It costs the sum of its members: `zoo bench PATH` times them "
              "all.", "", *_bench_section(record.get("bench") or []), "", "## Limitations", ""]
    lines += [f"- {_markdown(warning)}" for warning in section.get("warnings") or []]
    lines.append(f"- Each prediction runs {'all ' + _count(len(kept), 'member') if len(kept) > 1 else 'its one member'}"
                 "; exporting to ONNX and explaining go member by member (`zoo export`, `zoo explain` on each "
                 "member's run).")
    if not record["multi_label"] and validation["examples"] and not test:
        low, high = wilson_interval(float(best["accuracy"]), validation["examples"])
        lines.append(f"- The validation accuracy comes from the {validation['examples']} examples the weights were "
                     f"chosen on, so it is optimistic; its 95% (Wilson) interval is {low:.3f} to {high:.3f}.")
    lines.append("")
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
