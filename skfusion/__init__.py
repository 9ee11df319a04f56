"""skfusion: scikit-learn-compatible multimodal (image + EHR) survival and classification."""

from .fusion import (
    CoAttentionClassifier,
    CoAttentionSurvival,
    ConcatClassifier,
    ConcatSurvival,
    ContrastiveClassifier,
    ContrastiveSurvival,
    CrossAttentionClassifier,
    CrossAttentionSurvival,
    DAFTClassifier,
    DAFTSurvival,
    LateFusionClassifier,
    LateFusionSurvival,
    MedFuseClassifier,
    MedFuseSurvival,
    MMTMClassifier,
    MMTMSurvival,
    UnimodalClassifier,
    UnimodalSurvival,
)
from ._distributed import global_neg_partial_log_likelihood
from .model_selection import compare_fusion
from .ssl import ALIGN, ConVIRT, MedCAMAdapter, MedCAMClassifier, VICReg

__version__ = "0.1.0.dev0"

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
    "compare_fusion",
    "ALIGN",
    "ConVIRT",
    "MedCAMAdapter",
    "MedCAMClassifier",
    "VICReg",
    "global_neg_partial_log_likelihood",
]
