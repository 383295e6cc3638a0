"""The command line: help with examples, fast start, JSON, one-line errors, debug tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from conftest import run_zoo
from typer.testing import CliRunner

from zoo.cli import app


def _commands(command=None, prefix=()) -> list[list[str]]:
    """Every command and subcommand the app has, read from the app itself (so a new one is checked too)."""
    command = command or typer.main.get_command(app)
    found = []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += [[*prefix, name], *_commands(sub, (*prefix, name))]
    return found


COMMANDS = _commands()
runner = CliRunner()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example: zoo " in result.output
    assert "--json" in result.output


def test_the_root_help_lists_each_command_by_its_own_first_line():
    # `zoo --help` shows the line of COMMANDS without loading the command; it must be the command's own.
    import inspect

    from zoo.cli import COMMANDS, load_command

    for name, (_, line) in COMMANDS.items():
        first = inspect.cleandoc(load_command(name).help or "").split("\n\n")[0]
        assert " ".join(first.split()) == line, f"zoo.cli.COMMANDS[{name!r}] differs from the command's help"


def test_the_command_list_is_complete():
    assert {c[0] for c in COMMANDS} >= {"list", "info", "plugins", "recommend", "fetch", "adapt", "predict", "bench",
                                        "push", "runs"}


def test_help_does_not_import_torch():
    # `zoo --help` stays fast by importing torch and the model libraries lazily.
    # And it loads no command's module: each is loaded when it runs or shows its own help.
    code = ("import sys; from zoo.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0 and 'predict' in r.output; "
            "heavy = [m for m in ('torch', 'timm', 'transformers', 'huggingface_hub', 'zoo.api') if m in sys.modules]; "
            "print(heavy + [m for m in sys.modules if m.endswith('_cmd')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    listing = subprocess.run([sys.executable, "-c", "import sys; from zoo import api; api.list_backbones(); "
                              "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert listing.stdout.strip() == "False"


def test_list_json_and_table():
    data = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    tasks = {t for entry in data for t in entry["tasks"]}
    assert tasks == {"image-cls", "text-cls", "audio-cls"}
    only_images = json.loads(runner.invoke(app, ["list", "--task", "image-cls", "--json"]).stdout)
    assert only_images and all(e["tasks"] == ["image-cls"] for e in only_images)
    pattern = json.loads(runner.invoke(app, ["list", "convnext*", "--json"]).stdout)
    assert pattern and all(e["name"].startswith("convnext") for e in pattern)
    table = runner.invoke(app, ["list", "--task", "image-cls"])
    assert table.exit_code == 0 and "backbones" in table.output


def test_info_shows_references_with_sources():
    name = json.loads(runner.invoke(app, ["list", "--json"]).stdout)[0]["name"]
    data = json.loads(runner.invoke(app, ["info", name, "--json"]).stdout)
    assert data["name"] == name and data["family_available"]
    assert all(ref["source"] for ref in data["reference"])
    table = runner.invoke(app, ["info", name])
    assert table.exit_code == 0 and "reference numbers" in table.output


def test_unknown_name_suggests_close_ones():
    result = run_zoo("info", "resnet50")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Did you mean" in result.stderr and "resnet50." in result.stderr


def test_debug_variable_shows_the_traceback():
    result = run_zoo("info", "no-such-backbone", env={"ZOO_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("zoo ")


def test_rich_progress_reporter_draws_a_whole_run():
    """The progress display of `zoo adapt` (shown on terminals only, so CliRunner never exercises it)."""
    import io

    from rich.console import Console

    from zoo.cli.adapt_cmd import RichReporter

    buffer = io.StringIO()
    reporter = RichReporter(Console(file=buffer, force_terminal=True, width=100))
    reporter.start(epochs=2, batches_per_epoch=3, first_epoch=0, first_batch=0)
    for epoch in range(2):
        for batch in range(1, 4):
            reporter.step(epoch=epoch, batch=batch, loss=0.5, samples_per_s=10.0)
        reporter.epoch_end({"epoch": epoch + 1, "train_loss": 0.5, "samples_per_s": 10.0,
                            "val": {"accuracy": 0.9}, "best": epoch == 0})
    reporter.message("done")
    reporter.stop()
    import re

    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    assert "epoch 1: loss 0.5000, accuracy 0.9000 best" in output and "epoch 2: loss" in output
    assert "epoch 2/2" in output


def test_ci_runs_the_readme_test_command():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    commands = re.findall(r"```bash\n(.*?)\n```", (root / "README.md").read_text(), re.S)
    assert len(commands) >= 2, "the README gives the install-and-run and the test commands"
    ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == commands[1].strip()
