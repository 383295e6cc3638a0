"""The image surrogate zoo of `benchmarks/recommend_eval.py` (the interface: `benchmarks/surrogate.py`).

Every backbone is the same small timm ResNet (`test_resnet`, 32×32 inputs), pretrained by this module on rendered
images; they differ for the reasons real backbones differ:

- **how much** they were pretrained on the source task (uppercase letters, the surrogate of ImageNet-1k);
- **what on**: some were first pretrained on a broader set (upper- and lower-case letters and symbols, the
  surrogate of ImageNet-21k) and then fine-tuned on the source for longer or shorter, one on half of the source
  classes first;
- **how**: one was trained with label smoothing, which raises source accuracy and lowers transferability
  (Kornblith et al., 2021).

Each backbone's top-1 on held-out source images is its published number, `imagenet-1k/top1`. The targets are new
tasks: rendered digits, and geometric shapes, 20 training images per class.
"""

from __future__ import annotations

import copy
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _report import timm_local_entry
from surrogate import Backbone, Target

TASK = "image-cls"
SOURCE_METRIC = "imagenet-1k/top1"
TRUTH = {"strategy": "full", "epochs": 8, "lr": 1e-3, "batch_size": 32, "patience": 0, "augment": "none",
         "checkpoint_every": 10**9}
TRAIN_PER_CLASS, TEST_PER_CLASS = 20, 60

SIZE = 32                      # pixels; the backbones' input size
ARCH = "test_resnet"           # timm's smallest ResNet: 0.4M parameters, cheap to pretrain on a CPU
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
SYMBOLS = "!?#$%&@*+=<>/"
DIGITS = "0123456789"
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star", "ring", "frame")


# --- rendered data ----------------------------------------------------------------------------------------------

