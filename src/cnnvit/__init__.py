"""cnnvit: train, evaluate, explain and compare CNNs and Vision Transformers on small images."""

__version__ = "0.1.0"
