"""Encoders: scikit-learn transformers that turn raw modality columns into embeddings."""

from .ct import CTVolumeEmbedder
from .image import ImageEmbedder
from .timeseries import ClinicalTimeSeriesDiscretizer, events_from_long_table

__all__ = ["CTVolumeEmbedder", "ClinicalTimeSeriesDiscretizer", "ImageEmbedder", "events_from_long_table"]
