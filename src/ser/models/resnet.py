"""AudioResNet: torchvision's ResNet18 for one-channel feature maps of any height.

The stock ResNet18 halves both axes five times (stem conv, max-pool, layers 2-4). A
128-row mel survives that (4 rows left), a 1-row ZCR curve or a 6-row tonnetz does
not carry any frequency structure through it. Here the stride along the feature
(row) axis is kept at 2 only while at least ``MIN_ROWS`` rows remain, and set to 1
after that; the time axis is always downsampled as usual. So every representation
reaches the last block with real content, and the adaptive average pool makes the
classifier independent of input size.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import LabelledHead
from torchvision.models import resnet18

MIN_ROWS = 8  # keep halving the row axis only while at least this many rows are left


def _row_strides(height: int) -> list[int]:
    """Row stride of each downsampling stage (stem conv, max-pool, layer2, layer3, layer4)."""
    strides, h = [], height
    for _ in range(5):
        s = 2 if h >= MIN_ROWS else 1
        strides.append(s)
        h = (h + s - 1) // s
    return strides


class AudioResNet(LabelledHead):
    """ResNet18 over a (batch, 1, rows, frames) feature map, with its labels attached.

    Args:
        labels: ordered class names; the output logits follow this order.
        height: rows of the representation (decides the row strides).
        dropout: dropout before the classifier.

    Example:
        >>> m = AudioResNet(["angry", "sad"], height=1)
        >>> m(torch.zeros(2, 1, 1, 188)).shape
        torch.Size([2, 2])
    """

    def __init__(self, labels: list[str], height: int, dropout: float = 0.3) -> None:
        super().__init__(labels, height)
        net = resnet18(weights=None, num_classes=len(labels))
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        s = _row_strides(height)
        net.conv1.stride = (s[0], 2)
        net.maxpool = nn.MaxPool2d(kernel_size=3, stride=(s[1], 2), padding=1)
        for layer, stride in zip((net.layer2, net.layer3, net.layer4), s[2:]):
            block = layer[0]
            block.conv1.stride = (stride, 2)
            block.downsample[0].stride = (stride, 2)
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, len(labels)))
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (batch, rows, frames) -> add the channel axis
            x = x.unsqueeze(1)
        return self.net(x)
