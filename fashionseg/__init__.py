"""fashionseg: per-pixel person and clothing segmentation of fashion photos."""

__version__ = "0.1.0"
