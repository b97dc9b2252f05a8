"""brainalign: brain and behavioral alignment of language models."""

__version__ = "0.1.0"
