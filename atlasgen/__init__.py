"""atlasgen: a static, Microscope-like interpretability atlas for vision models."""

__version__ = "0.1.0"
