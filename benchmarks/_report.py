"""Shared by the benchmark scripts: the machine fingerprint and writing a section of docs/performance.md."""

from __future__ import annotations

import platform
import re
from pathlib import Path

PERFORMANCE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def machine() -> str:
    import torch

    from zoo.hardware import cpu_name

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_name()}, {torch.get_num_threads()} threads, {device}; torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def write_section(name: str, markdown: str, path: Path = PERFORMANCE) -> None:
    """Replace (or append) the section between `<!-- begin NAME -->` and `<!-- end NAME -->`."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Performance\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def timm_local_entry(name: str, arch: str, folder: Path, *, params_m: float, gflops: float, image_size: int,
                     extra: str = "") -> str:
    """A registry entry (TOML) for a timm model saved in ``folder``; ``extra`` adds lines such as `pretrain = ...`."""
    return f'''[[backbone]]
name = "{name}"
family = "timm"
arch = "{arch}"
source = "local-dir:{folder}"
tasks = ["image-cls"]
params_m = {params_m:.4f}
gflops = {gflops:.5f}
input = {{ image_size = {image_size} }}
license = "apache-2.0"
{extra}'''


def transformers_local_entry(name: str, folder: Path, *, task: str, params_m: float, input_table: str) -> str:
    """A registry entry (TOML) for a transformers model saved in ``folder``; ``input_table`` is the entry's input
    table as TOML (``max_tokens = 64, seq_len = 32``)."""
    return f'''[[backbone]]
name = "{name}"
family = "transformers"
source = "local-dir:{folder}"
tasks = ["{task}"]
params_m = {params_m:.4f}
gflops = 0.01
input = {{ {input_table} }}
license = "mit"
'''
