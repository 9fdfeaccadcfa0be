"""What every member head shares: its ordered labels and its input height, checked once."""
from __future__ import annotations

from torch import nn


class LabelledHead(nn.Module):
    """A module whose logits follow ``labels`` and whose input has ``height`` rows.

    Example:
        >>> LabelledHead(["a", "b"], 3).height
        3
    """

    def __init__(self, labels: list[str], height: int) -> None:
        super().__init__()
        if height < 1:
            raise ValueError(f"height must be >= 1, got {height}")
        if len(labels) < 2:
            raise ValueError(f"need at least two labels, got {labels}")
        self.labels = list(labels)  # the output order, saved with the checkpoint
        self.height = int(height)  # rows of the representation (feature rows or encoder width)
