"""Models: a registry keyed by name (one ResNet18 variant today)."""
from .resnet import MODELS, AudioResNet, build_model

__all__ = ["MODELS", "AudioResNet", "build_model"]
