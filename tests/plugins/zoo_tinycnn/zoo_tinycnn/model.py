# zoo-tinycnn/zoo_tinycnn/model.py
"""The network: the only module that imports torch at its top, imported by the family's methods when they run."""

from torch import nn


class TinyCnn(nn.Module):
    def __init__(self, widths=(8, 16, 32), num_classes=10):
        super().__init__()
        layers, channels = [], 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def pooled(self, x):
        return self.stages(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.pooled(x))
