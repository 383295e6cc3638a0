"""`zoo distill`: a teacher run (or ensemble) distilled into a smaller student backbone, compared with the student
alone and timed against the teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, RegistryOption, TaskOption, console, print_json, progress_console
from zoo.cli.adapt_cmd import RichReporter


def _summary(record: dict[str, Any]) -> None:
    from rich.table import Table

    section = record["distill"]
    speed, gap, alone = section.get("speed_up") or {}, section.get("gap_closed") or {}, section.get("student_alone")
    metric = gap.get("metric") or next(iter(record["metrics"]["best"]))
    table = Table(title=f"{record['backbone']['name']} distilled from {Path(section['teacher']['run']).name} → "
                        f"{record['run_dir']}", title_justify="left")
    for column in ("model", f"val {metric}", f"test {metric}", "latency p50", "throughput"):
        table.add_column(column, justify="left" if column == "model" else "right")
    ours = {"val": record["metrics"]["best"], "test": record["metrics"].get("test")}
    rows = [("teacher", section["teacher"]["metrics"], speed.get("teacher"))]
    if alone is not None:
        rows.append(("student alone", alone["metrics"], None))
    rows.append(("distilled student", ours, speed.get("student")))
    for name, scores, timed in rows:
        cells = [fmt.metric((scores.get(split) or {}).get(metric)) for split in ("val", "test")]
        timing = ([f"{timed['latency_p50_ms']:.2f} ms", f"{timed['throughput_per_s']:.1f}/s"] if timed
                  else [fmt.MISSING, fmt.MISSING])
        table.add_row(name, *cells, *timing)
    out = console()
    out.print(table)
    closed = ", ".join(f"{gap[split]:.2f} ({split})" for split in ("val", "test") if gap.get(split) is not None)
    out.print(f"gap closed: {closed or 'not measured'}", markup=False, highlight=False)
    for note in gap.get("notes") or []:
        out.print(f"  {note}", markup=False, highlight=False)
    if speed.get("latency"):
        out.print(f"speed-up on {speed['device']}: {speed['latency']:.2f}x lower latency, "
                  f"{speed['throughput']:.2f}x the throughput", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("distill")
    def distill_command(
        teacher: Annotated[Path, typer.Option(help="The teacher: a finished run's folder (or an ensemble's).",
                                              show_default=False)],
        student: Annotated[str, typer.Option(help="Registry name of the student backbone (a smaller one).",
                                             show_default=False)],
        data: Annotated[str, typer.Option(
            "--data", "-d", help="Training data, as for zoo adapt: a folder of class subfolders, CSV/TSV/JSONL, "
            "or hf:NAME[:config].", show_default=False)],
        temperature: Annotated[float, typer.Option(help="Softens the teacher's and the student's outputs "
                                                   "(T in alpha * T^2 * KL).")] = 5.0,
        alpha: Annotated[float, typer.Option(help="Weight of the teacher's soft targets; 1 - alpha goes to the "
                                             "labels.")] = 0.9,
        baseline: Annotated[str, typer.Option(help="The student alone to compare with: train (same recipe, no "
                                              "teacher, in RUN-alone), none, or a finished run's folder.")] = "train",
        task: TaskOption = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Run directory \\[default: "
                                                    "runs/<data>-<student>-distilled].", show_default=False)] = None,
        val: Annotated[str | None, typer.Option(help="Validation data (default: a stratified split of --data).",
                                                show_default=False)] = None,
        test: Annotated[str | None, typer.Option(help="Test data, evaluated once at the end.",
                                                 show_default=False)] = None,
        strategy: Annotated[str, typer.Option(help="auto (the fine-tuning auto would use), full or lora; linear "
                                              "takes no soft targets.")] = "auto",
        epochs: Annotated[int | None, typer.Option(help="Epochs \\[default: by data size].",
                                                   show_default=False)] = None,
        batch_size: Annotated[int | None, typer.Option(help="Examples per batch \\[default: by data size].",
                                                       show_default=False)] = None,
        lr: Annotated[float | None, typer.Option(help="Peak learning rate \\[default: by strategy].",
                                                 show_default=False)] = None,
        warmup_ratio: Annotated[float | None, typer.Option(help="Share of optimizer steps that warm the learning "
                                                           "rate up.", show_default=False)] = None,
        image_size: Annotated[int | None, typer.Option(help="Images: the student's square input side.",
                                                       show_default=False)] = None,
        precision: Annotated[str, typer.Option(help="auto, bf16, fp16 or fp32.")] = "auto",
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        augment: Annotated[str, typer.Option(help="none, light or strong (images and audio).")] = "light",
        grad_accum: Annotated[int, typer.Option(help="Batches per optimizer step.")] = 1,
        label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the hard-label loss.")] = 0.0,
        class_weights: Annotated[str, typer.Option(help="none, or auto to weigh rare classes up in the "
                                                   "hard-label loss.")] = "none",
        layer_decay: Annotated[float | None, typer.Option(help="full: layer-wise learning-rate decay.",
                                                          show_default=False)] = None,
        patience: Annotated[int | None, typer.Option(help="Stop after this many epochs without improvement "
                                                     "(0: never).", show_default=False)] = None,
        metric: Annotated[str | None, typer.Option(help="Metric to select and stop on.",
                                                   show_default=False)] = None,
        input_col: Annotated[str | None, typer.Option("--text-col", "--input-col", help="Column with the text (or "
                                                      "file path) in CSV/JSONL data.", show_default=False)] = None,
        label_col: Annotated[str | None, typer.Option(help="Column with the label(s).", show_default=False)] = None,
        multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label", help="Several labels per "
                                                         "example \\[default: detected].",
                                                         show_default=False)] = None,
        label_sep: Annotated[str, typer.Option(help="Separator of several labels in one CSV cell.")] = "|",
        val_fraction: Annotated[float, typer.Option(help="Share of --data held out for validation when no --val "
                                                    "is given.")] = 0.1,
        max_seconds: Annotated[float, typer.Option(help="Audio: clips are cut to this length.")] = 10.0,
        max_length: Annotated[int | None, typer.Option(help="Text: token limit.", show_default=False)] = None,
        compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the student.")] = False,
        skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable files and count them.")] = False,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        checkpoint_every: Annotated[int, typer.Option(help="Optimizer steps between checkpoints.")] = 50,
        explain_card: Annotated[int | None, typer.Option(help="The card's \"How it decides\": examples of each "
                                                         "kind explained (0: none).", show_default=False)] = None,
        no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the runs in the history.")] = False,
        json_output: JsonOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """Distil a teacher run into a smaller student backbone, on adapt's engine: the student learns from the
        teacher's softened logits and the labels, then is compared with the student alone (gap closed) and timed
        against the teacher (speed-up). The student is an ordinary run; resume it with zoo adapt --resume.

        Example: zoo distill --teacher runs/tickets-bert-base --student distilbert-base-uncased --data tickets.csv
        """
        from zoo import api

        progress = progress_console()
        config = api.AdaptConfig(
            strategy=strategy, epochs=epochs, batch_size=batch_size, lr=lr, warmup_ratio=warmup_ratio,
            image_size=image_size, precision=precision, augment=augment, grad_accum=grad_accum,
            label_smoothing=label_smoothing, class_weights=class_weights, layer_decay=layer_decay,
            patience=patience, metric=metric, max_seconds=max_seconds, max_length=max_length, compile=compile_model,
            seed=seed, checkpoint_every=checkpoint_every, explain_card=explain_card)
        record = api.distill(teacher, student, data, temperature=temperature, alpha=alpha, baseline=baseline,
                             config=config, output=output, store=not no_store, task=task, val=val, test=test,
                             input_col=input_col, label_col=label_col, label_sep=label_sep,
                             multi_label=multi_label, val_fraction=val_fraction, skip_bad=skip_bad, device=device,
                             registry_files=registry or (),
                             reporter=RichReporter(progress) if progress is not None else None)
        if json_output:
            print_json(record)
        else:
            _summary(record)
