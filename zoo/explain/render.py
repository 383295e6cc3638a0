"""Explanations drawn for people: an HTML page of shaded words for text, a heatmap over the image as the model saw
it, the clip's waveform above its saliency over time. Green pushed towards the label, red away from it; the
colour's strength is the share of the largest attribution."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from zoo.tasks import get_task

POSITIVE, NEGATIVE = (22, 163, 74), (220, 38, 38)   # green towards the label, red away from it


def file_stem(explanation, index: int) -> str:
    """A file name for one explanation: the input file's stem (or ``text-N``), the label and the method."""
    kind = get_task(explanation.task).input_kind
    stem = f"text-{index + 1}" if kind == "text" else Path(explanation.input).stem or f"input-{index + 1}"
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", explanation.label)
    return f"{stem}.{label}.{explanation.method}"


def write_files(explanation, folder: Path, stem: str) -> list[Path]:
    """Write the picture of ``explanation`` into ``folder``: ``STEM.html`` for text, ``STEM.png`` for images and
    audio. Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    kind = get_task(explanation.task).input_kind
    if kind == "text":
        path = folder / f"{stem}.html"
        path.write_text(text_page(explanation), encoding="utf-8")
        return [path]
    path = folder / f"{stem}.png"
    (image_figure if kind == "image" else audio_figure)(explanation, path)
    return [path]


def shade(value: float, largest: float) -> tuple[tuple[int, int, int], float]:
    """The colour and strength (0 to 1) of an attribution, against the largest attribution's size."""
    strength = min(1.0, abs(value) / largest) if largest > 0 else 0.0
    return (POSITIVE if value >= 0 else NEGATIVE), strength


def text_pieces(text: str, units) -> list[tuple[str, Any]]:
    """``text`` cut into pieces: each unit's characters with its value, and what lies between with None. ``units``
    are (span, value) pairs, span the (first, end) characters; a unit that overlaps an earlier one, is empty or
    runs past the text stands alone and is left out. The one way the pictures, the terminal and the model card
    mark words in a text."""
    pieces, cursor = [], 0
    for span, value in sorted(units, key=lambda unit: unit[0][0]):
        start, end = int(span[0]), int(span[1])
        if start < cursor or end > len(text) or start >= end:
            continue
        if start > cursor:
            pieces.append((text[cursor:start], None))
        pieces.append((text[start:end], value))
        cursor = end
    if cursor < len(text):
        pieces.append((text[cursor:], None))
    return pieces


def text_html(explanation) -> str:
    """The text with each word's background shaded by its attribution (an HTML fragment)."""
    largest = max((abs(u.attribution) for u in explanation.units), default=0.0)
    out = []
    text = explanation.view if isinstance(explanation.view, str) else explanation.input
    for piece, value in text_pieces(text, [(u.span, u.attribution) for u in explanation.units]):
        if value is None:
            out.append(html.escape(piece))
            continue
        (r, g, b), strength = shade(value, largest)
        out.append(f'<span title="{value:+.3g}" style="background: rgba({r}, {g}, {b}, {strength:.2f}); '
                   f'border-radius: 3px; padding: 0 1px">{html.escape(piece)}</span>')
    return "".join(out)


def _summary(explanation) -> str:
    error = explanation.completeness_error
    parts = [f"{explanation.label} ({explanation.score:.3f})", explanation.method]
    if explanation.steps:
        parts.append(f"{explanation.steps} steps")
    if error is not None:
        parts.append(f"completeness error {100 * error:.1f}%")
    parts.append(f"{explanation.seconds:.2f} s")
    return " · ".join(parts)


def text_page(explanation) -> str:
    """A standalone HTML page: the summary line, the shaded text, and the top words."""
    top = ", ".join(html.escape(u.name) for u in explanation.top(5)) or "none"
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>zoo explain</title></head>\n"
            "<body style=\"font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto\">\n"
            f"<p><strong>{html.escape(_summary(explanation))}</strong></p>\n"
            f"<p style=\"font-size: 1.15rem; line-height: 1.9\">{text_html(explanation)}</p>\n"
            f"<p>Pushed most towards {html.escape(explanation.label)}: {top}. Green pushes towards the label, red "
            "away from it.</p>\n</body></html>\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")   # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def image_figure(explanation, path: Path) -> None:
    """The image as the model saw it, and the same with the attributions laid over it (positive in green,
    negative in red), side by side."""
    import numpy as np
    from scipy.ndimage import uniform_filter

    plt = _pyplot()
    view = np.asarray(explanation.view)
    # Pixel-level gradients are speckled: averaged over a small window (a 32nd of the side) they show the regions.
    heat = uniform_filter(np.asarray(explanation.heat, dtype=np.float64), size=max(1, min(view.shape[:2]) // 32))
    largest = float(np.abs(heat).max()) or 1.0
    overlay = np.zeros((*heat.shape, 4))
    overlay[..., :3] = np.where((heat >= 0)[..., None], np.array(POSITIVE) / 255, np.array(NEGATIVE) / 255)
    overlay[..., 3] = np.clip(np.abs(heat) / largest, 0, 1) ** 0.7 * 0.85
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.8), dpi=110)
    left.imshow(view)
    left.set_title("as the model saw it", fontsize=9)
    right.imshow(view.mean(axis=-1), cmap="gray", alpha=0.6)   # grey beneath, so the colours read as attribution
    right.imshow(overlay, extent=(-0.5, view.shape[1] - 0.5, view.shape[0] - 0.5, -0.5))
    right.set_title("attributions (green: towards, red: away)", fontsize=9)
    for axis in (left, right):
        axis.set_axis_off()
    fig.suptitle(_summary(explanation), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def audio_figure(explanation, path: Path) -> None:
    """The clip's waveform over time, and below it each stretch of time's attribution."""
    import numpy as np

    plt = _pyplot()
    waveform = np.asarray(explanation.view, dtype=np.float32)
    rate = explanation.sample_rate or 16000
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 3.8), dpi=110, sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1]})
    top.plot(np.arange(len(waveform)) / rate, waveform, linewidth=0.5, color="0.3")
    top.set_ylabel("waveform", fontsize=8)
    starts = [u.span[0] for u in explanation.units]
    widths = [u.span[1] - u.span[0] for u in explanation.units]
    values = [u.attribution for u in explanation.units]
    colours = [np.array(POSITIVE if v >= 0 else NEGATIVE) / 255 for v in values]
    bottom.bar(starts, values, width=widths, align="edge", color=colours)
    bottom.axhline(0, color="0.5", linewidth=0.5)
    bottom.set_ylabel("attribution", fontsize=8)
    bottom.set_xlabel("seconds")
    fig.suptitle(_summary(explanation), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
