"""Pooled heads for sequences of embeddings (a pretrained encoder's hidden states).

A frozen encoder already did the hard part; what is left is to summarise a clip's
frames and draw a boundary. :class:`AttentiveStatsHead` is attentive statistics pooling
(Okabe et al., 2018): a small scorer weighs every frame, the clip becomes the weighted
mean and standard deviation of its frames, and a linear layer (or a one-hidden-layer
MLP) classifies that. Silence and padding frames can be weighted down, which a plain
mean cannot do. Everything is matrix products and reductions, so it exports to ONNX
with a dynamic time axis.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import LabelledHead

ATTENTION_DIM = 128  # hidden width of the frame scorer
MIN_VAR = 1e-6  # variance floor before the square root (silence gives exactly 0)


class AttentiveStatsHead(LabelledHead):
    """Attentive statistics pooling + classifier over (batch, dims, frames) embeddings.

    Args:
        labels: ordered class names; the output logits follow this order.
        height: embedding dimensions (the "rows" of the representation).
        dropout: dropout on the pooled statistics.
        hidden: width of a hidden layer before the classifier; 0 = linear classifier.

    Example:
        >>> head = AttentiveStatsHead(["angry", "sad"], height=16)
        >>> head(torch.zeros(3, 16, 50)).shape
        torch.Size([3, 2])
    """

    attentive = True  # False: every frame weighs the same (plain mean and std pooling)

    def __init__(self, labels: list[str], height: int, dropout: float = 0.3, hidden: int = 0) -> None:
        super().__init__(labels, height)
        self.score = nn.Sequential(nn.Conv1d(height, ATTENTION_DIM, 1), nn.Tanh(), nn.Conv1d(ATTENTION_DIM, 1, 1))
        # standardise the pooled statistics (means and stds live on different scales), as a
        # linear probe on standardised statistics does; folds into constants at export
        layers: list[nn.Module] = [nn.BatchNorm1d(2 * height, affine=False), nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(2 * height, hidden), nn.GELU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden or 2 * height, len(labels)))
        self.classifier = nn.Sequential(*layers)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, dims, frames) -> (batch, 2 * dims): attention-weighted mean and std."""
        if self.attentive:
            w = torch.softmax(self.score(x), dim=-1)
        else:
            w = torch.full_like(x[:, :1], 1.0 / x.shape[-1])
        mean = (x * w).sum(dim=-1)
        var = (x * x * w).sum(dim=-1) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp(min=MIN_VAR))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # (batch, 1, dims, frames), as the training loop and export feed 2-D maps
            x = x.squeeze(1)
        return self.classifier(self.pool(x))


class StatsHead(AttentiveStatsHead):
    """Mean and standard deviation pooling (no attention) + classifier: the linear probe as a member.

    Example:
        >>> StatsHead(["angry", "sad"], height=16)(torch.zeros(3, 16, 50)).shape
        torch.Size([3, 2])
    """

    attentive = False
