"""Encoders: scikit-learn transformers that turn raw modality columns into embeddings."""

from .clmbr import CLMBREmbedder
from .._cardiac import heart_slices
from ._backbone import load_backbone
from ._tte_weights import load_tte_encoder
from .ct import CTVolumeEmbedder
from .image import ImageEmbedder
from .onehot import OneHotEHREncoder
from .timeseries import ClinicalTimeSeriesDiscretizer, events_from_long_table

__all__ = [
    "CLMBREmbedder",
    "CTVolumeEmbedder",
    "ClinicalTimeSeriesDiscretizer",
    "ImageEmbedder",
    "OneHotEHREncoder",
    "events_from_long_table",
    "heart_slices",
    "load_backbone",
    "load_tte_encoder",
]
