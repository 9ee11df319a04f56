"""The public fusion estimators: thin classes pairing a fusion module with a task head."""

from .concat import ConcatClassifier, ConcatSurvival, UnimodalClassifier, UnimodalSurvival
from .late import LateFusionClassifier, LateFusionSurvival

__all__ = [
    "ConcatClassifier",
    "ConcatSurvival",
    "LateFusionClassifier",
    "LateFusionSurvival",
    "UnimodalClassifier",
    "UnimodalSurvival",
]
