"""CLMBR patient embeddings from per-patient event frames (Zhang et al., 2026, section 2.1).

:class:`CLMBREmbedder` either loads a released CLMBR checkpoint (CLMBR-T-base, femr layout)
and reads out its representation, or pretrains a small CLMBR-style model on the training
event frames with the same self-supervised next-code objective. The network itself lives in
:mod:`skfusion.modules.clmbr`; this module turns events into tokens the way femr 0.2.2/0.2.3
does and runs the model in batches.
"""

import bisect
import os
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._compat import Interval
from ..modules.clmbr import (
    DICTIONARY_FILE,
    CLMBRModel,
    complete_config,
    init_clmbr_weights,
    last_states,
    load_femr_checkpoint,
    save_femr_checkpoint,
)
from ._base import BaseColumnEncoder
from ._events import EventColumnMixin, to_days

# The birth code of MEDS 0.1.3, which femr 0.2.2/0.2.3 (and CLMBR-T-base's inputs) use.
MEDS_BIRTH_CODE = "SNOMED/184099003"
SECONDS_PER_DAY = 86400.0


class _Tokens(NamedTuple):
    """One patient's token sequence: ids (``(T,)`` or ``(T, K)`` bags), bag weights, ages."""

    ids: np.ndarray
    weights: np.ndarray | None
    ages: np.ndarray  # days since birth, float32 (rotary positions)
    normed_ages: np.ndarray  # standardised age in seconds, float16 as femr stores it


