"""What a finished run shows a person: training curves and a confusion matrix as PNG, and a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.tasks import TASKS


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


def _load_snippet(record: dict[str, Any]) -> str:
    if record["family_library"] == "timm":
        return ('import timm\n'
                'model = timm.create_model("local-dir:PATH", pretrained=True).eval()\n'
                'config = timm.data.resolve_data_config({}, model=model)\n'
                'transform = timm.data.create_transform(**config)\n'
                'labels = model.pretrained_cfg["label_names"]')
    if record["family_library"] == "transformers":
        tag = TASKS[record["task"]].pipeline_tag
        return f'from transformers import pipeline\nclassifier = pipeline("{tag}", model="PATH")'
    return f"# load with {record['family_library']} from PATH"


def write_model_card(run_dir: Path, record: dict[str, Any]) -> str:
    """README.md: card metadata (base model, library, pipeline tag, licence, model-index) and the facts."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    backbone, task = record["backbone"], TASKS[record["task"]]
    best, test = record["metrics"]["best"], record["metrics"].get("test")
    scored = test or best
    split = "test" if test else "validation"
    metric_names = ["micro_f1", "macro_f1"] if record["multi_label"] else ["accuracy", "macro_f1"]
    dataset_name = Path(record["data"]["source"]).name or record["data"]["source"]
    eval_results = [EvalResult(task_type=task.pipeline_tag, dataset_type=dataset_name, dataset_name=dataset_name,
                               dataset_split=split, metric_type=name, metric_name=name,
                               metric_value=round(float(scored[name]), 4)) for name in metric_names]
    base_model = backbone["source"] if not backbone["source"].startswith("local-dir:") else None
    data = ModelCardData(
        base_model=base_model, library_name=record["family_library"], pipeline_tag=task.pipeline_tag,
        license=backbone["license"] if backbone["license"] != "unknown" else None,
        language=[lang for lang in backbone["languages"] if lang != "multilingual"] or None,
        tags=["zoo", record["task"], record["strategy"]], eval_results=eval_results,
        model_name=f"{backbone['name']}-{dataset_name}")
    sizes, counts = record["data"]["sizes"], record["data"]["class_counts"]["train"]
    smallest, largest = min(counts.values()), max(counts.values())
    config = record["config"]
    link = f"https://huggingface.co/{backbone['source']}" if base_model else backbone["source"]
    lines = [
        f"# {backbone['name']} adapted for {task.title}", "",
        f"Fine-tuned from [{backbone['source']}]({link}) with `zoo adapt` "
        f"(strategy **{record['strategy']}**: {record['strategy_reason']}).", "",
        "## Results", "",
        f"Measured on the {split} split ({sizes['test'] if test else sizes['val']} examples):", "",
        "| metric | value |", "| --- | ---: |",
        *[f"| {name} | {scored[name]:.4f} |" for name in metric_names], "",
        "## Data", "",
        f"- labels ({len(record['labels'])}): {', '.join(record['labels'])}",
        f"- examples: {sizes['train']} train, {sizes['val']} validation, {sizes['test']} test "
        f"({record['data']['split'].get('val', '')})",
        f"- class balance in training: {smallest} to {largest} examples per class",
        f"- data fingerprint: `{record['data']['fingerprint'][:16]}`", "",
        "## Training", "",
        f"- epochs run: {len(record['metrics']['epochs'])} of {config['epochs']} (best: {record['best_epoch']}), "
        f"batch size {config['batch_size']}, learning rate {config['lr']}, precision {config['precision']}, "
        f"augmentation {config['augment']}, seed {config['seed']}",
        f"- hardware: {record['hardware']['device']}, {record['hardware']['processes']} process(es)",
        *_bench_section(record.get("bench") or []),
        "", "## Use", "", "```python", _load_snippet(record), "```", "",
        "## Limitations", "",
        f"- Trained on {sizes['train']} examples; quality outside that data's distribution is unmeasured.",
    ]
    if largest > 2 * max(smallest, 1):
        lines.append(f"- Classes are imbalanced ({smallest} to {largest} training examples); check per-class "
                     "recall in zoo_run.json before relying on rare classes.")
    lines.append("")
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    (Path(run_dir) / "README.md").write_text(str(card))
    return "README.md"


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
