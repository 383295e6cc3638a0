# zoo-tinycnn/zoo_tinycnn/family.py
"""The `tinycnn` family: a config.json + model.safetensors pair per backbone, on the Hub or on disk.

Nothing heavy is imported at the top: `zoo list` and `zoo plugins` import this module, and must stay fast.
"""

import json
from pathlib import Path

from zoo.errors import InvalidInputError, ModelLoadError
from zoo.family import Architecture, Classifier, Family

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _download(spec, filename):
    """A file of the backbone: from its local folder, or from the Hub through huggingface_hub."""
    if spec.is_local:
        return spec.local_path / filename
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(spec.source, filename, revision=spec.revision))


class TinyCnnClassifier(Classifier):
    def __init__(self, model, labels, image_size, config):
        self.model, self.labels, self.task = model, list(labels), "image-cls"
        self.image_size, self.config = image_size, config

    def preprocess(self, example, *, train=False):
        import torch
        from PIL import Image
        from torchvision.transforms import functional as F

        image = Image.open(example) if isinstance(example, (str, Path)) else example
        image = image.convert("RGB").resize((self.image_size, self.image_size))
        if train and self.augment != "none" and torch.rand(()) < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return {"pixel_values": F.normalize(F.to_tensor(image), MEAN, STD)}

    def collate(self, items):
        import torch

        return {"pixel_values": torch.stack([item["pixel_values"] for item in items])}

    def forward(self, batch):
        return self.model(batch["pixel_values"])

    def features(self, batch):
        return self.model.pooled(batch["pixel_values"])

    def head_logits(self, head_inputs):
        return self.model.head(head_inputs)

    def head_parameter_names(self):
        return ["head.weight", "head.bias"]

    def parameter_groups(self):
        names = [n for n, _ in self.model.named_parameters()]
        stages = sorted({int(n.split(".")[1]) // 3 for n in names if n.startswith("stages.")})
        groups = [[n for n in names if n.startswith("stages.") and int(n.split(".")[1]) // 3 == s] for s in stages]
        return groups + [self.head_parameter_names()]

    def lora_targets(self):
        from torch import nn

        return [f"stages.{i}" for i, m in enumerate(self.model.stages) if isinstance(m, nn.Conv2d)]

    def save(self, directory):
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {**self.config, "num_classes": len(self.labels), "label_names": self.labels}
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        save_model(self.model, str(directory / "model.safetensors"))
        return [directory / "config.json", directory / "model.safetensors"]


class TinyCnnFamily(Family):
    name = "tinycnn"
    tasks = ("image-cls",)
    library = "zoo-tinycnn"

    def load_classifier(self, spec, *, task, labels, multi_label=False, pretrained=True,
                        trust_remote_code=False):
        from safetensors.torch import load_file

        from zoo_tinycnn.model import TinyCnn

        if task != "image-cls" or multi_label:
            raise InvalidInputError("tinycnn backbones do single-label image classification only")
        try:
            config = json.loads(_download(spec, "config.json").read_text())
            model = TinyCnn(config["widths"], num_classes=len(labels))
            if pretrained:
                weights = load_file(_download(spec, "model.safetensors"))
                # The pretrained head has other classes: keep the backbone, start the head fresh.
                weights = {k: v for k, v in weights.items() if not k.startswith("head.")}
                model.load_state_dict(weights, strict=False)
        except Exception as exc:
            raise ModelLoadError.for_backbone(spec, "tinycnn", exc) from exc
        return TinyCnnClassifier(model, labels, int(spec.input["image_size"]), config)

    def load_saved(self, directory):
        from safetensors.torch import load_model

        from zoo_tinycnn.model import TinyCnn

        config = json.loads((Path(directory) / "config.json").read_text())
        model = TinyCnn(config["widths"], num_classes=config["num_classes"])
        load_model(model, str(Path(directory) / "model.safetensors"))
        return TinyCnnClassifier(model, config["label_names"], config["image_size"], config)

    def can_load_saved(self, directory):
        path = Path(directory) / "config.json"
        return path.is_file() and json.loads(path.read_text()).get("family") == "tinycnn"

    def architecture(self, spec, *, task="image-cls", config=None, device="meta"):
        import torch

        from zoo_tinycnn.model import TinyCnn

        config = config or json.loads(_download(spec, "config.json").read_text())
        with torch.device(device):
            model = TinyCnn(config["widths"], num_classes=config.get("num_classes", 10))
        size = int(spec.input["image_size"])
        return Architecture(model.eval(), {"x": torch.empty(1, 3, size, size, device=device)})
