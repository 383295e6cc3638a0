"""The `zoo` command line: wiring only. Each command module parses options, calls one API function, prints."""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from zoo import __version__
from zoo.cli._common import handle_errors, hide_flag_types

# Every command: the module under zoo.cli that registers it, and the line `zoo --help` shows for it (the first
# paragraph of its help; tests/test_cli.py checks that they agree). A command's module is imported, and its options
# built from its signature, only when that command runs or shows its own help: `zoo --help` and `zoo predict`
# then pay for one command, not seventeen.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("list_cmd", "List registry backbones, optionally filtered by task, family or name pattern."),
    "info": ("info_cmd", "Show one backbone: source, cost, licence, pretraining data and reference numbers with "
                         "sources."),
    "plugins": ("plugins_cmd", "List plugins (entry-point group 'zoo') with version, families, backbones and "
                               "errors."),
    "recommend": ("recommend_cmd", "Recommend backbones for a task, filtered by hard constraints, ranked without "
                                   "data or on a sample of yours."),
    "fetch": ("fetch_cmd", "Download backbones into the Hugging Face cache, for offline work: at the registry "
                           "entry's revision, or the head of main, whose commit is recorded."),
    "adapt": ("adapt_cmd", "Fine-tune a backbone on your data and write a run directory that loads without zoo."),
    "tune": ("tune_cmd", "Search learning rate, weight decay, warm-up, epochs, label smoothing and layer decay (or "
                         "LoRA rank and alpha) with Optuna's TPE, pruning poor trials per epoch; every trial is a "
                         "zoo adapt run, the best is ready for predict, bench, serve and push. Start the same "
                         "command in several shells (or machines sharing --output and a --study URL) to run trials "
                         "in parallel; after an interruption, the same command resumes."),
    "distill": ("distill_cmd", "Distil a teacher run into a smaller student backbone, on adapt's engine: the "
                               "student learns from the teacher's softened logits and the labels, then is compared "
                               "with the student alone (gap closed) and timed against the teacher (speed-up). The "
                               "student is an ordinary run; resume it with zoo adapt --resume."),
    "predict": ("predict_cmd", "Classify inputs with a finished run's model."),
    "explain": ("explain_cmd", "Explain a finished run's predictions: what pushed the model to each label."),
    "bench": ("bench_cmd", "Measure latency (p50/p95), throughput, peak memory, FLOPs and, with --data, "
                           "accuracy."),
    "soup": ("soup_cmd", "Average the weights of runs fine-tuned from the same backbone into one model as fast as "
                         "each of them, chosen on held-out data (greedy: never below the best run there). The soup "
                         "is a run directory like any other."),
    "ensemble": ("ensemble_cmd", "Combine runs into an ensemble: a run of its own (members, weights, card) that "
                                 "predict, bench, serve and push accept. Caruana's selection never scores below the "
                                 "best member on validation."),
    "export": ("export_cmd", "Export a run to ONNX that runs with onnxruntime alone, with its parity checked: fp32 "
                             "logits within 1e-4 of the logit scale; int8 with agreement >= 99% and macro-F1 within "
                             "one point (else nothing is written)."),
    "serve": ("serve_cmd", "Serve a model over HTTP: POST /predict, the Open Inference Protocol v2 (/v2/...), GET "
                           "/metrics. Requests that arrive together are batched. Stops cleanly on SIGTERM or "
                           "Ctrl-C."),
    "push": ("push_cmd", "Publish a run: native model files, zoo_run.json, plots and a model card, checked after "
                         "upload."),
    "runs": ("runs_cmd", "List recorded adapt runs, newest first; 'zoo runs show ID' and 'zoo runs compare ID ID' "
                         "go deeper."),
}


def load_command(name: str) -> typer.core.TyperCommand | TyperGroup:
    """The command ``name`` (a key of :data:`COMMANDS`), built from its module."""
    module = importlib.import_module(f"zoo.cli.{COMMANDS[name][0]}")
    holder = typer.Typer(rich_markup_mode="rich")   # what the root app gives its commands
    module.register(holder)
    command = typer.main.get_group(holder).commands[name]
    hide_flag_types(command)
    return command


_CLICK_ERRORS = sys.modules[typer.BadParameter.__module__]   # see zoo.cli._common
_ABORT = tuple({typer.Abort, getattr(_CLICK_ERRORS, "Abort", typer.Abort)})


class _OneLineErrors(TyperGroup):
    """The root command: every error a command raises, and every usage error (an unknown option, a value of the
    wrong type), is one line on stderr and a non-zero exit, rendered here once for every command
    (:func:`zoo.cli._common.handle_errors`), instead of a framed block or a traceback."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False
        hide_flag_types(self, subcommands=False)

    # The commands are loaded one by one as they are asked for (see COMMANDS). `commands` is every command,
    # loaded: for what walks the whole tree (tests, a typo's "Did you mean"), never on the way to one command.
    @property
    def commands(self) -> dict[str, typer.core.TyperCommand]:
        for name in COMMANDS:
            self.get_command(None, name)
        return self._commands

    @commands.setter
    def commands(self, value) -> None:
        self._commands = dict(value)

    def list_commands(self, ctx) -> list[str]:
        return [*COMMANDS, *(name for name in self._commands if name not in COMMANDS)]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self._commands and cmd_name in COMMANDS:
            if self._listing:   # the root's help lists a command by its line; its options wait until it runs
                return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
            self._commands[cmd_name] = load_command(cmd_name)
        return self._commands.get(cmd_name)

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            with handle_errors():
                result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                      standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except _CLICK_ERRORS.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message())
            code = 0
        except _CLICK_ERRORS.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "zoo"
            message = " ".join(exc.format_message().split())
            typer.echo(f"Error: {message} (see '{where} --help')", err=True)
            code = exc.exit_code
        except typer.Exit as exc:   # handle_errors' verdict on an error it rendered
            code = exc.exit_code
        except _ABORT:
            typer.echo("Aborted.", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="zoo",
    cls=_OneLineErrors,
    help="Recommend, adapt, benchmark and publish pretrained backbones for image, text and audio "
         "classification.\n\nExample: zoo recommend --task text-cls --device cpu --max-latency-ms 20",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """zoo: a plugin-based model-zoo hub."""


def main() -> None:
    app()
