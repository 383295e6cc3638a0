"""`zoo tune`: search a backbone's fine-tuning hyperparameters with Optuna; every trial is an adapt run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, RegistryOption, TaskOption, WideOption, console, print_json, progress_console
from zoo.cli._table import Column, fit_table
from zoo.cli.adapt_cmd import RichReporter

_STATE_STYLE = {"complete": "green", "pruned": "yellow", "running": "cyan", "failed": "red", "interrupted": "dim"}


def register(app: typer.Typer) -> None:
    @app.command("tune")
    def tune_command(
        backbone: Annotated[str, typer.Argument(help="Registry name of the backbone.", show_default=False)],
        data: Annotated[str, typer.Option("--data", "-d", help="Training data, as for zoo adapt.",
                                          show_default=False)],
        trials: Annotated[int, typer.Option(help="Trials in the study, all workers together.")] = 16,
        strategy: Annotated[str, typer.Option(help="full, lora, or auto (the fine-tuning zoo adapt --strategy "
                                              "auto would use).")] = "auto",
        pruner: Annotated[str, typer.Option(help="Stop unpromising trials after an epoch: median, asha "
                                            "(successive halving) or none.")] = "median",
        study: Annotated[str | None, typer.Option(help="Where the study lives: an SQLite file, or an Optuna "
                                                  "storage URL that several machines share \\[default: "
                                                  "OUTPUT/study.db].", show_default=False)] = None,
        timeout_s: Annotated[float | None, typer.Option(help="Start no new trial after this many seconds.",
                                                        show_default=False)] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder of the study's trials "
                                                    "\\[default: runs/<data>-<backbone>-tune]; the same again "
                                                    "continues the study.", show_default=False)] = None,
        seed: Annotated[int, typer.Option(help="Seed of every trial and of the sampler (not searched).")] = 0,
        task: TaskOption = None,
        val: Annotated[str | None, typer.Option(help="Validation data (default: a stratified split of --data).",
                                                show_default=False)] = None,
        test: Annotated[str | None, typer.Option(help="Test data, evaluated once at the end of each trial.",
                                                 show_default=False)] = None,
        input_col: Annotated[str | None, typer.Option("--text-col", "--input-col", help="Column with the text "
                                                      "(or file path) in CSV/JSONL data.", show_default=False)] = None,
        label_col: Annotated[str | None, typer.Option(help="Column with the label(s).", show_default=False)] = None,
        multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label", help="Several labels per "
                                                         "example \\[default: detected].", show_default=False)] = None,
        label_sep: Annotated[str, typer.Option(help="Separator of several labels in one CSV cell.")] = "|",
        val_fraction: Annotated[float, typer.Option(help="Share of --data held out for validation when no --val "
                                                    "is given.")] = 0.1,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        epochs: Annotated[int | None, typer.Option(help="Hold the epochs fixed \\[default: searched, as a scale of "
                                                   "zoo adapt's plan].", show_default=False)] = None,
        lr: Annotated[float | None, typer.Option(help="Hold the learning rate fixed \\[default: searched].",
                                                 show_default=False)] = None,
        weight_decay: Annotated[float | None, typer.Option(help="Hold the weight decay fixed.",
                                                           show_default=False)] = None,
        warmup_ratio: Annotated[float | None, typer.Option(help="Hold the warm-up share fixed.",
                                                           show_default=False)] = None,
        label_smoothing: Annotated[float | None, typer.Option(help="Hold the label smoothing fixed.",
                                                              show_default=False)] = None,
        layer_decay: Annotated[float | None, typer.Option(help="full: hold the layer-wise decay fixed.",
                                                          show_default=False)] = None,
        lora_r: Annotated[int | None, typer.Option(help="lora: hold the rank fixed.", show_default=False)] = None,
        lora_alpha: Annotated[int | None, typer.Option(help="lora: hold alpha fixed.", show_default=False)] = None,
        batch_size: Annotated[int | None, typer.Option(help="Examples per batch \\[default: as zoo adapt].",
                                                       show_default=False)] = None,
        patience: Annotated[int | None, typer.Option(help="Early-stopping patience \\[default: as zoo adapt].",
                                                     show_default=False)] = None,
        metric: Annotated[str | None, typer.Option(help="Metric the study optimises \\[default: accuracy, or "
                                                   "micro_f1 for multi-label].", show_default=False)] = None,
        precision: Annotated[str | None, typer.Option(help="auto, bf16, fp16 or fp32.", show_default=False)] = None,
        image_size: Annotated[int | None, typer.Option(help="Images: square side to train at.",
                                                       show_default=False)] = None,
        max_length: Annotated[int | None, typer.Option(help="Text: token limit.", show_default=False)] = None,
        explain_card: Annotated[int | None, typer.Option(help="The card's \"How it decides\" in each trial "
                                                         "\\[default: 0, none].", show_default=False)] = None,
        no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the trials in the run "
                                               "history.")] = False,
        json_output: JsonOption = False,
        wide: WideOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """Search learning rate, weight decay, warm-up, epochs, label smoothing and layer decay (or LoRA rank and
        alpha) with Optuna's TPE, pruning poor trials per epoch; every trial is a zoo adapt run, the best is
        ready for predict, bench, serve and push. Start the same command in several shells (or machines sharing
        --output and a --study URL) to run trials in parallel; after an interruption, the same command resumes.

        Example: zoo tune distilbert-base-uncased --data tickets.csv --trials 16
        """
        from zoo import api

        given = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "warmup_ratio": warmup_ratio,
                 "label_smoothing": label_smoothing, "layer_decay": layer_decay, "lora_r": lora_r,
                 "lora_alpha": lora_alpha, "batch_size": batch_size, "patience": patience, "metric": metric,
                 "precision": precision, "image_size": image_size, "max_length": max_length,
                 "explain_card": explain_card}
        bars = progress_console()

        def say(text: str) -> None:   # a line per trial on stderr, in a worker's log file too
            if bars is not None:
                bars.print(text, markup=False, highlight=False)
            else:
                typer.echo(text, err=True)

        result = api.tune(backbone, data, task=task, output=output, val=val, test=test, input_col=input_col,
                          label_col=label_col, label_sep=label_sep, multi_label=multi_label,
                          val_fraction=val_fraction, device=device, trials=trials, strategy=strategy, pruner=pruner,
                          study=study, timeout_s=timeout_s, seed=seed,
                          fixed={name: value for name, value in given.items() if value is not None},
                          registry_files=registry or (), reporter=RichReporter(bars) if bars is not None else None,
                          progress=say,
                          store=not no_store)
        if json_output:
            print_json(result.to_dict())
        else:
            _print(result, wide=wide)


def _print(result, *, wide: bool) -> None:
    from rich.markup import escape

    out = console()
    output = Path(result.output)
    counts = ", ".join(f"{n} {state}" for state, n in result.counts.items() if n)
    columns = [Column("trial", justify="right"), Column("state"), Column(result.metric, justify="right"),
               Column("parameters", wrap=True), Column("epochs", justify="right"),
               Column("pruned at", justify="right", hide=2), Column("time", justify="right", hide=1),
               Column("run", wrap=True, hide=3, min_width=12)]
    rows = []
    for row in result.trials:
        state = f"[{_STATE_STYLE.get(row.state, 'white')}]{row.state}[/]"
        run = escape(_relative(row.run_dir, output)) if row.run_dir else fmt.MISSING
        rows.append([str(row.number), state, fmt.metric(row.value), escape(_params(row.params)),
                     fmt.setting(row.epochs_run), fmt.setting(row.pruned_at_epoch), fmt.duration(row.seconds), run])
    title = (f"{result.study}: {result.strategy} fine-tuning of {result.backbone}, {counts or 'no trials'} "
             f"(validation {result.metric}, {result.direction})")
    fit_table(columns, rows, width=out.width, wide=wide, title=escape(title)).print(out)
    if result.best is not None:
        out.print(f"best: trial {result.best.number}, validation {result.metric} {fmt.metric(result.best.value)}: "
                  f"{escape(fmt.home(result.best.run_dir))}", highlight=False)
    if result.importances:
        ranked = ", ".join(f"{name} {share:.2f}" for name, share in result.importances.items())
        out.print(f"importance: {escape(ranked)} [dim]({escape(result.importance_note)})[/dim]", highlight=False)
    elif result.importance_note:
        out.print(f"[dim]importance: {escape(result.importance_note)}[/dim]")
    out.print(f"[dim]study in {escape(result.storage)}; this worker: {escape(result.stopped)}[/dim]", highlight=False)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{name} {fmt.metric(value) if isinstance(value, float) else value}"
                     for name, value in params.items())


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return path
