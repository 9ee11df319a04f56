"""Data sets: synthetic generators with a known truth and loaders for bundled real data."""

from ._cohort import make_imaging_ehr_cohort
from ._events_real import load_pbcseq_events
from ._icu import make_icu_timeseries
from ._meds import load_meds, make_meds_cohort, make_pbcseq_meds, meds_time_to_event
from ._paired import make_paired_image_ehr
from ._pairing import pair_images
from ._pbcseq_series import load_pbcseq_timeseries
from ._real import load_breast_cancer_multimodal
from ._synthetic import make_multimodal_classification, make_multimodal_survival

__all__ = [
    "load_breast_cancer_multimodal",
    "load_meds",
    "load_pbcseq_events",
    "load_pbcseq_timeseries",
    "make_icu_timeseries",
    "make_imaging_ehr_cohort",
    "make_meds_cohort",
    "make_multimodal_classification",
    "make_multimodal_survival",
    "make_paired_image_ehr",
    "make_pbcseq_meds",
    "meds_time_to_event",
    "pair_images",
]
