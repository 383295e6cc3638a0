"""`zoo recommend`: a short, reasoned list of backbones that fit a scenario."""

from __future__ import annotations

from typing import Annotated

import typer

from zoo.cli._common import JsonOption, RegistryOption, TaskOption, WideOption, console, print_json, progress_console
from zoo.cli._table import Column, fit_table


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
        data: Annotated[str | None, typer.Option(
            help="Your labelled data (as for zoo adapt): score the shortlist on a sample of it and re-rank.",
            show_default=False)] = None,
        sample: Annotated[int, typer.Option(help="With --data: examples to sample, stratified by class.")] = 1000,
        shortlist: Annotated[int, typer.Option(help="With --data: how many data-free candidates to score.")] = 5,
        candidates: Annotated[str | None, typer.Option(
            "--candidates", help="With --data: score these backbones (comma-separated) instead of the data-free "
            "shortlist.", show_default=False)] = None,
        budget_s: Annotated[float, typer.Option("--budget-s", help="With --data: time budget for feature "
                                                "extraction, in seconds; backbones not reached are listed as "
                                                "not scored.")] = 600.0,
        layers: Annotated[str, typer.Option(help="With --data: pool the last layer, or the mean over layers "
                                            "(families that have layers: text and audio).")] = "mean",
        bootstrap: Annotated[int, typer.Option(help="With --data: subsamples for the uncertainty intervals.")] = 30,
        seed: Annotated[int, typer.Option(help="With --data: seed of the sample and subsamples.")] = 0,
        halving: Annotated[bool, typer.Option(
            "--halving/--no-halving", help="With --data and more than 5 candidates: score all on part of the "
            "sample and only the better half on more (successive halving).")] = True,
        json_output: JsonOption = False,
        wide: WideOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """Recommend backbones for a task, filtered by hard constraints, ranked without data or on a sample of yours.

        Example: zoo recommend --task text-cls --device cpu --max-latency-ms 20
        \n\nExample: zoo recommend --scenario "classify support tickets in German, 2k examples, 20 ms on a laptop CPU"
        \n\nExample: zoo recommend --task image-cls --data photos/ --sample 500 --budget-s 300
        """
        from zoo import api

        licenses = [item for value in (license or ()) for item in value.split(",") if item.strip()]
        options = dict(
            device=device, max_latency_ms=max_latency_ms,
            max_params_m=api.parse_size(max_params, unit="params") if max_params else None,
            max_memory_gb=api.parse_size(max_memory_gb, unit="memory") if max_memory_gb else None,
            language=language, licenses=licenses, num_examples=examples, scenario=scenario,
            registry_files=registry or ())
        if data is None:
            result = api.recommend(task, **options, top=top)
        else:
            names = [n.strip() for n in (candidates or "").split(",") if n.strip()]
            result = _recommend_with_data(task, options, data=data, sample=sample, shortlist=shortlist,
                                          candidates=names,
                                          budget_s=budget_s, layers=layers, bootstrap=bootstrap, seed=seed,
                                          halving=halving)
        if json_output:
            print_json(result.to_dict())
            return
        if getattr(result, "method", "") == "data":
            _print_data(result, top, wide=wide)
        else:
            _print(result, wide=wide)


def _recommend_with_data(task, options, **data_options):
    """Run the data-driven recommendation with a progress bar per backbone on stderr, when it is a terminal."""
    from zoo import api

    out = progress_console()
    if out is None:
        return api.recommend_with_data(task, **options, **data_options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"features: {name}", total=total)
            bar.update(tasks[name], completed=done, total=total)   # a later halving stage has more

        return api.recommend_with_data(task, **options, **data_options, progress=progress,
                                       message=lambda text: out.print(f"[dim]{text}[/dim]"))


