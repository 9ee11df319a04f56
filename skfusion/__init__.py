"""skfusion: scikit-learn-compatible multimodal (image + EHR) survival and classification."""

__version__ = "0.1.0.dev0"

__all__ = []
