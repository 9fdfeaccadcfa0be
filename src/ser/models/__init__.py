"""Member heads: :class:`AudioResNet` for 2-D representations, :class:`AttentiveStatsHead`
for encoder hidden states; one registry builds either by name."""
from .heads import AttentiveStatsHead, StatsHead
from .resnet import AudioResNet

MODELS = {"resnet18": AudioResNet, "asp": AttentiveStatsHead, "stats": StatsHead}


def build_model(name: str, labels: list[str], height: int, **kwargs):
    """Build a registered model by name; unknown names list the known ones.

    Example:
        >>> build_model("asp", ["a", "b"], 8).height
        8
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](labels, height, **kwargs)


__all__ = ["AttentiveStatsHead", "AudioResNet", "MODELS", "StatsHead", "build_model"]
