"""The timm family: any timm model, from the Hub (``timm/...`` repos) or a local folder saved by timm."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from zoo.errors import InvalidInputError, ModelLoadError
from zoo.family import Architecture, AttributionSpace, Classifier, Family, grid_units

IMAGE_TASK = "image-cls"
# How to turn refused pickled weights into what zoo loads (quoted in the error).
CONVERT_TO_SAFETENSORS = ("load the model there with timm and save it with "
                          "timm.models.save_for_hf(model, DIR, safe_serialization=True)")
# timm create_transform options for each training augmentation preset.
_AUGMENT_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "light": {"scale": (0.5, 1.0), "hflip": 0.5, "color_jitter": 0.1},
    # mmax9: RandAugment's magnitude, drawn around 9, is clipped at 9 rather than 10, where the increasing posterize
    # keeps 0 bits, which Pillow 13 refuses (ValueError in the middle of a run).
    "strong": {"scale": (0.25, 1.0), "hflip": 0.5, "auto_augment": "rand-m9-mstd0.5-inc1-mmax9", "re_prob": 0.25},
}


def _timm_model_id(spec) -> str:
    """The name timm.create_model understands for a spec's weights: hf-hub:repo[@revision] or local-dir:PATH."""
    if spec.is_local:
        return f"local-dir:{spec.local_path}"
    return f"hf-hub:{spec.source}" + (f"@{spec.revision}" if spec.revision else "")


def _arch(spec) -> str:
    return spec.arch or spec.name.split(".")[0]


def _input_size_overlay(image_size: int) -> dict[str, Any]:
    """The pretrained-config fields that make a model's own preprocessing N×N, saved with it.

    ``crop_pct`` 1.0: a size chosen for the data (32 for 32×32 images) keeps the whole image, where ImageNet's
    0.875 centre crop would cut away its border. Models with a fixed input size (ViTs) are built for it by timm
    from ``input_size``, resampling their position embeddings from the checkpoint's; CNNs take any size.
    """
    return {"input_size": (3, image_size, image_size), "crop_pct": 1.0, "crop_mode": "center",
            "test_input_size": None, "test_crop_pct": None}


class TimmClassifier(Classifier):
    """A timm model whose classifier was reset for this task's labels."""

    def __init__(self, model, labels: Sequence[str], *, task: str = IMAGE_TASK) -> None:
        import timm.data

        self.model, self.labels, self.task = model, list(labels), task
        self.data_config = timm.data.resolve_data_config({}, model=model)
        self.image_size = int(self.data_config["input_size"][-1])
        self._transforms: dict[bool, Any] = {}

    # --- data ---------------------------------------------------------------------------------------------------

    def transform(self, *, train: bool):
        """timm's own eval transform (resize, centre crop, normalise), or its training transform for the
        augmentation preset: light = random-resized crop and flip; strong = also RandAugment and random erasing."""
        import timm.data

        preset = self.augment if train else "none"
        if preset not in self._transforms:
            options = _AUGMENT_PRESETS.get(preset)
            if options is None:
                raise InvalidInputError(f"unknown augmentation {preset!r}; choose none, light or strong")
            is_training = preset != "none"
            self._transforms[preset] = timm.data.create_transform(
                **self.data_config, is_training=is_training, **(options if is_training else {}))
        return self._transforms[preset]

    def preprocess(self, example: Any, *, train: bool = False) -> dict[str, Any]:
        from PIL import Image

        if isinstance(example, (str, Path)):
            from zoo.images import open_image

            # zoo's rule for a readable image (fully decoded, size cap, finite values), the same as its data checks
            with open_image(example) as opened:
                image = opened.convert("RGB")
        elif isinstance(example, Image.Image):
            image = example.convert("RGB")
        else:
            raise InvalidInputError(f"expected an image path or PIL image, got {type(example).__name__}")
        return {"pixel_values": self.transform(train=train)(image)}

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        return {"pixel_values": torch.stack([item["pixel_values"] for item in items])}

    def attribution_space(self, example: Any, batch: dict[str, Any]) -> AttributionSpace:
        """Pixels, against a baseline of zeros after normalisation (the mean colour of the backbone's pretraining
        data), summed per region of an 8 × 8 grid; drawn on the image as the model saw it (resized, cropped)."""
        import torch

        pixels = batch["pixel_values"]
        _, channels, height, width = pixels.shape
        cells, names, spans = grid_units(height, width)
        units = torch.tensor(cells, device=pixels.device).expand(1, channels, height, width)
        mean = torch.tensor(self.data_config["mean"], device=pixels.device).view(-1, 1, 1)
        std = torch.tensor(self.data_config["std"], device=pixels.device).view(-1, 1, 1)
        view = ((pixels[0].detach().float() * std + mean).clamp(0, 1) * 255).round().byte()
        return AttributionSpace(input="pixel_values", baseline=torch.zeros_like(pixels), units=units, names=names,
                                spans=spans, view=view.permute(1, 2, 0).cpu().numpy(), view_axes=(2, 3))

    # --- model --------------------------------------------------------------------------------------------------

    def forward(self, batch: dict[str, Any]):
        return self.model(batch["pixel_values"])

    def features(self, batch: dict[str, Any]):
        return self.model.forward_head(self.model.forward_features(batch["pixel_values"]), pre_logits=True)

    def head_logits(self, head_inputs):
        # timm's forward_head(pre_logits=True) stops right before the classifier module.
        return self.model.get_classifier()(head_inputs)

    def _head_prefix(self) -> str:
        head = self.model.get_classifier()
        for name, module in self.model.named_modules():
            if module is head:
                return name
        raise ModelLoadError("timm model has no classifier module")  # pragma: no cover

    def head_parameter_names(self) -> list[str]:
        prefix = self._head_prefix()
        return [name for name, _ in self.model.named_parameters() if name.startswith(prefix + ".")]

    def parameter_groups(self) -> list[list[str]]:
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=False))
        return [list(names) for _, names in sorted(groups.items())]

    def lora_targets(self) -> list[str]:
        import torch.nn as nn

        head = self._head_prefix()
        modules = [(n, m) for n, m in self.model.named_modules() if n and not n.startswith(head)]
        attention = [n for n, m in modules if isinstance(m, nn.Linear) and n.split(".")[-1] in ("qkv", "q", "kv", "v")]
        if attention:
            return attention
        linear = [n for n, m in modules if isinstance(m, nn.Linear)]
        if linear:
            return linear
        # Pure CNNs: adapt the pointwise (1x1) convolutions inside the stages, the bulk of their parameters.
        return [n for n, m in modules if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]

    def save(self, directory: str | Path) -> list[Path]:
        from timm.models import save_for_hf

        directory = Path(directory)
        save_for_hf(self.model, str(directory), model_config={"label_names": self.labels},
                    safe_serialization=True)
        return [directory / "config.json", directory / "model.safetensors"]


