"""CLMBR patient embeddings from per-patient event frames (Zhang et al., 2026, section 2.1).

:class:`CLMBREmbedder` either loads a released CLMBR checkpoint (CLMBR-T-base, femr layout)
and reads out its representation, or pretrains a small CLMBR-style model on the training
event frames with the same self-supervised next-code objective. The network itself lives in
:mod:`skfusion.modules.clmbr`; this module turns events into tokens the way femr 0.2.2/0.2.3
does and runs the model in batches.
"""

import os
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted

from .._compat import Interval, StrOptions
from .._engine import BalancedBatches, draw_seed, make_net, seeded, transformer_precision
from .._training import HELD_OUT_PARAMETERS, MIN_VALIDATION_ROWS, held_out_split, record_epochs
from ..modules.clmbr import (
    DICTIONARY_FILE,
    CLMBRModel,
    NextCodeLoss,
    NextCodePretraining,
    complete_config,
    init_clmbr_weights,
    last_states,
    load_femr_checkpoint,
    save_femr_checkpoint,
)
from ._base import BaseColumnEncoder
from ._events import EventBatch, EventColumnMixin, _is_real, runs

# The birth code of MEDS 0.1.3, which femr 0.2.2/0.2.3 (and CLMBR-T-base's inputs) use.
MEDS_BIRTH_CODE = "SNOMED/184099003"
SECONDS_PER_DAY = 86400.0
# An age beyond this is not a time in days but a unit or parsing error; refused by name.
MAX_AGE_DAYS = 1000 * 365.25
# femr squares the standardised age in float16 (as it stores it): beyond this the square is inf.
MAX_NORMED_AGE = float(np.sqrt(np.finfo(np.float16).max))
# Resolution of the training-value distribution each code's last value is placed on.
N_VALUE_QUANTILES = 101
# Fields femr's tokenizer reads from each kind of vocabulary entry (flat, hierarchical).
VOCAB_FIELDS = {
    "code": (("code_string",), ("code_string",)),
    "text": (("code_string", "text_string"), ("text_string",)),
    "numeric": (("code_string", "val_start", "val_end"), ("val_start",)),
}


class _Tokens(NamedTuple):
    """One patient's token sequence: ids (``(T,)`` or ``(T, K)`` bags), bag weights, ages."""

    ids: np.ndarray
    weights: np.ndarray | None
    ages: np.ndarray  # days since birth, float32 (rotary positions)
    normed_ages: np.ndarray  # standardised age in seconds, float16 as femr stores it
    where: str


def _check_normed_ages(history, rows, ages, vocabulary, source):
    """Refuse a standardised age whose float16 square (femr's age feature) is not finite.

    ``ages`` are the tokens' ages in days (float32, as the model reads them), ``rows`` their rows.
    """
    normed = (ages.astype(float) * SECONDS_PER_DAY - vocabulary.age_mean) / vocabulary.age_std
    bad = np.abs(normed) > MAX_NORMED_AGE
    if bad.any():
        mine = rows == rows[np.argmax(bad)]
        age = ages[mine][np.argmax(np.abs(normed[mine]))]
        raise ValueError(
            f"{history.batch.where[rows[np.argmax(bad)]]}: column 'time' gives an age of {age:g} days, more than "
            f"{MAX_NORMED_AGE:.0f} standard deviations (age_stats of {source}) from the mean age: the model's "
            "float16 age features cannot hold it."
        )


