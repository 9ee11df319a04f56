"""The public fusion estimators: thin classes pairing a fusion module with a task head."""

from .attention import CoAttentionClassifier, CoAttentionSurvival, CrossAttentionClassifier, CrossAttentionSurvival
from .concat import ConcatClassifier, ConcatSurvival, UnimodalClassifier, UnimodalSurvival
from .contrastive import ContrastiveClassifier, ContrastiveSurvival
from .daft import DAFTClassifier, DAFTSurvival
from .late import LateFusionClassifier, LateFusionSurvival
from .medfuse import MedFuseClassifier, MedFuseSurvival
from .mmtm import MMTMClassifier, MMTMSurvival

__all__ = [
    "CoAttentionClassifier",
    "CoAttentionSurvival",
    "ConcatClassifier",
    "ConcatSurvival",
    "ContrastiveClassifier",
    "ContrastiveSurvival",
    "CrossAttentionClassifier",
    "CrossAttentionSurvival",
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
