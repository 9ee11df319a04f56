"""skfusion: scikit-learn-compatible multimodal (image + EHR) survival and classification."""

from .fusion import (
    ConcatClassifier,
    ConcatSurvival,
    LateFusionClassifier,
    LateFusionSurvival,
    UnimodalClassifier,
    UnimodalSurvival,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ConcatClassifier",
    "ConcatSurvival",
    "LateFusionClassifier",
    "LateFusionSurvival",
    "UnimodalClassifier",
    "UnimodalSurvival",
]