class _Vocabulary:
    """femr's tokenizer over a ``dictionary.msgpack`` mapping (flat or hierarchical).

    Flat: a measurement with a value maps to the numeric entry of its code whose
    ``[val_start, val_end)`` holds the value; one with a text value to its (code, text)
    entry; any other to its code entry; nothing found means no token. Hierarchical: a bag of
    the code and its ancestors in the vocabulary (weights ``1 / n``), then the text entry of
    the unit (lower case, spaces removed), the global numeric bin of the value and the text
    entry of the text value, each with weight 1 (femr 0.2.3's ``get_feature_codes``).
    """

    def __init__(self, dictionary, code_parents=None):
        self.size = len(dictionary["vocab"])
        self.is_hierarchical = bool(dictionary["is_hierarchical"])
        self.age_mean = float(dictionary["age_stats"]["mean"])
        self.age_std = float(dictionary["age_stats"]["std"])
        self.code_parents = code_parents or {}
        self.codes, self.texts, self.numeric = {}, {}, {}
        numeric = []
        for i, entry in enumerate(dictionary["vocab"]):
            kind = entry["type"]
            if kind == "code":
                self.codes[entry["code_string"]] = i
            elif kind == "text" and self.is_hierarchical:
                self.texts[entry["text_string"]] = i
            elif kind == "text":
                self.texts[(entry["code_string"], entry["text_string"])] = i
            elif kind == "numeric" and self.is_hierarchical:
                numeric.append((entry["val_start"], i))
            elif kind == "numeric":
                self.numeric.setdefault(entry["code_string"], []).append((entry["val_start"], entry["val_end"], i))
        numeric.sort()
        self.numeric_starts = np.array([start for start, _ in numeric[1:]], dtype=float)
        self.numeric_ids = np.array([i for _, i in numeric], dtype=np.int64)
        self._ancestors = {}

    def features(self, batch):
        """Each event's token ids ``(n_events, bag)`` (-1: none) and (hierarchical) bag weights, or None."""
        if self.is_hierarchical:
            return self._bags(batch)
        ids = np.full(len(batch.codes), -1, dtype=np.int64)
        valued = ~np.isnan(batch.values)
        measured = np.flatnonzero(valued)
        order, bounds = runs(batch.codes[measured])
        for a, b in zip(bounds[:-1], bounds[1:]):
            events = measured[order[a:b]]
            found = np.full(len(events), -1, dtype=np.int64)
            # The first entry (in the vocabulary's order) whose range holds the value wins.
            for start, end, i in reversed(self.numeric.get(batch.vocabulary[batch.codes[events[0]]], [])):
                found[(start <= batch.values[events]) & (batch.values[events] < end)] = i
            ids[events] = found
        texts, distinct = _factorize(batch.texts, len(ids))
        texted = np.flatnonzero(~valued & (texts >= 0))
        pairs, inverse = np.unique(batch.codes[texted] * (len(distinct) + 1) + texts[texted], return_inverse=True)
        found = [self.texts.get((batch.vocabulary[p // (len(distinct) + 1)], distinct[p % (len(distinct) + 1)]), -1)
                 for p in pairs]  # fmt: skip
        ids[texted] = np.asarray(found, dtype=np.int64)[inverse]
        plain = ~valued & (texts < 0)
        code_ids = np.array([self.codes.get(code, -1) for code in batch.vocabulary], dtype=np.int64)
        ids[plain] = code_ids[batch.codes[plain]]
        return ids[:, None], None

    def _bags(self, batch):
        n_events = len(batch.codes)
        ancestors = [[self.codes[c] for c in self.ancestors(code) if c in self.codes] for code in batch.vocabulary]
        width = max(map(len, ancestors), default=0)
        table = np.full((len(ancestors), width), -1, dtype=np.int64)
        for row, found in enumerate(ancestors):
            table[row, : len(found)] = found
        code_ids = table[batch.codes]
        n_ancestors = np.array([len(found) for found in ancestors] or [0])[batch.codes]
        numeric = np.full(n_events, -1, dtype=np.int64)
        valued = ~np.isnan(batch.values)
        if len(self.numeric_ids):
            numeric[valued] = self.numeric_ids[np.searchsorted(self.numeric_starts, batch.values[valued], side="right")]
        units = _lookup(batch.units, n_events, self.texts, _normalize_unit)
        extra = np.stack([units, numeric, _lookup(batch.texts, n_events, self.texts)], axis=1)
        ids = np.hstack([code_ids, extra])
        weights = np.hstack(
            [np.repeat(1.0 / np.maximum(n_ancestors, 1), width).reshape(n_events, width), np.ones((n_events, 3))]
        )
        # femr's bag order: the code's entries, then unit, value bin and text, those found only.
        order = np.argsort(ids < 0, axis=1, kind="stable")
        ids, weights = np.take_along_axis(ids, order, 1), np.take_along_axis(weights, order, 1)
        return ids, np.where(ids >= 0, weights, 0.0)

    def ancestors(self, code):
        """The code and all its ancestors under ``code_parents`` (femr's ``get_all_parents``)."""
        if code not in self._ancestors:
            found = {code}
            for parent in self.code_parents.get(code, ()):
                found |= self.ancestors(parent)
            self._ancestors[code] = found
        return self._ancestors[code]


def _factorize(strings, n_events):
    """Each entry's position among the distinct ``strings`` (-1 for None), and those; none for None."""
    if strings is None:
        return np.full(n_events, -1, dtype=np.int64), np.empty(0, dtype=object)
    return pd.factorize(strings)


def _lookup(strings, n_events, mapping, key=str):
    """``mapping[key(s)]`` of each entry (-1 for None or a key not mapped), looked up once per distinct entry."""
    index, distinct = _factorize(strings, n_events)
    # Index -1 (None) takes the last entry, -1.
    return np.array([*(mapping.get(key(s), -1) for s in distinct), -1], dtype=np.int64)[index]


def _normalize_unit(unit):
    """femr's unit text: lower case without spaces; None for no (or an empty) unit."""
    return unit.lower().replace(" ", "") if unit else None


class _History(NamedTuple):
    """The patients' events up to the prediction time, and the day each patient's ages count from."""

    batch: EventBatch
    birth: np.ndarray  # (n_rows,) float64 day: the birth event's, else the first event's, else 0
    has_birth: np.ndarray  # (n_rows,) bool


def _births(batch, birth_code):
    """Each row's birth day (its first birth event's, else its first event's, else 0) and whether it has one."""
    n_rows = len(batch.where)
    birth, has_birth = np.zeros(n_rows), np.zeros(n_rows, dtype=bool)
    present = batch.lengths > 0
    birth[present] = batch.days[batch.offsets[:-1][present]]
    found = np.flatnonzero(batch.vocabulary == birth_code) if birth_code is not None else []
    if len(found):
        births = np.flatnonzero(batch.codes == found[0])
        rows, first = np.unique(batch.rows[births], return_index=True)
        birth[rows], has_birth[rows] = batch.days[births[first]], True
    return birth, has_birth


def _check_ages(history):
    """Refuse event ages beyond ``MAX_AGE_DAYS`` (the times are finite: ``as_event_frame`` checks them)."""
    batch, rows = history.batch, history.batch.rows
    ages = batch.days - history.birth[rows]
    bad = np.abs(ages) > MAX_AGE_DAYS
    if bad.any():
        row = rows[np.argmax(bad)]
        mine = ages[rows == row]
        age = mine[np.argmax(np.abs(mine))]
        raise ValueError(
            f"{batch.where[row]}: column 'time' gives an event {age:g} days from birth (or the first event); "
            f"more than {MAX_AGE_DAYS / 365.25:g} years is not a time in days."
        )


class CLMBREmbedder(EventColumnMixin, BaseColumnEncoder):
    """CLMBR patient representation of each row's event history (the EHR encoder of Zhang et al., 2026).

    Each cell is one patient's events up to the prediction time: a MEDS-style frame with
    ``time`` (days or datetimes), ``code``, optional ``numeric_value`` (and ``text_value``
    and ``unit``, read when a released vocabulary has text entries; the unit, femr's
    ``metadata["unit"]``, only by a hierarchical one), or a plain ordered list of codes.
    Events become tokens as in femr 0.2.2/0.2.3: codes outside the vocabulary are dropped, a
    token already produced the same calendar day is not repeated, ages are counted from the
    birth event. The output block ``"{output}__0" ... "{output}__{d-1}"`` is the model's
    hidden state at the last token, i.e. the representation at the last event at or before
    the prediction time, followed, with ``code_summary``, by a summary of the history per
    code: ``log(1 + count)`` of its events and, for a code with values, where its last value
    lies among the training values (mid-rank in ``[0, 1]``; 0.5 when never measured).

    With ``pretrained`` set, ``fit`` loads a released checkpoint (CLMBR-T-base: ``d = 768``)
    and learns nothing. Without it, ``fit`` builds a vocabulary from the training events and
    pretrains a CLMBR-style transformer on them with the next-code objective.

    Parameters
    ----------
    events : str, default="ehr"
        Raw column of event frames.
    output : str, default=None
        Prefix of the output block; None means ``events``.
    pretrained : str or path-like, default=None
        Folder of a femr checkpoint (``config.json``, ``dictionary.msgpack``,
        ``model.safetensors``), e.g. a local copy of ``StanfordShahLab/clmbr-t-base``. Every
        weight must fit the network the config describes: a missing, unused or misshapen
        key is a ValueError naming it. The size and training parameters below are then
        unused, except ``max_length``, ``batch_size`` and ``device``.
    birth_code : str or None, default="SNOMED/184099003"
        Code of the birth event (MEDS 0.1.3's, as CLMBR-T-base expects). A patient without
        one has ages counted from their first event, with a warning: the released model's
        age inputs are then wrong, a model fitted here only sees shifted ages. The warning
        comes once per fit: ``fit`` names the training rows without one, and ``transform``
        (so ``fit_transform`` and a pipeline's ``predict``) warns only when ``fit`` did not,
        i.e. when its rows all had a birth event or were not read (``pretrained`` without
        ``code_summary``). None counts every patient's ages from their first event,
        silently. :func:`~skfusion.encoders.events_from_long_table` adds birth events from
        a ``birth_column``.
    index_time : str, default=None
        Column of ``X`` holding each row's index time (the prediction time of a MEDS label,
        the scan time of an image); events after it are dropped.
        None: the whole cell is the history.
    code_parents : dict of str to list of str, default=None
        Parent codes of each code (an ontology), for checkpoints with a hierarchical
        vocabulary, where a token is the bag of a code and its ancestors.
    code_summary : bool or "auto", default="auto"
        Append the per-code summary (counts and last values of the codes with at least
        ``min_frequency`` training events) to the transformer state. "auto": with a model
        fitted here, not with ``pretrained`` (whose output is then the released model's
        representation alone). On small cohorts, where a transformer pretrained in ``fit``
        learns little, this block carries most of the survival signal (see Notes).
    hidden_dim : int, default=16
        Width of the model fitted here (the transformer state's share of the embedding).
    n_layers : int, default=2
    n_heads : int, default=4
    intermediate_dim : int, default=32
        Width of the feed-forward part of each block.
    attention_width : int, default=496
        Local attention window: a token sees itself and the ``attention_width - 1`` before it.
    max_length : int, default=1024
        Only the last ``max_length`` tokens of a patient are read (femr's default when
        computing features), in fitting and in ``transform``.
    min_frequency : int, default=5
        Least number of training events (not patients, as femr counts) for a code (or a
        code's values) to get a token.
    n_bins : int, default=10
        Quantile bins per code for numeric values (fewer when values repeat).
    max_epochs : int, default=20
        Most passes over the training patients (those with two tokens or more: a single
        token predicts nothing). 0 keeps the initial weights.
    batch_size : int, default=32
        Patients per batch, in fitting and in ``transform``.
    lr : float, default=1e-3
        Adam learning rate.
    early_stopping : bool or "auto", default="auto"
        How the number of epochs is chosen. ``True``: hold out ``validation_fraction`` of
        the training patients, record their next-code loss (the mean over all their tokens)
        before training and after each epoch, stop when it has not improved for
        ``n_iter_no_change`` epochs and restore the best epoch (0: the initial weights).
        ``"auto"`` does so when that share would hold at least 100 patients (the fusion
        estimators' threshold of 100 held-out events); below that, every patient is trained
        on. ``False``: train ``max_epochs`` epochs on every patient.
    validation_fraction : float, default=0.1
        Share of the training patients held out when ``early_stopping=True`` (or ``"auto"``
        on a cohort of 1,000 patients or more at the default share).
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs without a better held-out loss
        (scikit-learn's ``MLPClassifier`` default).
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (e.g. ``skorch.callbacks.Checkpoint``), as ``(name, callback)``
        tuples or callback objects. Their ``net.module_`` is the pretraining network: the
        CLMBR model (``net.module_.model``) fed batches of token sequences.
    device : str, default="auto"
        Torch device; "auto" takes CUDA when available. On a CUDA device that supports it,
        the pretraining runs under bfloat16 autocast (float32 weights); ``transform`` runs
        in float32.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the batch order and the held-out patients; the same
        value gives the same model on the same device.
    verbose : int, default=0
        Print the training log each epoch when positive.

    Attributes
    ----------
    model_ : skfusion.modules.clmbr.CLMBRModel
        The network, on ``device_``, in eval mode.
    dictionary_ : dict
        The vocabulary in femr's ``dictionary.msgpack`` form.
    device_ : torch.device
    loss_curve_ : list of float
        Training next-code loss of each epoch: the mean of its batches' losses (each the
        mean over the batch's tokens), weighted by their patients. Empty for a pretrained
        model or ``max_epochs=0``.
    n_iter_ : int
        Epochs trained: ``max_epochs``, fewer when early stopping ended training (0 for a
        pretrained model).
    best_epoch_ : int
        The epoch whose weights the model has: with patients held out, the one of lowest
        held-out loss (0: the initial weights); otherwise the last, ``n_iter_``.
    summary_codes_ : list of str
        Codes of the summary block, in column order (empty without ``code_summary``).
    value_quantiles_ : dict of str to ndarray
        Quantiles of the training values of each summary code with values.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    OneHotEHREncoder : curated one-hot features of the same event frames.

    Notes
    -----
    A patient with no token (no event in the vocabulary) gets the zero vector as transformer
    state, with a warning: the model has no state to read for an empty history.

    Columns: the first ``hidden_dim`` (768 for CLMBR-T-base) are the transformer state,
    then, per summary code, its log-count and, for a code with values, its last value.
    On pbcseq (290 patients, ten 70/30 splits, a ridge Cox model on the block), the
    transformer state alone pretrained here is below curated one-hot features (C 0.771
    against 0.803), the default block with the summary above them (0.833):
    ``benchmarks/results/clmbr_probe.md``.

    No input makes a NaN embedding (only a missing cell does, which the fusion models read
    as a missing modality): event times must be finite and within 1000 years of birth,
    values finite numbers, and a checkpoint's weights finite with a positive
    ``age_stats.std``; anything else is a ValueError naming the row and column, or the file
    and the tensor or field.

    References
    ----------
    .. [1] Steinberg E, et al. Language models are an effective representation learning
           technique for electronic health record data. J Biomed Inform 113 (2021).
    .. [2] Wornow M, et al. EHRSHOT: An EHR benchmark for few-shot evaluation of foundation
           models. NeurIPS Datasets and Benchmarks (2023).
    .. [3] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.1.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfusion.encoders.clmbr import CLMBREmbedder
    >>> X = pd.DataFrame({"ehr": [["Dx/A", "Dx/B", "Rx/C"], ["Dx/B", "Rx/C"], ["Dx/A", "Rx/C"]] * 4})
    >>> emb = CLMBREmbedder(birth_code=None, hidden_dim=8, n_heads=2, intermediate_dim=16,
    ...                     min_frequency=1, max_epochs=2, random_state=0).fit(X)
    >>> emb.transform(X).shape  # 8 transformer features, then the log-counts of the 3 codes
    (12, 11)
    >>> emb.summary_codes_
    ['Dx/A', 'Dx/B', 'Rx/C']
    """

    _parameter_constraints = {
        "events": [str],
        "output": [str, None],
        "pretrained": [str, os.PathLike, None],
        "birth_code": [str, None],
        "index_time": [str, None],
        "code_parents": [dict, None],
        "code_summary": ["boolean", StrOptions({"auto"})],
        "hidden_dim": [Interval(Integral, 4, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "intermediate_dim": [Interval(Integral, 1, None, closed="left")],
        "attention_width": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "min_frequency": [Interval(Integral, 1, None, closed="left")],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        **HELD_OUT_PARAMETERS,
        "callbacks": [list, None],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        events="ehr",
        output=None,
        *,
        pretrained=None,
        birth_code=MEDS_BIRTH_CODE,
        index_time=None,
        code_parents=None,
        code_summary="auto",
        hidden_dim=16,
        n_layers=2,
        n_heads=4,
        intermediate_dim=32,
        attention_width=496,
        max_length=1024,
        min_frequency=5,
        n_bins=10,
        max_epochs=20,
        batch_size=32,
        lr=1e-3,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=10,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.events = events
        self.output = output
        self.pretrained = pretrained
        self.birth_code = birth_code
        self.index_time = index_time
        self.code_parents = code_parents
        self.code_summary = code_summary
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.intermediate_dim = intermediate_dim
        self.attention_width = attention_width
        self.max_length = max_length
        self.min_frequency = min_frequency
        self.n_bins = n_bins
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- fit
    def _fit_cells(self, cells, y):
        self.device_ = self._resolve_device()
        summarize = self.code_summary is True or (self.code_summary == "auto" and self.pretrained is None)
        self._fit_warned_no_birth = False
        history = self._read_all(cells, fitting=True) if summarize or self.pretrained is None else None
        self.summary_codes_, self.value_quantiles_ = _summary_codes(history if summarize else None, self.min_frequency)
        if self.pretrained is not None:
            self.loss_curve_ = []
            self.n_iter_ = self.best_epoch_ = 0
            self.model_ = load_femr_checkpoint(self.pretrained).to(self.device_)
            self.dictionary_ = self._read_dictionary()
            self._check_vocabulary_fits()
            return self
        self.dictionary_ = _build_dictionary(history, self.min_frequency, self.n_bins)
        if not self.dictionary_["vocab"]:
            raise ValueError(
                f"CLMBREmbedder: no code of column {self._column!r} occurs min_frequency={self.min_frequency} times."
            )
        tokens = self._tokenize_all(history)
        self.model_ = self._pretrain(tokens)
        return self

    def _resolve_device(self):
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"CLMBREmbedder: device {self.device!r} is not a torch device.") from exc

    def _read_dictionary(self):
        import msgpack

        file = Path(self.pretrained) / DICTIONARY_FILE
        if not file.is_file():
            raise ValueError(f"{file}: no such file.")
        try:
            dictionary = msgpack.unpackb(file.read_bytes(), strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"{file}: is not a msgpack file ({type(exc).__name__}: {exc}).") from exc
        _check_dictionary(dictionary, file)
        return dictionary

    def _check_vocabulary_fits(self):
        config = self.model_.transformer.config
        if len(self.dictionary_["vocab"]) > config["vocab_size"]:
            raise ValueError(
                f"{Path(self.pretrained) / DICTIONARY_FILE}: {len(self.dictionary_['vocab'])} vocabulary entries "
                f"but the model embeds only vocab_size={config['vocab_size']}."
            )
        if bool(self.dictionary_["is_hierarchical"]) != bool(config["is_hierarchical"]):
            raise ValueError(f"{self.pretrained}: dictionary and config.json disagree on is_hierarchical.")

    def _model_config(self):
        if self.hidden_dim % self.n_heads or (self.hidden_dim // self.n_heads) % 2:
            raise ValueError(
                f"CLMBREmbedder: hidden_dim={self.hidden_dim} must split into n_heads={self.n_heads} heads of "
                "even size (rotary pairs)."
            )
        config = {
            "vocab_size": len(self.dictionary_["vocab"]),
            "is_hierarchical": False,
            "hidden_size": self.hidden_dim,
            "intermediate_size": self.intermediate_dim,
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "attention_width": self.attention_width,
            "use_normed_ages": True,
            "use_bias": True,
            "hidden_act": "gelu",
        }
        return complete_config(config, "CLMBREmbedder")

    def _pretrain(self, tokens):
        """The model pretrained with the next-code objective through the training engine."""
        patients = _TokenSequences([t for t in tokens if len(t.ids) >= 2], self._column, self.device_)
        if not len(patients):
            raise ValueError(f"CLMBREmbedder: no patient of column {self._column!r} has two tokens to learn from.")
        seed = draw_seed(self.random_state)
        with seeded(seed, self.device_):
            model = CLMBRModel(self._model_config(), clmbr_vocab_size=len(self.dictionary_["vocab"]))
        init_clmbr_weights(model, torch.Generator().manual_seed(seed))
        model.to(self.device_)
        self.loss_curve_, self.n_iter_, self.best_epoch_ = [], 0, 0
        if self.max_epochs:
            self._train(NextCodePretraining(self._column, model), patients, seed)
        return model.eval()

    def _train(self, module, patients, seed):
        """Train ``module`` on ``patients`` with ``make_net``, the epoch chosen on held-out patients or not."""
        patients, selection = held_out_split(self, patients, seed, MIN_VALIDATION_ROWS)
        callbacks = list(self.callbacks or []) + ([] if selection is None else [("epoch_selection", selection)])
        with seeded(seed, self.device_):
            net = make_net(
                module,
                NextCodeLoss(),
                device=self.device_,
                batch_size=self.batch_size,
                seed=seed,
                lr=self.lr,
                max_epochs=self.max_epochs,
                iterator=BalancedBatches,
                callbacks=callbacks,
                verbose=self.verbose,
                amp_dtype=transformer_precision(self.device_),
            )
            net.fit(patients, None)
        self.loss_curve_ = [float(loss) for loss in net.history[:, "train_loss"]]
        record_epochs(self, net, selection)

    # ----------------------------------------------------------- transform
    def _embedding_dim(self):
        return self.model_.transformer.config["hidden_size"] + len(self.summary_codes_) + len(self.value_quantiles_)

    def _encode_cells(self, cells):
        history = self._read_all(cells)
        states = self._transformer_states(self._tokenize_all(history))
        if not self.summary_codes_:
            return states
        summary = _code_summary(history, self.summary_codes_, self.value_quantiles_)
        return np.hstack([states, summary]).astype(np.float32)

    def _transformer_states(self, tokens):
        out = np.zeros((len(tokens), self.model_.transformer.config["hidden_size"]), dtype=np.float32)
        lengths = np.array([len(t.ids) for t in tokens])
        if (lengths == 0).any():
            warnings.warn(
                f"CLMBREmbedder: {(lengths == 0).sum()} row(s) of column {self._column!r} have no event in the "
                "vocabulary; their transformer state is the zero vector.",
                UserWarning,
                stacklevel=3,
            )
        order = [i for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._embed_batch([tokens[i] for i in rows])
        # Finite inputs can still overflow float32 in a model with huge weights; a NaN row
        # would be read downstream as a missing modality, so it is refused here.
        broken = ~np.isfinite(out).all(axis=1)
        if broken.any():
            raise ValueError(
                f"CLMBREmbedder: the model's embedding of {broken.sum()} row(s) of column {self._column!r} "
                f"(first: {tokens[np.flatnonzero(broken)[0]].where}) is not finite: its weights overflow float32."
            )
        return out

    def _embed_batch(self, tokens):
        inputs, lengths = self._collate(tokens)
        with torch.inference_mode():
            hidden = self.model_(**inputs)
            return last_states(hidden, lengths).float().cpu().numpy()

    def save_pretrained(self, path):
        """Write the fitted model in femr's checkpoint layout (loadable with ``pretrained=path``).

        The layout holds the transformer and its vocabulary; the code summary, which is not
        part of it, is learnt again by ``CLMBREmbedder(pretrained=path, code_summary=True)``.

        Parameters
        ----------
        path : str or path-like
            Folder to write ``config.json``, ``dictionary.msgpack`` and ``model.safetensors`` to.
        """
        check_is_fitted(self)
        save_femr_checkpoint(path, self.model_, self.dictionary_)

    # ---------------------------------------------------------- tokenizing
    def _read_all(self, cells, fitting=False):
        """Read every cell into one :class:`_History`, warning about rows without a birth event once per fit.

        As scikit-learn warns about its training data in ``fit`` and, in ``transform``, only
        about what ``fit`` did not see (unknown categories): after a ``fit`` that warned,
        ``transform`` (``fit_transform``'s, ``predict``'s) stays silent; it warns when the
        training rows all had a birth event, or were not read (``pretrained`` without
        ``code_summary``).
        """
        batch = self._read_batch(cells, extra=("text_value", "unit"))
        history = _History(batch, *_births(batch, self.birth_code))
        _check_ages(history)
        no_birth = int((~history.has_birth & (batch.lengths > 0)).sum())
        warn = bool(no_birth) and self.birth_code is not None and (fitting or not self._fit_warned_no_birth)
        if warn:
            warnings.warn(
                f"CLMBREmbedder: {no_birth} {'training ' if fitting else ''}row(s) of column {self._column!r} have "
                f"no birth event ({self.birth_code!r}); their ages are counted from their first event.",
                UserWarning,
                stacklevel=5,  # the caller of fit or transform, past scikit-learn's wrapper of either
            )
        if fitting:
            self._fit_warned_no_birth = warn
        return history

    def _tokenize_all(self, history):
        vocabulary = _Vocabulary(self.dictionary_, self.code_parents)
        return _tokenize(history, vocabulary, self.max_length, self._dictionary_source())

    def _dictionary_source(self):
        if self.pretrained is None:
            return "the vocabulary fitted here"
        return str(Path(self.pretrained) / DICTIONARY_FILE)

    def _collate(self, tokens):
        """Right-padded batch tensors on ``device_`` and the true lengths."""
        return _collate(tokens, self.device_)


def _collate(tokens, device):
    """Right-padded batch tensors of ``tokens`` on ``device`` and the true lengths."""
    lengths = np.array([len(t.ids) for t in tokens])
    n, width = len(tokens), max(1, lengths.max())
    hierarchical = tokens[0].weights is not None
    bag = max(t.ids.shape[1] for t in tokens) if hierarchical else None
    ids = np.zeros((n, width, bag) if hierarchical else (n, width), dtype=np.int64)
    weights = np.zeros((n, width, bag), dtype=np.float32) if hierarchical else None
    ages = np.zeros((n, width), dtype=np.float32)
    normed = np.zeros((n, width), dtype=np.float16)
    for row, t in enumerate(tokens):
        k = len(t.ids)
        if hierarchical:
            ids[row, :k, : t.ids.shape[1]] = t.ids
            weights[row, :k, : t.ids.shape[1]] = t.weights
        else:
            ids[row, :k] = t.ids
        ages[row, :k] = t.ages
        normed[row, :k] = t.normed_ages
    inputs = {
        "tokens": torch.from_numpy(ids).to(device),
        "ages": torch.from_numpy(ages).to(device),
        "normed_ages": torch.from_numpy(normed).to(device),
        "token_weights": None if weights is None else torch.from_numpy(weights).to(device),
    }
    return inputs, torch.from_numpy(lengths).to(device)


class _TokenSequences(torch.utils.data.Dataset):
    """Patients' token sequences as the training engine iterates over them, batched by index.

    A batch (:meth:`batch`, gathered by :class:`~skfusion._engine.BatchIterator`) is
    ``({name: block}, n_targets)``: the block holds :func:`_collate`'s right-padded inputs,
    the true ``lengths`` and the ``present`` flags by which the engine counts the batch's
    patients; ``n_targets`` is each patient's number of next-code targets, every token but
    the first (the head covers the whole vocabulary fitted here). ``subset`` gives a view on
    some patients (the held-out split).
    """

    files = {}  # no column of image files to read per batch

    def __init__(self, tokens, name, device, indices=None):
        self.tokens = tokens
        self.name = name
        self.device = torch.device(device)
        self.indices = np.arange(len(tokens)) if indices is None else indices
        self.targets = torch.tensor([len(t.ids) - 1 for t in tokens], dtype=torch.float32)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.batch(torch.as_tensor([i]))

    def subset(self, positions):
        """The patients at ``positions`` (relative to this dataset)."""
        return _TokenSequences(self.tokens, self.name, self.device, self.indices[np.asarray(positions)])

    def target_values(self):
        """Each patient's number of next-code targets, on the CPU."""
        return self.targets[self.indices]

    def batch(self, positions):
        """The patients at ``positions``: ``({name: block}, n_targets)`` on the device."""
        rows = self.indices[positions if isinstance(positions, slice) else positions.cpu().numpy()]
        inputs, lengths = _collate([self.tokens[i] for i in rows], self.device)
        present = torch.ones(len(rows), dtype=torch.bool, device=self.device)
        return {self.name: {**inputs, "lengths": lengths, "present": present}}, self.targets[rows].to(self.device)


def _tokenize(history, vocabulary, max_length, source):
    """femr's ``BatchCreator.add_patient`` for every patient at once: tokens, bag weights and ages.

    A measurement whose tokens were all produced earlier the same calendar day is skipped
    (``source`` names the vocabulary in errors); only the last ``max_length`` tokens of a
    patient are kept.
    """
    batch = history.batch
    ids, weights = vocabulary.features(batch)
    rows, days = batch.rows, np.floor(batch.days)
    # Each (patient, calendar day) is a run of events: times are sorted within a patient.
    new_day = np.r_[True, (rows[1:] != rows[:-1]) | (days[1:] != days[:-1])]
    day = np.cumsum(new_day) - 1
    events, slots = np.nonzero(ids >= 0)
    # A token's first production that day is the first occurrence of (day, token) in event order.
    _, first = np.unique(day[events] * vocabulary.size + ids[events, slots], return_index=True)
    kept = np.flatnonzero(np.bincount(events[first], minlength=len(ids)) > 0)
    ends = np.cumsum(np.bincount(rows[kept], minlength=len(batch.where)))
    kept = kept[ends[rows[kept]] - np.arange(len(kept)) <= max_length]
    rows = rows[kept]
    age_days = batch.days[kept] - history.birth[rows]
    ages = age_days.astype(np.float32)
    _check_normed_ages(history, rows, ages, vocabulary, source)
    normed = ((age_days * SECONDS_PER_DAY - vocabulary.age_mean) / vocabulary.age_std).astype(np.float16)
    ids = ids[kept]
    n_features = (ids >= 0).sum(axis=1)
    if weights is not None:
        # femr stores bag weights in float16.
        weights = weights[kept].astype(np.float16).astype(np.float32)
    ids[ids < 0] = 0
    bounds = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(batch.where)))]
    tokens = []
    for row, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        where = batch.where[row]
        if weights is None:
            tokens.append(_Tokens(ids[a:b, 0], None, ages[a:b], normed[a:b], where))
            continue
        width = int(n_features[a:b].max(initial=1))
        tokens.append(_Tokens(ids[a:b, :width], weights[a:b, :width], ages[a:b], normed[a:b], where))
    return tokens


def _build_dictionary(history, min_frequency, n_bins):
    """A femr-layout vocabulary from training events: codes, then per-code value quantile bins.

    Entries are ordered by decreasing frequency (femr orders by an entropy weight; the
    next-code head covers them all here). ``age_stats`` are the mean and standard deviation
    of event ages in seconds, birth-time events excluded, as femr computes them; the standard
    deviation is raised where needed so that every training age, the births included, is
    within ``MAX_NORMED_AGE / 2`` of the mean (a cohort of one age would otherwise put its birth
    tokens beyond float16).
    """
    batch = history.batch
    ages = (batch.days - history.birth[batch.rows]) * SECONDS_PER_DAY
    total = max(len(batch.codes), 1)
    vocab = []
    plain = np.bincount(batch.codes[np.isnan(batch.values)], minlength=len(batch.vocabulary))
    for code, count in zip(batch.vocabulary, plain):
        if count >= min_frequency:
            vocab.append({"type": "code", "code_string": code, "weight": -count / total})
    for code, values in batch.values_by_code().items():
        if len(values) < min_frequency:
            continue
        edges = np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins))
        bounds = [-np.inf, *edges, np.inf]
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(bounds) - 1)
        for start, end, count in zip(bounds[:-1], bounds[1:], counts):
            vocab.append(
                {"type": "numeric", "code_string": code, "val_start": float(start), "val_end": float(end),
                 "weight": -count / total}
            )
    vocab.sort(key=lambda e: (e["weight"], e["code_string"], e.get("val_start", -np.inf)))
    aged = ages[ages != 0]
    mean = float(aged.mean()) if len(aged) else 0.0
    std = float(aged.std()) if len(aged) > 1 else 0.0
    # Half the float16 range, so that later patients a little further out still fit.
    spread = 2 * float(np.abs(ages - mean).max()) / MAX_NORMED_AGE if len(ages) else 0.0
    return {
        "vocab": [{**e, "weight": float(e["weight"])} for e in vocab],
        "is_hierarchical": False,
        "age_stats": {"mean": mean, "std": max(std, spread, 1.0)},
    }


def _check_dictionary(dictionary, file):
    """femr's ``dictionary.msgpack`` layout; ValueError naming the file and the field."""
    if not isinstance(dictionary, dict):
        raise ValueError(
            f"{file}: holds a {type(dictionary).__name__}, not femr's dictionary (a map with 'vocab', "
            "'is_hierarchical' and 'age_stats')."
        )
    for key in ("vocab", "is_hierarchical", "age_stats"):
        if key not in dictionary:
            raise ValueError(f"{file}: has no {key!r} entry.")
    if not isinstance(dictionary["vocab"], list):
        raise ValueError(f"{file}: 'vocab' is a {type(dictionary['vocab']).__name__}, not a list of entries.")
    hierarchical = bool(dictionary["is_hierarchical"])
    for i, entry in enumerate(dictionary["vocab"]):
        if not isinstance(entry, dict) or "type" not in entry:
            raise ValueError(f"{file}: vocab entry {i} is not a map with a 'type'.")
        missing = [f for f in VOCAB_FIELDS.get(entry["type"], ((), ()))[hierarchical] if f not in entry]
        if missing:
            raise ValueError(f"{file}: vocab entry {i} of type {entry['type']!r} lacks {missing}.")
        bounds = [entry[f] for f in ("val_start", "val_end") if f in entry and entry["type"] == "numeric"]
        if not all(_is_real(b) and not np.isnan(b) for b in bounds):
            raise ValueError(f"{file}: vocab entry {i} has value bounds {bounds} that are not numbers.")
    stats = dictionary["age_stats"]
    for field in ("mean", "std"):
        value = stats.get(field) if isinstance(stats, dict) else None
        if not _is_real(value) or not np.isfinite(value):
            raise ValueError(f"{file}: age_stats.{field} is {value!r}; it must be a finite number of seconds.")
    if stats["std"] <= 0:
        raise ValueError(f"{file}: age_stats.std is {stats['std']!r}; ages are divided by it, so it must be positive.")


def _summary_codes(history, min_frequency):
    """Codes with at least ``min_frequency`` training events, and the value quantiles of those with values."""
    if history is None:
        return [], {}
    batch = history.batch
    counts = np.bincount(batch.codes, minlength=len(batch.vocabulary))
    kept = [str(code) for code in batch.vocabulary[counts >= min_frequency]]  # the vocabulary is sorted
    frequent = set(kept)
    quantiles = {
        code: np.quantile(values, np.linspace(0, 1, N_VALUE_QUANTILES))
        for code, values in batch.values_by_code().items()
        if code in frequent and len(values) >= min_frequency
    }
    return kept, quantiles


def _code_summary(history, codes, quantiles):
    """Per patient: ``log1p`` of each code's event count, then each valued code's last value rank.

    The rank is the mid-rank of the value among the training quantiles, in ``[0, 1]``, so a
    linear model sees a monotone, outlier-free transform of the value; 0.5 (the median)
    when the patient has no value, which the count column tells apart.
    """
    batch = history.batch
    n_rows = len(batch.where)
    valued = [code for code in codes if code in quantiles]
    out = np.zeros((n_rows, len(codes) + len(valued)))
    out[:, len(codes) :] = 0.5
    column = _columns(batch.vocabulary, codes)
    counted = column[batch.codes] >= 0
    keys = batch.rows[counted] * len(codes) + column[batch.codes][counted]
    out[:, : len(codes)] = np.log1p(np.bincount(keys, minlength=n_rows * len(codes)).reshape(n_rows, len(codes)))
    # Events are in time order: a row's last event with a value holds the latest.
    rows, value_columns, positions = batch.last(_columns(batch.vocabulary, valued), ~np.isnan(batch.values))
    _, bounds = runs(value_columns)
    for a, b in zip(bounds[:-1], bounds[1:]):
        q, values = quantiles[valued[value_columns[a]]], batch.values[positions[a:b]]
        rank = np.searchsorted(q, values, "left") + np.searchsorted(q, values, "right")
        out[rows[a:b], len(codes) + value_columns[a]] = rank / (2 * len(q))
    return out


def _columns(vocabulary, codes):
    """The position of each code of ``vocabulary`` among ``codes`` (-1 where absent)."""
    index = {code: i for i, code in enumerate(codes)}
    return np.array([index.get(code, -1) for code in vocabulary], dtype=np.int64)
