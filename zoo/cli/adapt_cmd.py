"""`zoo adapt`: fine-tune a backbone on your data; `--resume` finishes an interrupted run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, RegistryOption, TaskOption, console, print_json, progress_console
from zoo.errors import InvalidInputError

# An epoch that waited this share of its time for batches says so (the engine records the share of every epoch).
DATA_WAIT_SAID = 0.1


class RichReporter:
    """Draws the engine's progress with rich: a bar per epoch with loss and samples/s, a line per epoch (on the
    console given: stderr, from the command)."""

    def __init__(self, out=None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = out or console()
        self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:.1f}/s"),
                                 TimeRemainingColumn(), console=self.console, transient=True)
        self.task_id: Any = None
        self.batches = 0

    def start(self, *, epochs: int, batches_per_epoch: int, first_epoch: int, first_batch: int) -> None:
        self.batches = batches_per_epoch
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=batches_per_epoch, completed=first_batch,
                                              epoch=f"{first_epoch + 1}/{epochs}", loss=0.0, speed=0.0)
        self.epochs = epochs

    def step(self, *, epoch: int, batch: int, loss: float, samples_per_s: float) -> None:
        self.progress.update(self.task_id, completed=batch, epoch=f"{epoch + 1}/{self.epochs}", loss=loss,
                             speed=samples_per_s)

    def epoch_end(self, record: dict[str, Any]) -> None:
        val = ", ".join(f"{k} {v:.4f}" for k, v in record["val"].items())
        mark = " [green]best[/green]" if record["best"] else ""
        waited = record.get("data_wait") or 0.0
        # Said only where loading holds training back, with the option that changes it.
        wait = f", waited {waited:.0%} of the time for data (--workers)" if waited >= DATA_WAIT_SAID else ""
        self.progress.console.print(f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, {val}{mark}{wait}")
        # reset() replaces every field, so all of them are given again.
        self.progress.reset(self.task_id, total=self.batches, completed=0,
                            epoch=f"{min(record['epoch'] + 1, self.epochs)}/{self.epochs}",
                            loss=record["train_loss"] or 0.0, speed=record["samples_per_s"] or 0.0)

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")

    def stop(self) -> None:
        self.progress.stop()


def _summary(record: dict[str, Any]) -> None:
    from rich.table import Table

    from zoo import api

    metrics = record["metrics"]
    table = Table(title=f"{record['backbone']['name']} → {record['run_dir']}", title_justify="left")
    table.add_column("split")
    names = api.get_task(record["task"]).reported_metrics(record["multi_label"])
    for name in names:
        table.add_column(name, justify="right")
    for split, values in (("validation (best epoch)", metrics["best"]), ("test", metrics.get("test"))):
        if values:
            table.add_row(split, *[fmt.metric(values[n]) for n in names])
    out = console()
    out.print(table)
    out.print(_choices_line(record), markup=False, highlight=False)
    fit = record.get("head_fit") or {}
    pooling = f" on the {fit['pooling']} pooling" if fit.get("pooling", "native") != "native" else ""
    how = (f"head solved with L2 {fit['l2']:g}{pooling}" if fit.get("solver") == "lbfgs"
           else f"best epoch {record['best_epoch']} of {len(metrics['epochs'])}")
    soup = record.get("soup")
    if soup and soup.get("ingredients"):
        how += (f", soup of {', '.join(soup['kept'])} ({soup['metric']} {fmt.metric(soup['score'])} against "
                f"{fmt.metric(soup['best_ingredient'])})")
    out.print(f"{how}, {record['wall_s']:.1f} s; files: {', '.join(record['files'])}")
    data_line = _data_line(record.get("data") or {})
    if data_line:
        out.print(data_line, markup=False, highlight=False)


def _choices_line(record: dict[str, Any]) -> str:
    """The strategy and the main values used, each marked when the person set it: the full rules are in the run
    record (`choices`) and the model card."""
    names = {"epochs": "epochs", "lr": "lr", "batch_size": "batch size", "warmup_ratio": "warm-up",
             "patience": "patience", "image_size": "image size"}
    choices = record.get("choices") or {}
    strategy = choices.get("strategy") or {"rule": record.get("strategy_reason", "")}
    values = [f"{shown} {choices[name]['value']}" + (" (set)" if choices[name]["set"] else "")
              for name, shown in names.items() if name in choices]
    return f"strategy {record['strategy']} ({strategy['rule']}): " + ", ".join(values)


def _data_line(data: dict[str, Any]) -> str:
    """What the data readers chose and left out, in one line: columns per split, skipped and ignored files."""
    parts = []
    seen: dict[str, list[str]] = {}
    for split, columns in (data.get("columns") or {}).items():
        shown = ", ".join(f"{role} {column!r}" for role, column in columns.items())
        seen.setdefault(shown, []).append(split)
    for shown, splits in seen.items():
        parts.append(f"columns {shown}" + ("" if len(seen) == 1 else f" ({', '.join(splits)})"))
    if data.get("skipped"):
        parts.append(f"{data['skipped']} bad item(s) skipped")
    ignored = data.get("ignored_files") or {}
    if ignored.get("count"):
        more = ", ..." if ignored["count"] > len(ignored["examples"]) else ""
        parts.append(f"{ignored['count']} file(s) ignored for their extension "
                     f"({', '.join(ignored['examples'])}{more})")
    return "data: " + "; ".join(parts) if parts else ""


def register(app: typer.Typer) -> None:
    @app.command("adapt")
    def adapt_command(
        backbone: Annotated[str | None, typer.Argument(help="Registry name of the backbone.",
                                                          show_default=False)] = None,
        data: Annotated[str | None, typer.Option(
            "--data", "-d", help="Training data: image/audio folder of class subfolders, CSV/TSV/JSONL, "
            "or hf:NAME[:config].", show_default=False)] = None,
        task: TaskOption = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Run directory \\[default: "
                                                       "runs/<data>-<backbone>].", show_default=False)] = None,
        val: Annotated[str | None, typer.Option(help="Validation data (default: a stratified split of "
                                                   "--data).", show_default=False)] = None,
        test: Annotated[str | None, typer.Option(help="Test data, evaluated once at the end.",
                                                    show_default=False)] = None,
        strategy: Annotated[str, typer.Option(help="auto, linear (head solved to convergence on cached "
                                                 "features), lora or full.")] = "auto",
        epochs: Annotated[int | None, typer.Option(help="Epochs \\[default: by strategy]; linear solves its head "
                                                      "instead and ignores it.",
                                                      show_default=False)] = None,
        batch_size: Annotated[int | None, typer.Option(help="Examples per batch \\[default: 32].",
                                                          show_default=False)] = None,
        lr: Annotated[float | None, typer.Option(help="Peak learning rate \\[default: by "
                                                    "strategy]; not used by linear's solver.",
                                                    show_default=False)] = None,
        warmup_ratio: Annotated[float | None, typer.Option(help="Share of optimizer steps that warm the learning "
                                                           "rate up \\[default: 0.06].", show_default=False)] = None,
        image_size: Annotated[int | None, typer.Option(help="Images: train, evaluate and save at this square "
                                                          "side, e.g. 32 for 32x32 data \\[default: the "
                                                          "backbone's].", show_default=False)] = None,
        precision: Annotated[str, typer.Option(help="auto, bf16, fp16 or fp32.")] = "auto",
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        augment: Annotated[str, typer.Option(help="none, light or strong (images and audio).")] = "light",
        grad_accum: Annotated[int, typer.Option(help="Batches per optimizer step.")] = 1,
        label_smoothing: Annotated[float, typer.Option(help="Label smoothing for single-label tasks.")] = 0.0,
        class_weights: Annotated[str, typer.Option(help="none, or auto to weigh rare classes up.")] = "none",
        layer_decay: Annotated[float | None, typer.Option(
            help="full: layer-wise learning-rate decay, e.g. 0.75.", show_default=False)] = None,
        weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not on biases and norms).")] = 0.01,
        lora_r: Annotated[int, typer.Option(help="lora: rank of the adapters.")] = 8,
        lora_alpha: Annotated[int, typer.Option(help="lora: scale of the adapters (their output is multiplied by "
                                                "alpha / rank).")] = 16,
        patience: Annotated[int | None, typer.Option(help="Stop after this many epochs without improvement "
                                                     "(0: never) \\[default: 3]; not used by linear's solver.",
                                                     show_default=False)] = None,
        metric: Annotated[str | None, typer.Option(help="Metric to select and stop on \\[default: accuracy, "
                                                      "or micro_f1 for multi-label].", show_default=False)] = None,
        input_col: Annotated[str | None, typer.Option("--text-col", "--input-col", help="Column with the "
                             "text (or file path) in CSV/JSONL data.", show_default=False)] = None,
        label_col: Annotated[str | None, typer.Option(help="Column with the label(s).",
                                                         show_default=False)] = None,
        multi_label: Annotated[bool | None, typer.Option("--multi-label/--single-label", help="Several "
                               "labels per example \\[default: detected].", show_default=False)] = None,
        label_sep: Annotated[str, typer.Option(help="Separator of several labels in one CSV cell.")] = "|",
        val_fraction: Annotated[float, typer.Option(help="Share of --data held out for validation when no "
                                                    "--val is given.")] = 0.1,
        max_seconds: Annotated[float, typer.Option(help="Audio: clips are cut to this length.")] = 10.0,
        max_length: Annotated[int | None, typer.Option(help="Text: token limit \\[default: the backbone's].",
                                                          show_default=False)] = None,
        compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
        skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable files and count them, "
                                               "instead of stopping.")] = False,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        checkpoint_every: Annotated[int, typer.Option(help="Optimizer steps between checkpoints (there is "
                                                      "one at every epoch end too).")] = 50,
        soup_top_k: Annotated[int | None, typer.Option(
            help="Keep the K best epochs (2 to 20) and end with their greedy weight soup on validation, never "
                 "below the best epoch (full and lora) \\[default: off].", show_default=False)] = None,
        explain_card: Annotated[int | None, typer.Option(
            help="The model card's \"How it decides\": explain this many of the most confident correct and of the "
                 "wrong validation predictions (0: none) \\[default: 3, within a tenth of the training time].",
            show_default=False)] = None,
        workers: Annotated[str, typer.Option(help="Processes that decode and augment the data beside training "
                                             "(0: none), or auto: for images and audio being fine-tuned, as many as "
                                             "the cores spare; never for cached features or text.")] = "auto",
        processes: Annotated[int | None, typer.Option(
            help="Train data-parallel in this many processes on this machine (gloo on CPUs, NCCL on GPUs) "
                 "\\[default: 1; on --resume, the run's own].", show_default=False)] = None,
        nodes: Annotated[int | None, typer.Option(
            help="Train on this many machines, --processes on each; run the same command on every one, with "
                 "--output on a shared file system and the data at the same path (docs/adapt.md).",
            show_default=False)] = None,
        node_rank: Annotated[int | None, typer.Option(
            help="With --nodes: this machine's place, 0 on the one at --master-addr, then 1, 2...",
            show_default=False)] = None,
        master_addr: Annotated[str | None, typer.Option(
            help="With --nodes: the address of the --node-rank 0 machine, reachable from every machine.",
            show_default=False)] = None,
        master_port: Annotated[int | None, typer.Option(
            help="With --nodes: the port the machines meet at on --master-addr, open to the others "
                 "\\[default: 29500].", show_default=False)] = None,
        resume: Annotated[Path | None, typer.Option(help="Finish the interrupted run in this directory.",
                                                       show_default=False)] = None,
        no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the run in the history.")] = False,
        json_output: JsonOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """Fine-tune a backbone on your data and write a run directory that loads without zoo.

        Example: zoo adapt distilbert-base-uncased --data tickets.csv --strategy lora
        \n\nExample: zoo adapt --resume runs/tickets-distilbert-base-uncased
        \n\nExample: zoo adapt tiny-bert --data /mnt/d.csv -o /mnt/run --nodes 2 --node-rank 0 --master-addr 10.0.0.1
        """
        from zoo import api

        progress = progress_console() if int(os.environ.get("RANK", "0")) == 0 else None
        reporter = RichReporter(progress) if progress is not None else None
        if resume is not None:
            record = api.resume(resume, reporter=reporter, store=not no_store, processes=processes, nodes=nodes,
                                node_rank=node_rank, master_addr=master_addr, master_port=master_port)
        else:
            if backbone is None or data is None:
                raise InvalidInputError("give a BACKBONE and --data (or --resume RUN_DIR); "
                                        "see 'zoo adapt --help'")
            config = api.AdaptConfig(
                strategy=strategy, epochs=epochs, batch_size=batch_size, lr=lr, warmup_ratio=warmup_ratio,
                image_size=image_size, precision=precision, augment=augment, grad_accum=grad_accum,
                label_smoothing=label_smoothing, class_weights=class_weights, layer_decay=layer_decay,
                weight_decay=weight_decay, lora_r=lora_r, lora_alpha=lora_alpha,
                patience=patience, metric=metric, max_seconds=max_seconds, max_length=max_length,
                compile=compile_model, seed=seed, checkpoint_every=checkpoint_every, explain_card=explain_card,
                soup_top_k=soup_top_k, workers=workers)
            record = api.adapt(backbone, data, task=task, output=output, val=val, test=test,
                               input_col=input_col, label_col=label_col, label_sep=label_sep,
                               multi_label=multi_label, val_fraction=val_fraction, skip_bad=skip_bad,
                               device=device, config=config, registry_files=registry or (), reporter=reporter,
                               store=not no_store, processes=1 if processes is None else processes,
                               nodes=1 if nodes is None else nodes, node_rank=node_rank, master_addr=master_addr,
                               master_port=master_port)
        if int(os.environ.get("RANK", "0")) != 0:
            return   # under accelerate launch, rank 0 speaks for the run
        if json_output:
            print_json(record)
        else:
            _summary(record)
