"""skfusion: scikit-learn-compatible multimodal (image + EHR) survival and classification.

The estimators are imported on first use (PEP 562): ``import skfusion.metrics`` loads the
metrics, not every network; ``from skfusion import ConcatSurvival`` loads that family's room.
"""

import importlib

__version__ = "0.1.0.dev0"

# Each public name of the package, and the module that defines it.
_SOURCES = {
    **dict.fromkeys(
        [
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
        ],
        "skfusion.fusion",
    ),
    "compare_fusion": "skfusion.model_selection",
    **dict.fromkeys(["ALIGN", "ConVIRT", "MedCAMAdapter", "MedCAMClassifier", "VICReg"], "skfusion.ssl"),
}
_SUBPACKAGES = (
    "datasets", "encoders", "fusion", "inspection", "losses", "metrics", "model_selection", "modules", "plot", "ssl",
)  # fmt: skip

__all__ = list(_SOURCES)


def __getattr__(name):
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_SOURCES, *_SUBPACKAGES])
