"""Encoders: scikit-learn transformers that turn raw modality columns into embeddings."""

__all__ = []
