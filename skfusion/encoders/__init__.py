"""Encoders: scikit-learn transformers that turn raw modality columns into embeddings."""

from .ct import CTVolumeEmbedder
from .image import ImageEmbedder

__all__ = ["CTVolumeEmbedder", "ImageEmbedder"]
