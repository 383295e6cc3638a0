"""Start-up: how long `zoo --help` takes, and how long the first answer of `zoo predict RUN INPUT` takes, each in a
new process, as a person typing the command waits for it.

Nothing downloaded. Two finished runs are made here first: an image run (timm `resnet18` with random weights,
saved as a local folder and adapted with `zoo.api.adapt` on a few generated images) and a text run (a 2-layer,
128-wide BERT with a word-level tokenizer, adapted on a few generated sentences). Their accuracy is meaningless;
only the time to load and answer counts.

Each command runs `--repeats` times in new processes (`python -m zoo ...`, so the code of this checkout is the one
timed), the commands taking turns so a change in the machine's load falls on all of them: the median is the
figure, the lowest and highest show the noise. Cold-ish: the files are in the page cache after the first call, as
they are for a person running a second command. `--baseline PATH` times another checkout (its root folder, e.g.
a `git worktree` of the commit before a change) the same way, in the same turns, so before and after are measured
side by side. The import profile (`python -X importtime`) of one `zoo predict` of the text run lists what its
imports cost, by top-level package.

Target (issue 19): `zoo --help` under 0.3 s.

    python benchmarks/startup.py [--repeats 7] [--baseline PATH] [--device cpu] [--precision fp32] [--write]

It took about 4 minutes on a 2-core CPU shared with other work.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from _report import machine, table, timm_local_entry, transformers_local_entry, write_section  # noqa: E402

HELP_TARGET_S = 0.3


def make_runs(work: Path, *, device: str = "cpu", precision: str = "fp32") -> dict[str, tuple[Path, str]]:
    """An image run and a text run, finished, and an input for each: {name: (run, input)}."""
    import timm
    import torch
    from PIL import Image
    from timm.models import save_for_hf
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from zoo import api
    from zoo.engine.config import AdaptConfig

    torch.manual_seed(0)
    images = work / "images"
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (images / label).mkdir(parents=True, exist_ok=True)
        for index in range(8):
            shade = tuple(min(255, c + 5 * index) for c in colour)
            Image.new("RGB", (64, 64), shade).save(images / label / f"{index}.png")
    resnet = work / "resnet18"
    save_for_hf(timm.create_model("resnet18", num_classes=2), str(resnet),
                model_config={"label_names": ["a", "b"]}, safe_serialization=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "great", "awful", "the", "film", "was"]
    bert = work / "bert"
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, model_max_length=32).save_pretrained(bert)
    BertForSequenceClassification(BertConfig(vocab_size=len(words), hidden_size=128, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=256)).save_pretrained(bert)
    texts = work / "texts.csv"
    rows = [f"the film was {word},{label}" for word, label in (("good", "pos"), ("great", "pos"), ("bad", "neg"),
                                                               ("awful", "neg"))] * 6
    texts.write_text("text,label\n" + "\n".join(rows) + "\n")
    registry = work / "registry.toml"
    registry.write_text(timm_local_entry("startup-resnet18", "resnet18", resnet, params_m=11.7, gflops=1.8,
                                         image_size=64) + "\n" +
                        transformers_local_entry("startup-bert", bert, task="text-cls", params_m=0.5,
                                                 input_table="max_tokens = 32, seq_len = 16"))
    config = AdaptConfig(strategy="full", epochs=1, batch_size=8, seed=0, precision=precision)
    for name, data in (("startup-resnet18", images), ("startup-bert", texts)):
        api.adapt(name, str(data), output=work / f"run-{name}", config=config, registry_files=[registry],
                  store=False, device=device)
    return {"image": (work / "run-startup-resnet18", str(images / "red" / "0.png")),
            "text": (work / "run-startup-bert", "the film was great")}


def commands(runs: dict[str, tuple[Path, str]]) -> dict[str, list[str]]:
    listed = {"zoo --help": ["--help"]}
    for name, (run, example) in runs.items():
        listed[f"zoo predict ({name} run)"] = ["predict", str(run), example, "--json"]
    return listed


def environment(checkout: Path, work: Path) -> dict[str, str]:
    """The environment a command runs in: this (or the baseline) checkout first on the path, its own history file,
    one compute thread (so the figure is start-up, not the machine's spare cores), and Python's bytecode cache on,
    as an installed package has it (without it every zoo module is compiled again at each start)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), str(checkout / "plugins")]),
           "ZOO_STORE": str(work / "history.sqlite"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one command in a new process. The CPU time (user + system, of the process and its
    threads) hardly changes with the machine's load, where the wall time on a shared machine is mostly waiting."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Run from a neutral folder: `python -m` puts the working directory first on the path, and a checkout there
    # would stand in for the one on PYTHONPATH.
    subprocess.run([sys.executable, "-m", "zoo", *args], env=env, check=True, capture_output=True,
                   cwd=Path(env["ZOO_STORE"]).parent)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(listed: dict[str, list[str]], checkouts: dict[str, Path], work: Path,
            repeats: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(wall, CPU) seconds of each command in each checkout, ``repeats`` times, taking turns; one untimed call of
    each first (files into the page cache, Python's bytecode written)."""
    times: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for checkout in checkouts.values():
        for args in listed.values():
            time_once(args, environment(checkout, work))
    for _ in range(repeats):
        for label, checkout in checkouts.items():
            for command, args in listed.items():
                times[(label, command)].append(time_once(args, environment(checkout, work)))
    return times


def import_profile(args: list[str], env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """Seconds of import per top-level package in one run of ``args`` (``python -X importtime``), largest first."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "zoo", *args], env=env, check=True,
                            capture_output=True, text=True, cwd=Path(env["ZOO_STORE"]).parent)
    own: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:   # self time, so a package is not counted again in the package that imports it
            own[match[2].split(".")[0]] += int(match[1]) / 1e6
    return sorted(own.items(), key=lambda item: -item[1])[:top]


def report(times: dict[tuple[str, str], list[tuple[float, float]]], checkouts: dict[str, Path],
           listed: dict[str, list[str]], profile: list[tuple[str, float]], repeats: int, load: str) -> str:
    def figures(label: str, command: str, which: int) -> list[float]:
        return [pair[which] for pair in times[(label, command)]]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"

    labels = list(checkouts)
    rows = []
    for command in listed:
        row = [command]
        for which in (1, 0):   # CPU, then wall
            row += [cell(figures(label, command, which)) for label in labels]
        if len(labels) == 2:
            before, after = (statistics.median(figures(label, command, 1)) for label in labels)
            row.append(f"{before / after:.2f}×")
        rows.append(row)
    header = ["command", *(f"CPU s, {label}" for label in labels), *(f"wall s, {label}" for label in labels),
              *(["CPU speed-up"] if len(labels) == 2 else [])]
    help_wall = statistics.median(figures(labels[-1], "zoo --help", 0))
    help_cpu = statistics.median(figures(labels[-1], "zoo --help", 1))
    verdict = "met" if help_wall < HELP_TARGET_S else "not met"
    total = sum(seconds for _, seconds in profile) or 1.0
    profile_rows = [[package, f"{seconds:.3f}"] for package, seconds in profile]
    return f"""## Start-up: `zoo --help` and the first `zoo predict`

Reproduce: `python benchmarks/startup.py --write` (add `--baseline PATH` for another checkout side by side).
Machine: {machine()}; load average before: {load}.

Each command in a new process (`python -m zoo ...`, one compute thread), {repeats} times, the commands and
checkouts taking turns; median seconds, lowest–highest in brackets. CPU is the process's user + system time, which
a busy machine hardly changes; wall is what a person waits, which on a busy machine is mostly waiting for a core
(compare the load average above with the cores). The runs are small (timm `resnet18`, a 2-layer BERT) so that what
is measured is start-up: importing, reading the run, loading the weights, one forward pass.

{table(header, rows)}

Target `zoo --help` < {HELP_TARGET_S} s of wall time: **{verdict}** ({help_wall:.3f} s wall, {help_cpu:.3f} s CPU;
on a quiet machine the wall time is about the CPU time).

What makes start-up fast: the command line loads a command's module, and builds its options, only when that
command runs or shows its own help (`zoo --help` lists each command by one line from a table); `zoo predict RUN`
on a run directory reads no registry file and imports only the model library of the run's family (a text run never
imports timm, an image run never transformers). What remains is the import of torch and of that library: the
import profile of one `zoo predict` on the text run, self time per top-level package ({total:.2f} s counted in all,
`python -X importtime`, whose own bookkeeping adds to each figure):

{table(["package", "import (s)"], profile_rows)}

sympy, torchvision, scipy, triton and trio come in through torch and transformers themselves (transformers' model
code imports torch.distributed, torch._dynamo, torchvision and scipy), not through zoo; zoo's own modules, the
command line included, take under 0.1 s.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another checkout's root, timed side by side (before)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the runs are adapted (zoo predict answers on the CPU either way)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="the runs' training precision")
    parser.add_argument("--write", action="store_true", help="write the section into docs/performance.md")
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        os.environ["ZOO_STORE"] = str(work / "history.sqlite")
        print("making the runs", file=sys.stderr)
        runs = make_runs(work, device=args.device, precision=args.precision)
        listed = commands(runs)
        checkouts = {**({"before": args.baseline.resolve()} if args.baseline else {}), "this checkout": ROOT}
        times = measure(listed, checkouts, work, args.repeats)
        profile = import_profile(listed["zoo predict (text run)"], environment(ROOT, work))
        markdown = report(times, checkouts, listed, profile, args.repeats, load)
    print(markdown)
    if args.write:
        write_section("startup", markdown)


if __name__ == "__main__":
    main()
