"""`zoo runs`: the history of adapt runs (list, show one, compare several), read from the run store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, TaskOption, WideOption, console, print_json
from zoo.cli._table import Column, fit_table

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
        study: Annotated[str | None, typer.Option(
            "--study", help="Only the trials of this zoo tune study (its name, as zoo tune prints it).",
            show_default=False)] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Show at most this many runs (0: all).")
                         ] = 50,
        json_output: JsonOption = False,
        wide: WideOption = False,
        store: StoreOption = None,
    ) -> None:
        """List recorded adapt runs, newest first; 'zoo runs show ID' and 'zoo runs compare ID ID' go deeper.

        Example: zoo runs --task text-cls --status finished --limit 10
        """
        ctx.obj = {"store": store, "json": json_output}
        if ctx.invoked_subcommand is not None:
            return
        from zoo import api

        listing = api.list_runs(task=task, backbone=backbone, status=status, study=study, limit=limit, store=store)
        if json_output:
            print_json([run.to_dict() for run in listing.runs])
            return
        _print_list(listing, wide=wide)

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
        from zoo import api

        store, json_output = _inherit(ctx, store, json_output)
        detail = api.run_details(run_id, store=store)
        if json_output:
            print_json(detail.to_dict())
            return
        _print_run(detail)

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
        from zoo import api

        store, json_output = _inherit(ctx, store, json_output)
        comparison = api.compare_runs(run_ids, store=store)
        if json_output:
            print_json(comparison.to_dict())
            return
        _print_comparison(comparison)

    app.add_typer(runs_app, name="runs")


def _inherit(ctx: typer.Context, store: Path | None, json_output: bool) -> tuple[Path | None, bool]:
    """Options given before the subcommand (`zoo runs --store X show 3`) count as well as those after it."""
    parent = ctx.obj or {}
    return store or parent.get("store"), json_output or bool(parent.get("json"))


# --- Rendering --------------------------------------------------------------------------------------------------


def _print_list(listing, *, wide: bool) -> None:
    from rich.markup import escape

    out = console()
    runs = listing.runs
    if not runs:
        what = "No runs match these filters" if listing.filtered else "No runs recorded yet"
        out.print(f"{what} in {escape(listing.store)}. Every 'zoo adapt' run is recorded there.")
        return
    metric_names = {run.main_metric for run in runs}
    shared_metric = next(iter(metric_names)) if len(metric_names) == 1 else None
    # Best-epoch values: measured on the validation split, as the header says.
    columns = [Column("id", "right"), Column("status"), Column("task", hide=3), Column("backbone"),
               Column("strategy", hide=4), Column(f"val {shared_metric or 'main metric'}", "right"),
               Column("val macro-F1", "right", hide=5), Column("started", hide=2), Column("wall", "right", hide=6),
               Column("run dir", wrap=True, hide=1, min_width=20)]
    rows = []
    for run in runs:
        main = fmt.metric(run.main_value) if run.main_value is not None else fmt.MISSING
        if shared_metric is None and run.main_value is not None:
            main += f" {run.main_metric}"
        rows.append([str(run.id), _status(run.status), escape(run.task or ""), escape(run.backbone or ""),
                     escape(run.strategy or ""), main, fmt.metric(run.macro_f1), fmt.when(run.started_at),
                     fmt.duration(run.wall_s), escape(fmt.home(run.run_dir))])
    fit_table(columns, rows, width=out.width, wide=wide,
              title=f"{len(runs)} runs ({escape(fmt.home(listing.store))})").print(out)


def _print_run(run) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    facts = Table(show_header=False, box=None, padding=(0, 2), title_justify="left",
                  title=f"run {run.id}  {_status(run.status)}")
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    rows = [
        ("run dir", run.run_dir),
        ("task", run.task),
        ("backbone", " ".join(part for part in (
            run.backbone, f"({run.family})" if run.family else None,
            f"from {run.source}" if run.source else None) if part)),
        ("strategy", run.strategy),
        ("started", fmt.when(run.started_at)),
        ("finished", fmt.when(run.finished_at) if run.finished_at else None),
        ("wall time", fmt.duration(run.wall_s) if run.wall_s is not None else None),
        ("data", run.data_source),
        ("examples", ", ".join(f"{split} {count}" for split, count in run.sizes.items())),
        ("labels", f"{run.num_labels}" + (" (multi-label)" if run.multi_label else "")
         if run.num_labels is not None else None),
        ("data fingerprint", run.data_fingerprint),
        ("best epoch", run.best_epoch),
        ("error", run.error),
        *[("published", f"{push['url']} at commit {push['commit'][:12]} "
                        f"({'private' if push.get('private') else 'public'}, {fmt.when(push.get('created_at'))})")
          for push in run.pushes],
    ]
    for key, value in rows:
        if value not in (None, ""):
            facts.add_row(key, escape(str(value)))
    out.print(facts)

    if run.best or run.test:
        table = Table(title="metrics", title_justify="left")
        table.add_column("metric")
        table.add_column("best (validation)", justify="right")
        if run.test:
            table.add_column("test", justify="right")
        for name in dict.fromkeys([*run.best, *run.test]):
            label = f"[bold]{escape(name)}[/bold]" if name == run.main_metric else escape(name)
            table.add_row(label, fmt.metric(run.best.get(name)), *([fmt.metric(run.test.get(name))] if run.test
                                                                    else []))
        out.print(table)

    if run.epochs:
        columns = [c for c in dict.fromkeys(name for row in run.epochs for name in row) if c != "epoch"]
        table = Table(title="per epoch", title_justify="left")
        table.add_column("epoch", justify="right")
        for column in columns:
            table.add_column(escape(column), justify="right")
        for row in run.epochs:
            style = "bold green" if run.best_epoch is not None and row["epoch"] == run.best_epoch else None
            table.add_row(str(row["epoch"]), *(fmt.metric(row.get(column)) for column in columns), style=style)
        out.print(table)

    if run.config:
        table = Table(title="config", title_justify="left", show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in run.config.items():
            table.add_row(escape(key), escape(fmt.setting(value)))
        out.print(table)


def _print_comparison(comparison) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    ids = comparison.run_ids
    headers = [f"run {run.id}\n{escape(run.backbone or '')}" for run in comparison.runs]

    def metric_table(title: str, values: dict[str, list[float | None]], *, test: bool) -> Table:
        table = Table(title=title, title_justify="left", caption="* best in its row", caption_justify="left")
        table.add_column("metric")
        for header in headers:
            table.add_column(header, justify="right", overflow="fold")
        for name, row in values.items():
            winners = set(comparison.highlighted(name, test=test))
            cells = [f"[bold green]{fmt.metric(v)} *[/bold green]" if run_id in winners else fmt.metric(v)
                     for run_id, v in zip(ids, row, strict=True)]
            table.add_row(escape(name), *cells)
        return table

    if comparison.metrics:
        out.print(metric_table("best metrics (validation)", comparison.metrics, test=False))
    else:
        out.print("[yellow]None of these runs has recorded metrics yet.[/yellow]")
    if comparison.test_metrics:
        out.print(metric_table("test metrics", comparison.test_metrics, test=True))

    differing = set(comparison.differing_facts)
    facts = Table(title="runs", title_justify="left")
    facts.add_column("")
    for header in headers:
        facts.add_column(header, overflow="fold")
    for key, values in comparison.facts.items():
        shown = [fmt.duration(v) if key == "wall_s" else fmt.setting(v) for v in values]
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
            table.add_row(escape(key), *(escape(fmt.setting(v)) for v in values))
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