def _print_data(result, top: int, *, wide: bool) -> None:
    from rich.markup import escape

    out = console()
    sample = result.sample
    agree = result.agreement
    prior = f"prior weight {result.prior_weight:.2f}"
    if agree.get("prior_vs_data") is not None:
        prior += f" (it agrees with the data at τ {agree['prior_vs_data']:+.2f})"
    stages = result.stages
    steps = " → ".join(f"{len(stage['scored'])} on {stage['sample']}" for stage in stages)
    halving = f", successive halving: {steps}" if len(stages) > 1 else ""
    out.print(f"[bold]{result.task}[/bold] — scored on {sample['size']} of {sample['of']} examples of "
              f"{escape(result.data)} ({len([n for n in sample['class_counts'].values() if n])} classes), "
              f"features: {result.layers} layer(s), {prior}{halving}, {result.elapsed_s:.0f} s")
    labels = result.estimator_labels
    # Hidden first on a narrow terminal: the single estimators (the combined score stands for them), then the
    # combined score itself (the rank orders by it); the data-free rank stays beside the data-driven one.
    hide = {"sfda": 1, "knn": 1, "hscore": 2, "logme": 3}
    columns = [Column("# (range)", "right"), Column("backbone"), Column("data-free #", "right", hide=5),
               *(Column(labels[e], "right", hide=hide.get(e, 3)) for e in result.estimators),
               Column("combined [5–95%]", "right", hide=4), Column("why", wrap=True)]
    tied = {cand.name for cand in result.data_free.candidates if cand.tied_with}
    rows = []
    for cand in result.candidates[:top]:
        prior_rank = _rank(cand.prior_rank, cand.name in tied)
        if cand.status == "cut":
            rows.append([f"[dim]{cand.rank}[/dim]", escape(cand.name), prior_rank,
                         *(f"{cand.scores[e]:.3f}" if e in cand.scores else "" for e in result.estimators), "",
                         f"[dim]{escape(cand.reason)}[/dim]"])
            continue
        if cand.rank is None:
            rows.append(["—", escape(cand.name), prior_rank, *("" for _ in result.estimators), "",
                         f"[yellow]not scored: {escape(cand.status)}[/yellow]"
                         + (" (reason below)" if cand.error else "")])
            continue
        interval = f"{cand.combined:+.2f} [{cand.interval[0]:+.2f}, {cand.interval[1]:+.2f}]"
        ranks = f" ({cand.rank_interval[0]}–{cand.rank_interval[1]})" if cand.rank_interval else ""
        rows.append([f"{cand.rank}{ranks}", escape(cand.name), prior_rank,
                     *(f"{cand.scores[e]:.3f}" for e in result.estimators), escape(interval), escape(cand.reason)])
    fit_table(columns, rows, width=out.width, wide=wide,
              title=f"Top {min(top, len(result.candidates))} with your data (combined ranking) beside the "
                    "data-free ranking").print(out)
    for cand in result.candidates[:top]:
        if cand.rank is None and cand.error:
            out.print(f"[yellow]{escape(cand.name)}[/yellow]: {escape(cand.error)}", soft_wrap=True)
    if agree.get("mean") is not None:
        pairs = ", ".join(f"{k.replace('~', ' vs ')} τ={v:+.2f}" for k, v in agree["pairs"].items() if v is not None)
        versus = agree["prior_vs_combined"]
        out.print(f"Estimator agreement (Kendall τ): {pairs}; data-free vs combined τ="
                  f"{versus:+.2f}" if versus is not None else "")
    elif agree.get("note"):
        out.print(f"[dim]{agree['note']}[/dim]")
    out.print(f"Strategy: [bold]{result.strategy}[/bold] — {escape(result.strategy_reason)}")
    # Never folded: a command cut over two lines does not run when pasted.
    out.print(f"Next: [bold]{escape(result.next_command)}[/bold]", soft_wrap=True)


def _print(result, *, wide: bool) -> None:
    from rich.markup import escape

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
        columns = [Column("backbone"), Column("est. ms", "right"), Column("params (M)", "right"),
                   Column("what it breaks", wrap=True)]
        rows = [[escape(miss["name"]), f"{miss['latency_ms']:.1f}", f"{miss['params_m']:.1f}", escape(miss["reason"])]
                for miss in result.nearest]
        fit_table(columns, rows, width=out.width, wide=wide, title="Nearest misses").print(out)
        out.print(f"[dim]{note}[/dim]")
        return
    # Hidden first on a narrow terminal: what the reason already states (parameters, latency), then the licence
    # (a constraint of its own, --license), then the score (the rank orders by it).
    columns = [Column("#", "right"), Column("backbone"), Column("score", "right", hide=4),
               Column("est. ms", "right", hide=2), Column("params (M)", "right", hide=1),
               Column("licence", hide=3), Column("why", wrap=True)]
    rows = [[_rank(cand.rank, bool(cand.tied_with)), escape(cand.name), f"{cand.score:.2f}", f"{cand.latency_ms:.1f}",
             f"{cand.params_m:.1f}", escape(cand.license), escape(cand.reason)] for cand in result.candidates]
    fit_table(columns, rows, width=out.width, wide=wide,
              title=f"Top {len(result.candidates)} (data-free ranking)").print(out)
    out.print(f"[dim]{len(result.excluded)} backbones excluded by the constraints (see --json). {note}[/dim]")
    out.print(f"Strategy: [bold]{result.strategy}[/bold] — {result.strategy_reason}")
    out.print(f"Next: [bold]{escape(result.candidates[0].next_command)}[/bold]", soft_wrap=True)


def _rank(rank: int, tied: bool) -> str:
    """A rank as the table shows it: "=2" where several backbones share #2."""
    return f"={rank}" if tied else str(rank)
