"""Data sets: synthetic generators with a known truth and loaders for bundled real data."""

from ._real import load_breast_cancer_multimodal
from ._synthetic import make_multimodal_classification, make_multimodal_survival

__all__ = ["load_breast_cancer_multimodal", "make_multimodal_classification", "make_multimodal_survival"]
