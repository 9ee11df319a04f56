"""Image-EHR pretraining without labels: MedCAM's adaptation and MedMod's SSL baselines.

- :class:`MedCAMAdapter` adapts an image embedding to the EHR time series (the global
  + local top-k alignment of MedCAM, under review); :class:`MedCAMClassifier` fine-tunes it with a linear
  head and predicts from the image alone.
- :class:`ConVIRT`, :class:`ALIGN` and :class:`VICReg` (MedMod, Elsharief et al. 2025, section 3.3.2)
  learn image and EHR embeddings; ``transform`` returns them for linear probing in a
  ``Pipeline``.

:func:`skfusion.datasets.make_paired_image_ehr` makes paired data where the EHR says what in
the image matters.
"""

from ._baselines import ALIGN, ConVIRT, VICReg
from ._medcam import MedCAMAdapter, MedCAMClassifier

__all__ = ["ALIGN", "ConVIRT", "MedCAMAdapter", "MedCAMClassifier", "VICReg"]

from ._tte import TimeToEventPretraining  # noqa: E402

__all__ += ["TimeToEventPretraining"]
