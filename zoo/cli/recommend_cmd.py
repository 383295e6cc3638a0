"""`zoo recommend`: a short, reasoned list of backbones that fit a scenario."""

from __future__ import annotations

from typing import Annotated

import typer

from zoo.cli._common import JsonOption, RegistryOption, TaskOption, console, handle_errors, print_json


def register(app: typer.Typer) -> None:
    @app.command("recommend")
    def recommend_command(
        task: TaskOption = None,
        device: Annotated[str | None, typer.Option(help="Where the model will run: cpu or cuda \\[default: cpu].",
                                                      show_default=False)] = None,
        max_latency_ms: Annotated[float | None, typer.Option(
            help="Batch-1 latency budget in milliseconds (estimated from FLOPs).", show_default=False)] = None,
        max_params: Annotated[str | None, typer.Option(
            help="Parameter budget, in millions or with a unit: 50, 50M, 1.5B.", show_default=False)] = None,
        max_memory_gb: Annotated[str | None, typer.Option(
            help="Inference memory budget: 2, 2GB, 512MB.", show_default=False)] = None,
        language: Annotated[str | None, typer.Option(
            help="Language of the data (ISO 639-1, e.g. en, de), or 'multilingual'.", show_default=False)] = None,
        license: Annotated[list[str] | None, typer.Option(
            "--license", help="Accepted licence (repeatable or comma-separated); 'permissive' = commercial use.",
            show_default=False)] = None,
        examples: Annotated[int | None, typer.Option(
            "--examples", help="Number of labelled examples you have (shapes the suggested strategy).",
            show_default=False)] = None,
        scenario: Annotated[str | None, typer.Option(
            help="Free-text description, parsed into the constraints above (explicit options win).",
            show_default=False)] = None,
        top: Annotated[int, typer.Option(help="How many candidates to show.")] = 5,
        json_output: JsonOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """Recommend backbones for a task, filtered by hard constraints and ranked without data.

        Example: zoo recommend --task text-cls --device cpu --max-latency-ms 20
        \n\nExample: zoo recommend --scenario "classify support tickets in German, 2k examples, 20 ms on a laptop CPU"
        """
        from zoo import api
        from zoo.recommend.constraints import parse_size

        with handle_errors():
            licenses = [item for value in (license or ()) for item in value.split(",") if item.strip()]
            result = api.recommend(
                task, device=device, max_latency_ms=max_latency_ms,
                max_params_m=parse_size(max_params, unit="params") if max_params else None,
                max_memory_gb=parse_size(max_memory_gb, unit="memory") if max_memory_gb else None,
                language=language, licenses=licenses, num_examples=examples, scenario=scenario, top=top,
                registry_files=registry or ())
        if json_output:
            print_json(result.to_dict())
            return
        _print(result)


def _print(result) -> None:
    from rich.table import Table

    out = console()
    if result.scenario:
        parsed = ", ".join(f"{key}={value!r} (from \"{result.scenario.evidence[key]}\")"
                           for key, value in result.scenario.values.items()) or "nothing recognised"
        out.print(f"[bold]Scenario parsed as:[/bold] {parsed}")
        out.print("[dim]Correct any of these with the matching option (e.g. --device, --max-latency-ms).[/dim]")
    c = result.constraints
    shown = {"device": c.device, "max latency": f"{c.max_latency_ms:g} ms" if c.max_latency_ms else None,
             "max params": f"{c.max_params_m:g}M" if c.max_params_m else None,
             "max memory": f"{c.max_memory_gb:g} GB" if c.max_memory_gb else None, "language": c.language,
             "licences": ",".join(c.licenses) or None, "examples": c.num_examples}
    out.print(f"[bold]{result.task}[/bold] — " + ", ".join(f"{k}: {v}" for k, v in shown.items() if v))
    profile = result.device_profile
    note = (f"Latency is estimated for the {profile['description']} "
            f"({profile['source']}); real hardware differs.")
    if not result.candidates:
        out.print(f"[yellow]{result.message}[/yellow]")
        table = Table(title="Nearest misses", title_justify="left")
        for column in ("backbone", "est. ms", "params (M)", "what it breaks"):
            table.add_column(column, overflow="fold")
        for miss in result.nearest:
            table.add_row(miss["name"], f"{miss['latency_ms']:.1f}", f"{miss['params_m']:.1f}", miss["reason"])
        out.print(table)
        out.print(f"[dim]{note}[/dim]")
        return
    table = Table(title_justify="left", title=f"Top {len(result.candidates)} (data-free ranking)")
    for column, justify in (("#", "right"), ("backbone", "left"), ("score", "right"), ("est. ms", "right"),
                            ("params (M)", "right"), ("licence", "left"), ("why", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for cand in result.candidates:
        table.add_row(str(cand.rank), cand.name, f"{cand.score:.2f}", f"{cand.latency_ms:.1f}",
                      f"{cand.params_m:.1f}", cand.license, cand.reason)
    out.print(table)
    out.print(f"[dim]{len(result.excluded)} backbones excluded by the constraints (see --json). {note}[/dim]")
    out.print(f"Strategy: [bold]{result.strategy}[/bold] — {result.strategy_reason}")
    out.print(f"Next: [bold]{result.candidates[0].next_command}[/bold]")