class _Vocabulary:
    """femr's tokenizer over a ``dictionary.msgpack`` mapping (flat or hierarchical).

    Flat: a measurement with a value maps to the numeric entry of its code whose
    ``[val_start, val_end)`` holds the value; one with a text value to its (code, text)
    entry; any other to its code entry; nothing found means no token. Hierarchical: a bag of
    the code and its ancestors in the vocabulary (weights ``1 / n``), plus the global numeric
    bin of the value and the text entry, each with weight 1.
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
        self.numeric_starts = [start for start, _ in numeric[1:]]
        self.numeric_ids = [i for _, i in numeric]
        self._ancestors = {}

    def features(self, code, value, text):
        """Token ids and (hierarchical) weights of one measurement."""
        if self.is_hierarchical:
            return self._bag(code, value, text)
        if not np.isnan(value):
            for start, end, i in self.numeric.get(code, ()):
                if start <= value < end:
                    return [i], None
            return [], None
        if text is not None:
            i = self.texts.get((code, text))
            return ([] if i is None else [i]), None
        i = self.codes.get(code)
        return ([] if i is None else [i]), None

    def _bag(self, code, value, text):
        ids = [self.codes[c] for c in self.ancestors(code) if c in self.codes]
        weights = [1.0 / len(ids) for _ in ids]
        if not np.isnan(value) and self.numeric_ids:
            ids.append(self.numeric_ids[bisect.bisect(self.numeric_starts, value)])
            weights.append(1.0)
        if text is not None and text in self.texts:
            ids.append(self.texts[text])
            weights.append(1.0)
        return ids, weights

    def ancestors(self, code):
        """The code and all its ancestors under ``code_parents`` (femr's ``get_all_parents``)."""
        if code not in self._ancestors:
            found = {code}
            for parent in self.code_parents.get(code, ()):
                found |= self.ancestors(parent)
            self._ancestors[code] = found
        return self._ancestors[code]


class _Events(NamedTuple):
    """One patient's events up to the prediction time, read from a cell."""

    codes: np.ndarray
    values: np.ndarray
    texts: np.ndarray | None
    days: np.ndarray
    birth: float
    has_birth: bool


def _texts(raw, n_events, where):
    """``text_value`` of a raw event frame, in the order :func:`as_event_frame` sorts events.

    Events cut at the prediction time are a prefix of that order: the first ``n_events``.
    """
    if not isinstance(raw, pd.DataFrame) or "text_value" not in raw.columns:
        return None
    order = np.argsort(to_days(raw["time"], where), kind="stable")
    texts = raw["text_value"].to_numpy(dtype=object)[order][:n_events]
    return np.array([None if pd.isna(t) else str(t) for t in texts], dtype=object)


class CLMBREmbedder(EventColumnMixin, BaseColumnEncoder):
    """CLMBR patient representation of each row's event history (the EHR encoder of Zhang et al., 2026).

    Each cell is one patient's events up to the prediction time: a MEDS-style frame with
    ``time`` (days or datetimes), ``code``, optional ``numeric_value`` (and ``text_value``,
    read when a released vocabulary has text entries), or a plain ordered list of codes.
    Events become tokens as in femr 0.2.2/0.2.3: codes outside the vocabulary are dropped, a
    token already produced the same calendar day is not repeated, ages are counted from the
    birth event. The output block ``"{output}__0" ... "{output}__{d-1}"`` is the model's
    hidden state at the last token, i.e. the representation at the last event at or before
    the prediction time.

    With ``pretrained`` set, ``fit`` loads a released checkpoint (CLMBR-T-base: ``d = 768``)
    and learns nothing. Without it, ``fit`` builds a vocabulary from the training events and
    pretrains a CLMBR-style transformer on them with the next-code objective.

    Parameters
    ----------
    column : str, default="ehr"
        Raw column of event frames.
    output : str, default=None
        Prefix of the output block; None means ``column``.
    pretrained : str or path-like, default=None
        Folder of a femr checkpoint (``config.json``, ``dictionary.msgpack``,
        ``model.safetensors``), e.g. a local copy of ``StanfordShahLab/clmbr-t-base``. Every
        weight must fit the network the config describes: a missing, unused or misshapen
        key is a ValueError naming it. The size and training parameters below are then
        unused, except ``max_length``, ``batch_size`` and ``device``.
    birth_code : str or None, default="SNOMED/184099003"
        Code of the birth event (MEDS 0.1.3's, as CLMBR-T-base expects). A patient without
        one has ages counted from their first event, with a warning: the released model's
        age inputs are then wrong, a model fitted here only sees shifted ages. None counts
        every patient's ages from their first event, silently.
    prediction_time : str, default=None
        Column of ``X`` holding each row's prediction time; events after it are dropped.
        None: the whole cell is the history.
    code_parents : dict of str to list of str, default=None
        Parent codes of each code (an ontology), for checkpoints with a hierarchical
        vocabulary, where a token is the bag of a code and its ancestors.
    hidden_size : int, default=64
        Width of the model fitted here (the embedding size).
    n_layers : int, default=2
    n_heads : int, default=4
    intermediate_size : int, default=128
        Width of the feed-forward part of each block.
    attention_width : int, default=496
        Local attention window: a token sees itself and the ``attention_width - 1`` before it.
    max_length : int, default=1024
        Only the last ``max_length`` tokens of a patient are read (femr's default when
        computing features), in fitting and in ``transform``.
    min_count : int, default=5
        Least number of training events for a code (or a code's values) to get a token.
    n_value_bins : int, default=10
        Quantile bins per code for numeric values (fewer when values repeat).
    max_epochs : int, default=20
        Passes over the training patients.
    batch_size : int, default=32
        Patients per batch, in fitting and in ``transform``.
    lr : float, default=1e-3
        Adam learning rate.
    device : str, default="auto"
        Torch device; "auto" takes CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the batch order.
    verbose : int, default=0
        Print the mean training loss of each epoch when positive.

    Attributes
    ----------
    model_ : skfusion.modules.clmbr.CLMBRModel
        The network, on ``device_``, in eval mode.
    dictionary_ : dict
        The vocabulary in femr's ``dictionary.msgpack`` form.
    device_ : torch.device
    loss_curve_ : list of float
        Mean next-code loss of each epoch (empty for a pretrained model).
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    OneHotEHREncoder : curated one-hot features of the same event frames.

    Notes
    -----
    A patient with no token (no event in the vocabulary) gets the zero vector, with a
    warning: the model has no state to read for an empty history.

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
    >>> emb = CLMBREmbedder(birth_code=None, hidden_size=8, n_heads=2, intermediate_size=16,
    ...                     min_count=1, max_epochs=2, random_state=0).fit(X)
    >>> emb.transform(X).shape
    (12, 8)
    """

    _parameter_constraints = {
        "column": [str],
        "output": [str, None],
        "pretrained": [str, os.PathLike, None],
        "birth_code": [str, None],
        "prediction_time": [str, None],
        "code_parents": [dict, None],
        "hidden_size": [Interval(Integral, 4, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "intermediate_size": [Interval(Integral, 1, None, closed="left")],
        "attention_width": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "n_value_bins": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        column="ehr",
        output=None,
        *,
        pretrained=None,
        birth_code=MEDS_BIRTH_CODE,
        prediction_time=None,
        code_parents=None,
        hidden_size=64,
        n_layers=2,
        n_heads=4,
        intermediate_size=128,
        attention_width=496,
        max_length=1024,
        min_count=5,
        n_value_bins=10,
        max_epochs=20,
        batch_size=32,
        lr=1e-3,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.column = column
        self.output = output
        self.pretrained = pretrained
        self.birth_code = birth_code
        self.prediction_time = prediction_time
        self.code_parents = code_parents
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.intermediate_size = intermediate_size
        self.attention_width = attention_width
        self.max_length = max_length
        self.min_count = min_count
        self.n_value_bins = n_value_bins
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- fit
    def _fit_cells(self, cells, y):
        self.device_ = self._resolve_device()
        self.loss_curve_ = []
        if self.pretrained is not None:
            self.model_ = load_femr_checkpoint(self.pretrained).to(self.device_)
            self.dictionary_ = self._read_dictionary()
            self._check_vocabulary_fits()
            return self
        events = self._read_all(cells)
        self.dictionary_ = _build_dictionary(events, self.min_count, self.n_value_bins)
        if not self.dictionary_["vocab"]:
            raise ValueError(
                f"CLMBREmbedder: no code of column {self.column!r} occurs min_count={self.min_count} times."
            )
        tokens = self._tokenize_all(events)
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
        dictionary = msgpack.unpackb(file.read_bytes(), strict_map_key=False)
        for key in ("vocab", "is_hierarchical", "age_stats"):
            if key not in dictionary:
                raise ValueError(f"{file}: has no {key!r} entry.")
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
        config = {
            "vocab_size": len(self.dictionary_["vocab"]),
            "is_hierarchical": False,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "attention_width": self.attention_width,
            "use_normed_ages": True,
            "use_bias": True,
            "hidden_act": "gelu",
        }
        return complete_config(config, "CLMBREmbedder")

    def _pretrain(self, tokens):
        rng = check_random_state(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        with torch.random.fork_rng(devices=[]):
            model = CLMBRModel(self._model_config(), clmbr_vocab_size=len(self.dictionary_["vocab"]))
        init_clmbr_weights(model, generator)
        model.to(self.device_).train()
        trainable = np.array([i for i, t in enumerate(tokens) if len(t.ids) >= 2])
        if not len(trainable):
            raise ValueError(f"CLMBREmbedder: no patient of column {self.column!r} has two tokens to learn from.")
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        for epoch in range(self.max_epochs):
            losses = []
            for batch in np.array_split(rng.permutation(trainable), max(1, -(-len(trainable) // self.batch_size))):
                inputs, lengths = self._collate([tokens[i] for i in batch])
                loss = model.next_code_loss(model(**inputs), inputs["tokens"], lengths)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            self.loss_curve_.append(float(np.mean(losses)))
            if self.verbose:
                print(f"CLMBREmbedder epoch {epoch + 1}/{self.max_epochs}: next-code loss {self.loss_curve_[-1]:.4f}")
        return model.eval()

    # ----------------------------------------------------------- transform
    def _embedding_dim(self):
        return self.model_.transformer.config["hidden_size"]

    def _encode_cells(self, cells):
        tokens = self._tokenize_all(self._read_all(cells))
        out = np.zeros((len(tokens), self._embedding_dim()), dtype=np.float32)
        lengths = np.array([len(t.ids) for t in tokens])
        if (lengths == 0).any():
            warnings.warn(
                f"CLMBREmbedder: {(lengths == 0).sum()} row(s) of column {self.column!r} have no event in the "
                "vocabulary; their embedding is the zero vector.",
                UserWarning,
                stacklevel=3,
            )
        order = [i for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._embed_batch([tokens[i] for i in rows])
        return out

    def _embed_batch(self, tokens):
        inputs, lengths = self._collate(tokens)
        with torch.inference_mode():
            hidden = self.model_(**inputs)
            return last_states(hidden, lengths).float().cpu().numpy()

    def save_pretrained(self, path):
        """Write the fitted model in femr's checkpoint layout (loadable with ``pretrained=path``).

        Parameters
        ----------
        path : str or path-like
            Folder to write ``config.json``, ``dictionary.msgpack`` and ``model.safetensors`` to.
        """
        check_is_fitted(self)
        save_femr_checkpoint(path, self.model_, self.dictionary_)

    # ---------------------------------------------------------- tokenizing
    def _read_all(self, cells):
        events = [self._read_one(cell) for cell in cells]
        no_birth = sum(not e.has_birth and len(e.codes) > 0 for e in events)
        if no_birth and self.birth_code is not None:
            warnings.warn(
                f"CLMBREmbedder: {no_birth} row(s) of column {self.column!r} have no birth event "
                f"({self.birth_code!r}); their ages are counted from their first event.",
                UserWarning,
                stacklevel=4,
            )
        return events

    def _read_one(self, cell):
        frame, days, _ = self._read_events(cell)
        codes = frame["code"].to_numpy(dtype=object)
        births = np.flatnonzero(codes == self.birth_code) if self.birth_code is not None else []
        has_birth = len(births) > 0
        birth = days[births[0]] if has_birth else (days[0] if len(days) else 0.0)
        values = frame["numeric_value"].to_numpy(dtype=float)
        return _Events(codes, values, _texts(cell.value, len(frame), cell.where), days, birth, has_birth)

    def _tokenize_all(self, events):
        vocabulary = _Vocabulary(self.dictionary_, self.code_parents)
        return [_tokenize_patient(e, vocabulary, self.max_length) for e in events]

    def _collate(self, tokens):
        """Right-padded batch tensors on ``device_`` and the true lengths."""
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
        device = self.device_
        inputs = {
            "tokens": torch.from_numpy(ids).to(device),
            "ages": torch.from_numpy(ages).to(device),
            "normed_ages": torch.from_numpy(normed).to(device),
            "token_weights": None if weights is None else torch.from_numpy(weights).to(device),
        }
        return inputs, torch.from_numpy(lengths).to(device)


def _tokenize_patient(events, vocabulary, max_length):
    """femr's ``BatchCreator.add_patient`` for one patient: tokens, bag weights and ages.

    A measurement whose tokens were all produced earlier the same calendar day is skipped;
    only the last ``max_length`` tokens are kept.
    """
    ids, weights, days = [], [], []
    seen, today = set(), None
    texts = events.texts if events.texts is not None else [None] * len(events.codes)
    for code, value, text, day in zip(events.codes, events.values, texts, events.days):
        if np.floor(day) != today:
            today, seen = np.floor(day), set()
        features, bag_weights = vocabulary.features(code, value, text)
        if not features or all(f in seen for f in features):
            continue
        seen.update(features)
        ids.append(features)
        weights.append(bag_weights)
        days.append(day)
    ids, weights, days = ids[-max_length:], weights[-max_length:], days[-max_length:]
    age_days = np.asarray(days, dtype=float) - events.birth
    normed = ((age_days * SECONDS_PER_DAY - vocabulary.age_mean) / vocabulary.age_std).astype(np.float16)
    if vocabulary.is_hierarchical:
        bag = max((len(f) for f in ids), default=1)
        id_array = np.zeros((len(ids), bag), dtype=np.int64)
        # femr stores bag weights in float16.
        weight_array = np.zeros((len(ids), bag), dtype=np.float16)
        for row, (f, w) in enumerate(zip(ids, weights)):
            id_array[row, : len(f)] = f
            weight_array[row, : len(f)] = w
        return _Tokens(id_array, weight_array.astype(np.float32), age_days.astype(np.float32), normed)
    return _Tokens(np.array([f[0] for f in ids], dtype=np.int64), None, age_days.astype(np.float32), normed)


def _build_dictionary(events, min_count, n_value_bins):
    """A femr-layout vocabulary from training events: codes, then per-code value quantile bins.

    Entries are ordered by decreasing frequency (femr orders by an entropy weight; the
    next-code head covers them all here). ``age_stats`` are the mean and standard deviation
    of event ages in seconds, birth-time events excluded, as femr computes them.
    """
    codes = np.concatenate([e.codes for e in events])
    values = np.concatenate([e.values for e in events])
    ages = np.concatenate([(e.days - e.birth) * SECONDS_PER_DAY for e in events])
    total = max(len(codes), 1)
    vocab = []
    plain = pd.Series(codes[np.isnan(values)], dtype=object).value_counts()
    for code, count in plain[plain >= min_count].items():
        vocab.append({"type": "code", "code_string": code, "weight": -count / total})
    measured = pd.DataFrame({"code": codes, "value": values}).dropna()
    for code, group in measured.groupby("code", sort=True)["value"]:
        if len(group) < min_count:
            continue
        edges = np.unique(np.quantile(group.to_numpy(), np.arange(1, n_value_bins) / n_value_bins))
        bounds = [-np.inf, *edges, np.inf]
        counts = np.bincount(np.searchsorted(edges, group.to_numpy(), side="right"), minlength=len(bounds) - 1)
        for start, end, count in zip(bounds[:-1], bounds[1:], counts):
            vocab.append(
                {"type": "numeric", "code_string": code, "val_start": float(start), "val_end": float(end),
                 "weight": -count / total}
            )
    vocab.sort(key=lambda e: (e["weight"], e["code_string"], e.get("val_start", -np.inf)))
    aged = ages[ages != 0]
    std = float(aged.std()) if len(aged) > 1 else 0.0
    return {
        "vocab": [{**e, "weight": float(e["weight"])} for e in vocab],
        "is_hierarchical": False,
        "age_stats": {"mean": float(aged.mean()) if len(aged) else 0.0, "std": std if std > 0 else 1.0},
    }
