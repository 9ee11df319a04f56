"""The 17 clinical variables of the MIMIC-III benchmark, as its discretizer configures them.

H. Harutyunyan, H. Khachatrian, D. C. Kale, G. Ver Steeg and A. Galstyan, "Multitask learning
and benchmarking with clinical time series data", Scientific Data 6, 96 (2019); reused by
MedFuse and MedMod on MIMIC-IV. Read by the discretizer
(:class:`~skfusion.encoders.ClinicalTimeSeriesDiscretizer`) and by the ICU simulator
(:func:`~skfusion.datasets.make_icu_timeseries`), which writes what the discretizer reads: a
data specification below both, importing neither.
"""

# Variables, category lists and normal values follow the MIMIC-III benchmark's discretizer
# configuration (channel order and category order included), so that the 76 columns line up
# with series produced by that code; the "Glascow" spelling there is corrected here.
VARIABLES = (
    "Capillary refill rate",
    "Diastolic blood pressure",
    "Fraction inspired oxygen",
    "Glasgow coma scale eye opening",
    "Glasgow coma scale motor response",
    "Glasgow coma scale total",
    "Glasgow coma scale verbal response",
    "Glucose",
    "Heart Rate",
    "Height",
    "Mean blood pressure",
    "Oxygen saturation",
    "Respiratory rate",
    "Systolic blood pressure",
    "Temperature",
    "Weight",
    "pH",
)

CATEGORIES = {
    "Capillary refill rate": ("0.0", "1.0"),
    "Glasgow coma scale eye opening": (
        "To Pain", "3 To speech", "1 No Response", "4 Spontaneously",
        "None", "To Speech", "Spontaneously", "2 To pain",
    ),
    "Glasgow coma scale motor response": (
        "1 No Response", "3 Abnorm flexion", "Abnormal extension", "No response",
        "4 Flex-withdraws", "Localizes Pain", "Flex-withdraws", "Obeys Commands",
        "Abnormal Flexion", "6 Obeys Commands", "5 Localizes Pain", "2 Abnorm extensn",
    ),
    "Glasgow coma scale total": ("11", "10", "13", "12", "15", "14", "3", "5", "4", "7", "6", "9", "8"),
    "Glasgow coma scale verbal response": (
        "1 No Response", "No Response", "Confused", "Inappropriate Words",
        "Oriented", "No Response-ETT", "5 Oriented", "Incomprehensible sounds",
        "1.0 ET/Trach", "4 Confused", "2 Incomp sounds", "3 Inapprop words",
    ),
}  # fmt: skip

# Numeric codes of the categorical variables (the score a numbered category starts with).
NUMERIC_CODES = {
    "Capillary refill rate": {0: "0.0", 1: "1.0"},
    "Glasgow coma scale eye opening": {1: "1 No Response", 2: "2 To pain", 3: "3 To speech", 4: "4 Spontaneously"},
    "Glasgow coma scale motor response": {
        1: "1 No Response", 2: "2 Abnorm extensn", 3: "3 Abnorm flexion",
        4: "4 Flex-withdraws", 5: "5 Localizes Pain", 6: "6 Obeys Commands",
    },
    "Glasgow coma scale total": {k: str(k) for k in range(3, 16)},
    "Glasgow coma scale verbal response": {
        1: "1 No Response", 2: "2 Incomp sounds", 3: "3 Inapprop words", 4: "4 Confused", 5: "5 Oriented",
    },
}  # fmt: skip

NORMAL_VALUES = {
    "Capillary refill rate": "0.0",
    "Diastolic blood pressure": 59.0,
    "Fraction inspired oxygen": 0.21,
    "Glasgow coma scale eye opening": "4 Spontaneously",
    "Glasgow coma scale motor response": "6 Obeys Commands",
    "Glasgow coma scale total": "15",
    "Glasgow coma scale verbal response": "5 Oriented",
    "Glucose": 128.0,
    "Heart Rate": 86.0,
    "Height": 170.0,
    "Mean blood pressure": 77.0,
    "Oxygen saturation": 98.0,
    "Respiratory rate": 19.0,
    "Systolic blood pressure": 118.0,
    "Temperature": 36.6,
    "Weight": 81.0,
    "pH": 7.4,
}

# Inclusive physical limits, not clinical outlier bounds: a value outside them is a unit or
# entry error (FiO2 as a percentage, temperature in Fahrenheit, a negative rate).
PLAUSIBLE_RANGES = {
    "Diastolic blood pressure": (0.0, 300.0, "mmHg"),
    "Fraction inspired oxygen": (0.0, 1.0, "(fraction, not percent)"),
    "Glucose": (1.0, 2000.0, "mg/dL"),
    "Heart Rate": (0.0, 350.0, "beats/min"),
    "Height": (30.0, 275.0, "cm"),
    "Mean blood pressure": (0.0, 300.0, "mmHg"),
    "Oxygen saturation": (0.0, 100.0, "%"),
    "Respiratory rate": (0.0, 150.0, "breaths/min"),
    "Systolic blood pressure": (0.0, 400.0, "mmHg"),
    "Temperature": (14.0, 47.0, "degrees Celsius"),
    "Weight": (1.0, 700.0, "kg"),
    "pH": (6.0, 8.5, ""),
}