@functools.cache
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)   # Pillow's bundled scalable font: no system fonts needed


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A random background and a foreground far enough from it to be seen."""
    background = rng.integers(0, 256, 3)
    foreground = (background + rng.integers(80, 177, 3)) % 256
    return tuple(int(v) for v in background), tuple(int(v) for v in foreground)


def _finish(image, rng: np.random.Generator, background) -> np.ndarray:
    from PIL import Image

    image = image.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR, fillcolor=background)
    pixels = np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32)
    return np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)


def render_glyph(char: str, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw

    background, foreground = _colours(rng)
    image = Image.new("RGB", (48, 48), background)
    centre = (24 + int(rng.integers(-5, 6)), 24 + int(rng.integers(-5, 6)))
    ImageDraw.Draw(image).text(centre, char, fill=foreground, font=_font(int(rng.integers(20, 30))), anchor="mm")
    return _finish(image, rng, background)


def render_shape(shape: str, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw

    background, foreground = _colours(rng)
    image = Image.new("RGB", (48, 48), background)
    draw = ImageDraw.Draw(image)
    cx, cy, r = 24 + int(rng.integers(-5, 6)), 24 + int(rng.integers(-5, 6)), int(rng.integers(9, 15))
    width = int(rng.integers(2, 5))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=foreground)
    elif shape == "ring":
        draw.ellipse(box, outline=foreground, width=width)
    elif shape == "square":
        draw.rectangle(box, fill=foreground)
    elif shape == "frame":
        draw.rectangle(box, outline=foreground, width=width)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=foreground)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=foreground)
    elif shape == "cross":
        draw.line([(cx - r, cy), (cx + r, cy)], fill=foreground, width=width + 1)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=foreground, width=width + 1)
    elif shape == "star":
        points = [(cx + (r if k % 2 == 0 else r * 0.45) * np.sin(k * np.pi / 5),
                   cy - (r if k % 2 == 0 else r * 0.45) * np.cos(k * np.pi / 5)) for k in range(10)]
        draw.polygon(points, fill=foreground)
    return _finish(image, rng, background)


@dataclass
class Images:
    pixels: np.ndarray      # N × SIZE × SIZE × 3, uint8
    labels: np.ndarray      # N
    names: list[str]


def render(kind: str, classes, per_class: int, seed: int) -> Images:
    draw = {"glyph": render_glyph, "shape": render_shape}[kind]
    rng = np.random.default_rng(seed)
    pixels = np.stack([draw(c, rng) for c in classes for _ in range(per_class)])
    return Images(pixels, np.repeat(np.arange(len(classes)), per_class), [str(c) for c in classes])


def write_folder(images: Images, root: Path) -> Path:
    """An image-folder dataset (one folder per class), the layout `zoo adapt` reads."""
    from PIL import Image

    names = {"/": "slash", "?": "question", "*": "star", "<": "lt", ">": "gt"}
    for i, (pixels, label) in enumerate(zip(images.pixels, images.labels, strict=True)):
        name = images.names[label]
        folder = root / (f"digit-{name}" if name.isdigit() else names.get(name, name))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    return root


# --- the surrogate zoo ------------------------------------------------------------------------------------------

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Stage:
    data: str                         # a key of source_sets()
    steps: int                        # optimizer steps (batch 64), with their own warm-up and cosine decay
    label_smoothing: float = 0.0


@dataclass
class Recipe:
    name: str
    stages: tuple[Stage, ...]
    description: str


RECIPES = [
    Recipe("letters800", (Stage("letters", 800),), "800 steps on the source"),
    Recipe("letters1500", (Stage("letters", 1500),), "1500 steps on the source"),
    # Label smoothing raises source accuracy but makes features less transferable (Kornblith et al., 2021).
    Recipe("letters1500-ls", (Stage("letters", 1500, label_smoothing=0.4),),
           "1500 steps on the source, label smoothing 0.4"),
    Recipe("half1200-ft100", (Stage("half-letters", 1200), Stage("letters", 100)),
           "1200 steps on half of the source classes, then 100 on all"),
    Recipe("broad1200-ft100", (Stage("broad", 1200), Stage("letters", 100)),
           "1200 steps on the broad set, then 100 on the source"),
    Recipe("broad1200-ft400", (Stage("broad", 1200), Stage("letters", 400)),
           "1200 steps on the broad set, then 400 on the source"),
]


def source_sets(seed: int) -> dict[str, Images]:
    letters = render("glyph", UPPER, 150, seed)
    half = letters.labels < len(UPPER) // 2
    return {"letters": letters,
            "half-letters": Images(letters.pixels[half], letters.labels[half], letters.names[:len(UPPER) // 2]),
            "broad": render("glyph", UPPER + LOWER + SYMBOLS, 60, seed + 1)}


def _tensor(pixels: np.ndarray):
    import torch

    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def pretrain(model, data: Images, stage: Stage, *, seed: int, scale: float = 1.0, lr: float = 3e-3,
             batch: int = 64) -> None:
    """Plain supervised training with AdamW, a short warm-up and cosine decay, on a fresh head for ``data``."""
    import torch
    import torch.nn.functional as F

    steps = max(1, round(stage.steps * scale))
    model.reset_classifier(len(data.names))
    inputs, labels = _tensor(data.pixels), torch.from_numpy(data.labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(labels), (batch,), generator=generator)
        loss = F.cross_entropy(model(inputs[rows]), labels[rows], label_smoothing=stage.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def top1(model, data: Images) -> float:
    import torch

    model.eval()
    with torch.inference_mode():
        predictions = model(_tensor(data.pixels)).argmax(1).numpy()
    return float((predictions == data.labels).mean())


def build_zoo(work: Path, *, seed: int, quick: bool = False) -> tuple[Path, list[Backbone]]:
    """Pretrain every recipe, save each as a timm folder, and write a registry file naming them all."""
    import timm
    import torch
    from timm.models import save_for_hf
    from torch.utils.flop_counter import FlopCounterMode

    scale = 0.1 if quick else 1.0
    sources = source_sets(seed)
    source_val = render("glyph", UPPER, 30, seed + 100)
    trained: dict[tuple[Stage, ...], dict] = {}     # weights after each prefix of stages: shared prefixes train once
    entries, blocks = [], []
    for recipe in RECIPES:
        t0 = time.monotonic()
        torch.manual_seed(seed)       # the same initial weights for every recipe
        model = timm.create_model(ARCH, pretrained=False)
        done = max((k for k in range(len(recipe.stages) + 1) if recipe.stages[:k] in trained), default=0)
        if done:
            model.reset_classifier(len(sources[recipe.stages[done - 1].data].names))
            model.load_state_dict(trained[recipe.stages[:done]])
        for k in range(done, len(recipe.stages)):
            stage = recipe.stages[k]
            pretrain(model, sources[stage.data], stage, seed=seed * 1000 + k, scale=scale)
            trained[recipe.stages[:k + 1]] = copy.deepcopy(model.state_dict())
        accuracy = top1(model, source_val)
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, SIZE, SIZE), "crop_pct": 1.0,
                                "mean": MEAN, "std": STD, "interpolation": "bilinear", "num_classes": len(UPPER)}
        folder = work / "zoo" / recipe.name
        save_for_hf(model, str(folder), safe_serialization=True)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model.eval()(torch.zeros(1, 3, SIZE, SIZE))
        name = f"{ARCH}.{recipe.name}"
        params = sum(p.numel() for p in model.parameters()) / 1e6
        entries.append(Backbone(name, recipe.name, recipe.description, accuracy, params))
        extra = (f'pretrain = "{recipe.description}"\nreference = [{{ metric = "{SOURCE_METRIC}", value = '
                 f'{accuracy * 100:.2f}, source = "benchmarks/recommend_eval.py: top-1 on held-out images of the '
                 'surrogate source task" }]\n')
        blocks.append(timm_local_entry(name, ARCH, folder, params_m=params, gflops=counter.get_total_flops() / 1e9,
                                       image_size=SIZE, extra=extra))
        print(f"  {name}: source top-1 {accuracy:.3f} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    registry = work / "zoo.toml"
    registry.write_text("\n".join(blocks))
    return registry, entries


TARGETS = ("digits", "shapes")
_TARGET_CLASSES = {"digits": ("glyph", DIGITS), "shapes": ("shape", SHAPES)}


def make_target(name: str, work: Path, *, seed: int, quick: bool = False) -> Target:
    kind, classes = _TARGET_CLASSES[name]
    offset = 10 * (TARGETS.index(name) + 1)
    train = write_folder(render(kind, classes, TRAIN_PER_CLASS, seed + offset), work / name / "train")
    test = write_folder(render(kind, classes, TEST_PER_CLASS // (3 if quick else 1), seed + offset + 1),
                        work / name / "test")
    what = "10 rendered digits" if name == "digits" else f"{len(SHAPES)} geometric shapes"
    return Target(name, train, test, f"{what}, {TRAIN_PER_CLASS} training images per class")