class TimmFamily(Family):
    """Image classification backbones through timm."""

    name = "timm"
    tasks = (IMAGE_TASK,)
    library = "timm"
    takes_image_size = True
    # timm's CNNs (ResNets, ConvNeXts, EfficientNets) fine-tune well with AdamW near 1e-4 at batch 32, twice the
    # rate transformers' recipes use (BERT: 2e-5 to 5e-5); timm's ViTs take it too, under warm-up and clipping.
    preferred_lr = MappingProxyType({"full": 1e-4})

    def load_classifier(self, spec, *, task: str, labels: Sequence[str], multi_label: bool = False,
                        pretrained: bool = True, trust_remote_code: bool = False,
                        image_size: int | None = None) -> TimmClassifier:
        import timm

        if task != IMAGE_TASK:
            raise InvalidInputError(f"the timm family handles {IMAGE_TASK} only, not {task!r}")
        if multi_label:
            raise InvalidInputError("multi-label classification is supported for text-cls only")
        model_id = _timm_model_id(spec) if pretrained else _arch(spec)
        overlay = {"pretrained_cfg_overlay": _input_size_overlay(image_size)} if image_size else {}
        try:
            model = timm.create_model(model_id, pretrained=pretrained, num_classes=len(labels), **overlay)
        except Exception as exc:  # timm raises many types (RuntimeError, OSError, hub errors)
            raise ModelLoadError.for_backbone(spec, "timm", exc, convert=CONVERT_TO_SAFETENSORS) from exc
        if image_size:
            _check_runs_at(model, spec, image_size)
        return TimmClassifier(model, labels, task=task)

    def load_saved(self, directory: str | Path) -> TimmClassifier:
        # The saved pretrained_cfg carries the input size and crop the run used (ViTs are rebuilt for it).
        import timm

        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        try:
            model = timm.create_model(f"local-dir:{directory}", pretrained=True)
        except Exception as exc:  # timm raises many types (RuntimeError, OSError, ...)
            raise ModelLoadError.for_saved(directory, "timm", exc, convert=CONVERT_TO_SAFETENSORS) from exc
        labels = config.get("label_names") or [str(i) for i in range(config["num_classes"])]
        return TimmClassifier(model, labels)

    def load_preprocessing(self, directory: str | Path) -> TimmClassifier:
        # The architecture on the meta device, with the saved pretrained_cfg (input size, crop, mean, std).
        import timm
        import torch

        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        try:
            with torch.device("meta"):
                model = timm.create_model(f"local-dir:{directory}", pretrained=False)
        except Exception as exc:  # timm raises many types (RuntimeError, OSError, ...)
            raise ModelLoadError.for_saved(directory, "timm", exc, convert=CONVERT_TO_SAFETENSORS) from exc
        labels = config.get("label_names") or [str(i) for i in range(config["num_classes"])]
        return TimmClassifier(model, labels)

    def can_load_saved(self, directory: str | Path) -> bool:
        config = Path(directory) / "config.json"
        if not config.is_file():
            return False
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return False
        return "architecture" in data and "pretrained_cfg" in data

    def usage_snippet(self, *, task: str, repo_id: str | None, revision: str | None = None,
                      multi_label: bool = False, example: str = "") -> str:
        where = (f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")) if repo_id else "local-dir:PATH"
        activation = "sigmoid()" if multi_label else "softmax(-1)"
        return ('import timm\nimport torch\nfrom PIL import Image\n\n'
                f'model = timm.create_model("{where}", pretrained=True).eval()\n'
                'transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))\n'
                'labels = model.pretrained_cfg["label_names"]\n\n'
                f'image = Image.open("{example}").convert("RGB")\n'
                'with torch.inference_mode():\n'
                f'    scores = model(transform(image).unsqueeze(0)).{activation}[0]\n'
                'print({label: round(float(score), 4) for label, score in zip(labels, scores)})')

    def onnx_snippet(self, *, task: str, where: str, multi_label: bool = False, example: str = "") -> str:
        # timm's eval transform in PIL and numpy: resize the short side to floor(size / crop_pct), crop the centre
        # (or squash to the square), scale to [0, 1], normalise, channels first.
        scores = ("scores = 1 / (1 + np.exp(-logits))\n" if multi_label else
                  "scores = np.exp(logits - logits.max())\nscores /= scores.sum()\n")
        return ('import json\nimport math\n\nimport numpy as np\nimport onnxruntime\nfrom PIL import Image\n\n'
                f'config = json.load(open("{where}/config.json"))\n'
                'pre, labels = config["pretrained_cfg"], config["label_names"]\n'
                'size, crop_pct = pre["input_size"][-1], pre.get("crop_pct") or 0.875\n'
                'resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}'
                '[pre.get("interpolation", "bilinear")]\n\n'
                f'image = Image.open("{example}").convert("RGB")\n'
                'scale = math.floor(size / crop_pct)\n'
                'if pre.get("crop_mode") == "squash":\n'
                '    image = image.resize((scale, scale), resample)\n'
                'else:   # the short side to `scale`, keeping the aspect ratio\n'
                '    width, height = image.size\n'
                '    short, long = min(width, height), max(width, height)\n'
                '    new = (scale, int(scale * long / short))\n'
                '    image = image.resize(new if width <= height else new[::-1], resample)\n'
                'left, top = round((image.width - size) / 2), round((image.height - size) / 2)\n'
                'image = image.crop((left, top, left + size, top + size))\n'
                'pixels = (np.asarray(image, dtype=np.float32) / 255 - pre["mean"]) / pre["std"]\n'
                'pixels = pixels.transpose(2, 0, 1)[None].astype(np.float32)\n\n'
                f'session = onnxruntime.InferenceSession("{where}/model.onnx")\n'
                'logits = session.run(None, {"pixel_values": pixels})[0][0]\n'
                f'{scores}'
                'print({label: round(float(score), 4) for label, score in zip(labels, scores)})')

    def architecture(self, spec, *, task: str = IMAGE_TASK, config: dict[str, Any] | None = None,
                     device: str = "meta") -> Architecture:
        import timm
        import torch

        size = int(spec.input["image_size"])
        with torch.device(device):
            model = timm.create_model(_arch(spec), pretrained=False, **(config or {}))
        model.eval()
        return Architecture(model, {"x": torch.empty(1, 3, size, size, device=device)})


def _check_runs_at(model, spec, image_size: int) -> None:
    """One forward pass on a blank image, in eval mode, so a size the network cannot take (a ViT's side must be a
    multiple of its patch) is refused, with timm's reason, before the run starts."""
    import torch

    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    except Exception as exc:  # timm and torch raise many types (RuntimeError, AssertionError, ValueError)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise InvalidInputError(f"--image-size {image_size}: {spec.name} cannot take {image_size}x{image_size} "
                                f"images ({reason}); choose another size") from exc
    finally:
        model.train(training)
