"""`zoo runs`: the history of adapt runs (list, show one, compare several), read from the run store."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.cli._common import JsonOption, TaskOption, console, handle_errors, print_json

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", envvar="ZOO_STORE", show_default=False, dir_okay=False,
                 help="Run history database (SQLite); default: ~/.cache/zoo/runs.sqlite (or under XDG_CACHE_HOME)."),
]
_STATUS_STYLE = {"finished": "green", "running": "yellow", "failed": "red"}


def register(app: typer.Typer) -> None:
    runs_app = typer.Typer(
        help="List recorded adapt runs, newest first; 'zoo runs show ID' and 'zoo runs compare ID ID' go deeper."
             "\n\nExample: zoo runs --task text-cls --status finished --limit 10",
        invoke_without_command=True,
        no_args_is_help=False,
        rich_markup_mode="rich",
    )

    @runs_app.callback(invoke_without_command=True)
    def runs_command(
        ctx: typer.Context,
        task: TaskOption = None,
        backbone: Annotated[str | None, typer.Option(
            "--backbone", "-b", help="Only runs of this backbone (a name or a wildcard such as 'convnext*').",
            show_default=False)] = None,
        status: Annotated[str | None, typer.Option(
            "--status", "-s", help="Only runs with this status: running, finished or failed.",
            show_default=False)] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Show at most this many runs (0: all).")
                         ] = 50,
        json_output: JsonOption = False,
        store: StoreOption = None,
    ) -> None:
        """List recorded adapt runs, newest first; 'zoo runs show ID' and 'zoo runs compare ID ID' go deeper.

        Example: zoo runs --task text-cls --status finished --limit 10
        """
        ctx.obj = {"store": store, "json": json_output}
        if ctx.invoked_subcommand is not None:
            return
        with handle_errors():
            run_store = _open(store)
            runs = run_store.list_runs(task=task, backbone=backbone, status=status, limit=limit)
        if json_output:
            print_json([run.to_dict() for run in runs])
            return
        _print_list(runs, run_store.path, filtered=bool(task or backbone or status))

    @runs_app.command("show")
    def show_command(
        ctx: typer.Context,
        run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id, as listed by 'zoo runs'.")],
        json_output: JsonOption = False,
        store: StoreOption = None,
    ) -> None:
        """Show one run: backbone, data, configuration, best and test metrics, and metrics per epoch.

        Example: zoo runs show 3
        """
        store, json_output = _inherit(ctx, store, json_output)
        with handle_errors():
            history = _open(store)
            record = history.get_run(run_id)
            if record.get("run_dir"):
                record["pushes"] = history.list_pushes(run_dir=record["run_dir"])
        if json_output:
            print_json(record)
            return
        _print_run(record)

    @runs_app.command("compare")
    def compare_command(
        ctx: typer.Context,
        run_ids: Annotated[list[int], typer.Argument(
            metavar="ID", help="Two or more run ids, as listed by 'zoo runs'.")],
        json_output: JsonOption = False,
        store: StoreOption = None,
    ) -> None:
        """Compare runs: metrics side by side (best per row highlighted), then what differs between them.

        Example: zoo runs compare 3 7 12
        """
        store, json_output = _inherit(ctx, store, json_output)
        with handle_errors():
            comparison = _open(store).compare(run_ids)
        if json_output:
            print_json(comparison.to_dict())
            return
        _print_comparison(comparison)

    app.add_typer(runs_app, name="runs")


def _open(store: Path | None):
    from zoo import api

    return api.run_history(store)


def _inherit(ctx: typer.Context, store: Path | None, json_output: bool) -> tuple[Path | None, bool]:
    """Options given before the subcommand (`zoo runs --store X show 3`) count as well as those after it."""
    parent = ctx.obj or {}
    return store or parent.get("store"), json_output or bool(parent.get("json"))


# --- Rendering --------------------------------------------------------------------------------------------------


def _print_list(runs, path: Path, *, filtered: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    if not runs:
        what = "No runs match these filters" if filtered else "No runs recorded yet"
        out.print(f"{what} in {escape(str(path))}. Every 'zoo adapt' run is recorded there.")
        return
    metric_names = {run.main_metric for run in runs}
    shared_metric = next(iter(metric_names)) if len(metric_names) == 1 else None
    table = Table(title=f"{len(runs)} runs ({escape(_home(path))})", title_justify="left")
    for column, justify in (("id", "right"), ("status", "left"), ("task", "left"), ("backbone", "left"),
                            ("strategy", "left"), (shared_metric or "main metric", "right"),
                            ("macro-F1", "right"), ("started", "left"), ("wall", "right"), ("run dir", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for run in runs:
        main = _fmt(run.main_value)
        if shared_metric is None and run.main_value is not None:
            main += f" {run.main_metric}"
        table.add_row(str(run.id), _status(run.status), escape(run.task or ""), escape(run.backbone or ""),
                      escape(run.strategy or ""), main, _fmt(run.macro_f1), _when(run.started_at),
                      _duration(run.wall_s), escape(_home(run.run_dir)))
    out.print(table)


def _print_run(record: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from zoo.api import flatten_config, main_metric

    out = console()
    backbone = record.get("backbone")
    backbone = backbone if isinstance(backbone, dict) else {"name": backbone}
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    sizes = data.get("sizes") if isinstance(data.get("sizes"), dict) else {}
    labels = data.get("labels")

    facts = Table(show_header=False, box=None, padding=(0, 2), title_justify="left",
                  title=f"run {record.get('id')}  {_status(record.get('status'))}")
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    rows = [
        ("run dir", record.get("run_dir")),
        ("task", record.get("task")),
        ("backbone", " ".join(str(part) for part in (
            backbone.get("name"), f"({backbone['family']})" if backbone.get("family") else None,
            f"from {backbone['source']}" if backbone.get("source") and backbone.get("source") != backbone.get("name")
            else None) if part)),
        ("strategy", record.get("strategy")),
        ("started", _when(record.get("started_at"))),
        ("finished", _when(record.get("finished_at")) if record.get("finished_at") else None),
        ("wall time", _duration(record.get("wall_s")) if record.get("wall_s") is not None else None),
        ("data", data.get("source")),
        ("examples", ", ".join(f"{split} {sizes[split]}" for split in ("train", "val", "test") if split in sizes)),
        ("labels", (f"{len(labels)}" + (" (multi-label)" if data.get("multi_label") else ""))
         if isinstance(labels, list) else None),
        ("data fingerprint", data.get("fingerprint")),
        ("best epoch", record.get("best_epoch")),
        ("error", record.get("error")),
        *[("published", f"{push['url']} at commit {push['commit'][:12]} "
                        f"({'private' if push.get('private') else 'public'}, {_when(push.get('created_at'))})")
          for push in record.get("pushes") or []],
    ]
    for key, value in rows:
        if value not in (None, ""):
            facts.add_row(key, escape(str(value)))
    out.print(facts)

    best = _scalars(metrics.get("best"))
    test = _scalars(metrics.get("test"))
    if best or test:
        main = main_metric(record)
        table = Table(title="metrics", title_justify="left")
        table.add_column("metric")
        table.add_column("best (validation)", justify="right")
        if test:
            table.add_column("test", justify="right")
        for name in dict.fromkeys([*best, *test]):
            label = f"[bold]{escape(name)}[/bold]" if name == main else escape(name)
            table.add_row(label, _fmt(best.get(name)), *([_fmt(test.get(name))] if test else []))
        out.print(table)

    epochs = [e for e in (metrics.get("epochs") or []) if isinstance(e, dict)]
    if epochs:
        flat = [_scalars(_flatten_one(epoch)) for epoch in epochs]
        columns = [c for c in dict.fromkeys(name for row in flat for name in row) if c != "epoch"]
        table = Table(title="per epoch", title_justify="left")
        table.add_column("epoch", justify="right")
        for column in columns:
            table.add_column(escape(column), justify="right")
        for index, (epoch, row) in enumerate(zip(epochs, flat, strict=True), start=1):
            number = epoch.get("epoch", index)
            style = "bold green" if record.get("best_epoch") is not None and number == record.get("best_epoch") \
                else None
            table.add_row(str(number), *(_fmt(row.get(column)) for column in columns), style=style)
        out.print(table)

    config = flatten_config(record.get("config") or {})
    if config:
        table = Table(title="config", title_justify="left", show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in config.items():
            table.add_row(escape(key), escape(_value(value)))
        out.print(table)


def _print_comparison(comparison) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    ids = comparison.run_ids
    headers = [f"run {run.id}\n{escape(run.backbone or '')}" for run in comparison.runs]

    def metric_table(title: str, values: dict[str, list[float | None]], best: dict[str, list[int]]) -> Table:
        table = Table(title=title, title_justify="left", caption="* best in its row", caption_justify="left")
        table.add_column("metric")
        for header in headers:
            table.add_column(header, justify="right", overflow="fold")
        for name, row in values.items():
            present = [v for v in row if v is not None]
            winners = set(best.get(name, ()))
            if len(present) < 2 or len(winners) == len(present):  # nothing to choose between
                winners = set()
            cells = [f"[bold green]{_fmt(v)} *[/bold green]" if run_id in winners else _fmt(v)
                     for run_id, v in zip(ids, row, strict=True)]
            table.add_row(escape(name), *cells)
        return table

    if comparison.metrics:
        out.print(metric_table("best metrics (validation)", comparison.metrics, comparison.best))
    else:
        out.print("[yellow]None of these runs has recorded metrics yet.[/yellow]")
    if comparison.test_metrics:
        out.print(metric_table("test metrics", comparison.test_metrics, comparison.test_best))

    differing = set(comparison.differing_facts)
    facts = Table(title="runs", title_justify="left")
    facts.add_column("")
    for header in headers:
        facts.add_column(header, overflow="fold")
    for key, values in comparison.facts.items():
        shown = [_duration(v) if key == "wall_s" else _value(v) for v in values]
        if key == "data fingerprint":
            shown = [v[:12] for v in shown]
        label = "wall time" if key == "wall_s" else key
        if key in differing and key != "wall_s":
            label = f"[yellow]{label}[/yellow]"
        facts.add_row(label, *(escape(v) for v in shown))
    out.print(facts)

    if comparison.config:
        table = Table(title="config differences", title_justify="left")
        table.add_column("key")
        for header in headers:
            table.add_column(header, overflow="fold")
        for key, values in comparison.config.items():
            table.add_row(escape(key), *(escape(_value(v)) for v in values))
        out.print(table)
    else:
        out.print("[dim]Same configuration in every run.[/dim]")
    if not comparison.same_data:
        out.print("[yellow]The runs did not use the same data (data fingerprints differ or are missing), "
                  "so their metrics are not directly comparable.[/yellow]")


# --- Formatting -------------------------------------------------------------------------------------------------


def _status(status: Any) -> str:
    from rich.markup import escape

    text = escape(str(status or "?"))
    style = _STATUS_STYLE.get(str(status))
    return f"[{style}]{text}[/{style}]" if style else text


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value and abs(value) < 1e-3:          # learning rates
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "[]"
    return str(value)


def _when(iso: Any) -> str:
    if not iso:
        return "—"
    try:
        return datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(iso)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _home(path: Any) -> str:
    text, home = str(path), os.path.expanduser("~")
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home):]
    return text


def _scalars(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    return {str(k): v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _flatten_one(entry: dict[str, Any]) -> dict[str, Any]:
    """One epoch's entry with nested dicts one level down named ``part.metric`` (``val.accuracy``)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out

