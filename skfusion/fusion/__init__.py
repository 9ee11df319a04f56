"""The public fusion estimators: thin classes pairing a fusion module with a task head."""

from .concat import ConcatClassifier, ConcatSurvival, UnimodalClassifier, UnimodalSurvival
from .daft import DAFTClassifier, DAFTSurvival
from .late import LateFusionClassifier, LateFusionSurvival
from .medfuse import MedFuseClassifier, MedFuseSurvival
from .mmtm import MMTMClassifier, MMTMSurvival

__all__ = [
    "ConcatClassifier",
    "ConcatSurvival",
    "DAFTClassifier",
    "DAFTSurvival",
    "LateFusionClassifier",
    "LateFusionSurvival",
    "MMTMClassifier",
    "MMTMSurvival",
    "MedFuseClassifier",
    "MedFuseSurvival",
    "UnimodalClassifier",
    "UnimodalSurvival",
]
