"""The data contract: one table in, per-modality tensors and presence masks out.

``X`` is a pandas DataFrame whose modalities are column groups:

- a *vector* modality is a numeric block ``"{name}__{feature}"`` (``img__0 ... img__1023``);
- a *sequence* modality is one object column ``"{name}"`` holding, per row, a ``(T_i, d)``
  array (per-slice CT embeddings, per-timestep EHR states, a clinical time series);
- an *image* modality is one object column ``"{name}"`` holding, per row, an ``(H, W, C)``
  array with ``C`` 1 or 3 (numpy's layout, as Pillow and pydicom give it: a chest X-ray as
  ``(H, W, 1)``), the same shape in every row, or the path of an image file (``str`` or
  ``os.PathLike``): the estimators that train an image encoder (a CNN) read it. A 2-D cell
  is a token array, so a grayscale image needs its channel axis (``image[..., None]``). Each
  array goes through :func:`~skfusion._volumes.image_from_array`, as in ``ImageEmbedder``:
  integers are divided by their dtype's maximum, floats must lie in [0, 1]; the network
  reads ``(C, H, W)``. A channels-first ``(C, H, W)`` cell is a ValueError. Files are read
  batch by batch while the model trains (see :mod:`skfusion._images`), never all at once.
  A ``(Z, H, W)`` array whose first and last axes are neither 1 nor 3 is a CT volume in
  Hounsfield units, read as it is, its ``Z`` slices as channels (the input of
  ``TimeToEventPretraining.image_encoder_``, or of a 3-D encoder that resamples them to the
  estimator's ``volume_size``). A column of CT volume files (DICOM series folders, NIfTI files
  of three spatial sides larger than 1) is a volume column of files (``volume=True,
  files=True``), read batch by batch at ``volume_size`` in HU (:class:`~skfusion._images.VolumeFiles`).

A row whose block is entirely NaN (or whose cell is ``None``, or has ``T_i = 0``) is *missing*
that modality. NaN inside a partly observed block, and inf anywhere, are errors.

A plain 2-D array (or a DataFrame without any ``name__`` group) is split into vector
modalities by ``modality_dims``: ``None`` halves the columns into modalities ``"m0"`` and
``"m1"`` (one modality ``"m0"`` for a single column), a sequence of ints gives consecutive
widths named ``"m0", "m1", ...``, and a dict ``{name: width}`` names them. The model then
behaves exactly as with the DataFrame whose columns are ``"m0__0", ..., "m1__0", ...``.

A frame whose every column carries a further ``"{transformer}__"`` prefix, as a
scikit-learn ``ColumnTransformer`` writes them (``scale__img__0``, ``remainder__ct``), is
grouped by the part after that prefix. A polars DataFrame is read like the pandas one.
"""

import contextlib
import threading
import warnings
from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import validate_data

from ._images import ImageFiles, VolumeFiles, check_image_files, is_path
from ._volumes import check_image_shape, image_from_array, is_volume_file, looks_channels_first

SEPARATOR = "__"
_MAX_ROWS_SHOWN = 8
_COPY_CHUNK = 128
# Vector blocks whose float32 copies would together take more than this many bytes are read
# in place from the caller's memory when they can be (a float32 or float64 frame or array):
# ``fit`` then adds a batch, not a copy of the data. Smaller ones are copied row-major, which
# makes a batch's rows contiguous: pandas keeps a frame column-major, from which gathering 256 rows
# of 256 features takes 0.4-0.7 ms against 8 us from the copy (a fit at 20,000 x 512 is 20%
# slower read in place: benchmarks/results/fit.md).
COPY_LIMIT = 64 << 20
_FLOATS = (np.float32, np.float64)
# Elements per chunk of fit_standardization (512 KiB of float64: the chunk stays in cache).
_STATS_CHUNK = 1 << 16
# A feature whose standard deviation is at most this fraction of its largest |value| is
# constant: the float64 round-off of a constant column's mean and deviations is ~1e-16 of it.
_CONSTANT_SCALE = 1e-12


@dataclass(frozen=True)
class ModalitySpec:
    """One modality as seen in ``fit``: its name, kind, source columns and width.

    ``columns`` are column labels for a DataFrame, or integer positions for an array.
    """

    name: str
    kind: str  # "vector", "sequence" or "image"
    columns: tuple
    dim: int  # features per row (vector), per token (sequence), channels (image)
    shape: tuple = ()  # (C, H, W) of an image, as the network reads it (its cells are (H, W, C))
    files: bool = False  # an image column of file paths (its shape set by the estimator's image_size)
    volume: bool = False  # an image column of (Z, H, W) volumes in HU (arrays read as they are, C = Z)
    window: object = None  # a volume column of files: the HU window of its encoder (see VolumeFiles)


def _rows(mask):
    """Format the first few row positions where ``mask`` is true."""
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_SHOWN])
    more = f", ... ({len(rows)} rows)" if len(rows) > _MAX_ROWS_SHOWN else ""
    return f"[{shown}{more}]"


def _split_dims(n_features, modality_dims):
    """Resolve ``modality_dims`` into ``[(name, start, stop), ...]`` for an array."""
    if modality_dims is None:
        widths = [n_features] if n_features < 2 else [n_features - n_features // 2, n_features // 2]
        named = [(f"m{k}", w) for k, w in enumerate(widths)]
    elif isinstance(modality_dims, dict):
        named = list(modality_dims.items())
    else:
        named = [(f"m{k}", w) for k, w in enumerate(modality_dims)]
    for name, width in named:
        if not isinstance(width, Integral) or width < 1:
            raise ValueError(f"modality_dims: width of modality {name!r} must be a positive integer; got {width!r}.")
    total = sum(w for _, w in named)
    if total != n_features:
        raise ValueError(f"modality_dims sum to {total} but X has {n_features} features.")
    bounds, start = [], 0
    for name, width in named:
        bounds.append((str(name), start, start + int(width)))
        start += int(width)
    return bounds


def _raw_columns(X):
    """``{column: whether it holds raw cells (object or string dtype)}`` of a DataFrame.

    Read from ``X.dtypes`` in one pass: ``X[column]`` builds a Series per column (15 ms for
    the three passes of ``infer_layout`` over a frame of 512 columns).
    """
    columns, dtypes = X.columns.tolist(), X.dtypes.tolist()  # lists: iterating pandas' string Index costs 1 us a label
    return {c: dtype == object or isinstance(dtype, pd.StringDtype) for c, dtype in zip(columns, dtypes)}


def _first_present(series):
    """The first present cell of ``series`` and its row position (``(None, None)`` if none)."""
    for row, cell in enumerate(series):
        if cell is not None and not (isinstance(cell, float) and np.isnan(cell)):
            return cell, row
    return None, None


def _raw_spec(name, series):
    """The spec of a raw column from its first present cell: (T, d) tokens or an (H, W, C) image."""
    if series.isna().all():
        # Its kind is read from a present cell: a column without any cannot be typed, and it
        # would carry no information anyway.
        raise ValueError(
            f"column {name!r} is missing (None / NaN) in every row: its modality cannot be read from any "
            "cell and carries no information; drop the column, or fill in the rows that have the modality."
        )
    cell, row = _first_present(series)
    if isinstance(cell, (np.ndarray, torch.Tensor)) and cell.ndim == 2:
        return ModalitySpec(name, "sequence", (series.name,), int(cell.shape[1]))
    if isinstance(cell, (np.ndarray, torch.Tensor)) and cell.ndim == 3:
        shape = tuple(int(v) for v in cell.shape)
        if looks_channels_first(shape):
            check_image_shape(shape, f"column {name!r}, row {row}")
        if shape[-1] in (1, 3):
            return ModalitySpec(name, "image", (series.name,), shape[-1], (shape[-1], *shape[:2]))
        return ModalitySpec(name, "image", (series.name,), shape[0], shape, volume=True)
    if is_path(cell):
        if is_volume_file(cell, f"column {name!r}, row {row}"):
            return ModalitySpec(name, "image", (series.name,), 1, (None, None, None), files=True, volume=True)
        return ModalitySpec(name, "image", (series.name,), 3, (3, None, None), files=True)
    kind = type(cell).__name__
    if isinstance(cell, (np.ndarray, torch.Tensor)):
        kind = f"{cell.ndim}-D arrays"
    raise ValueError(
        f"column {name!r} holds raw inputs ({kind}), not a numeric block, (T, d) token arrays, (H, W, C) "
        "images or (Z, H, W) volumes: encode it first (e.g. with CTVolumeEmbedder, ImageEmbedder or "
        "CLMBREmbedder)."
    )


def require_kinds(layout, kinds, estimator):
    """Raise a ValueError naming the first modality whose kind ``estimator`` cannot read."""
    for spec in layout:
        if spec.kind not in kinds:
            raise ValueError(
                f"{type(estimator).__name__} reads {' and '.join(_KIND_NAMES[k] for k in kinds)}; column "
                f"{spec.name!r} holds {_KIND_NAMES[spec.kind]}: embed it first (ImageEmbedder), or use an "
                "estimator that trains an image encoder (Concat, LateFusion, Unimodal, MedFuse, DAFT, MMTM)."
            )


_KIND_NAMES = {
    "vector": "embedding blocks",
    "sequence": "token columns",
    "image": "(H, W, C) images, (Z, H, W) volumes or image files",
}


def sized_images(layout, size, volume_size=None, window=None):
    """``layout`` with every image column of file paths read as ``(3, size, size)`` images, and every volume
    column of files as ``volume_size`` volumes windowed by ``window`` (left as they are without ``volume_size``)."""
    sized = []
    for spec in layout:
        if spec.files and spec.volume and volume_size is not None:
            spec = replace(spec, shape=tuple(volume_size), window=window)
        elif spec.files and not spec.volume:
            spec = replace(spec, shape=(3, size, size))
        sized.append(spec)
    return tuple(sized)


def _transformer_prefixed(X, raw):
    """Whether every column is ``"{transformer}__{modality}[__{feature}]"`` (a ColumnTransformer's output).

    Numeric columns then have two separators and raw columns one; a frame with any column
    that does not fit (``age``, ``img__0``) is read as it is.
    """
    return bool(raw) and all(str(c).count(SEPARATOR) >= (1 if is_raw else 2) for c, is_raw in raw.items())


def _modality_label(column, prefixed):
    """The column label with a ColumnTransformer's prefix removed (when ``prefixed``)."""
    label = str(column)
    return label.split(SEPARATOR, 1)[1] if prefixed else label


def is_grouped_frame(X):
    """Whether ``X`` is a DataFrame with ``name__`` groups or raw columns (else: split like an array)."""
    if not isinstance(X, pd.DataFrame):
        return False
    return any(SEPARATOR in str(c) for c in X.columns) or any(_raw_columns(X).values())


def infer_layout(X, modalities=None, modality_dims=None):
    """Find the modalities of ``X`` (DataFrame or 2-D array) as a tuple of :class:`ModalitySpec`.

    Parameters
    ----------
    X : pandas.DataFrame or ndarray of shape (n_samples, n_features)
    modalities : sequence of str, default=None
        Keep only these modalities, in this order. ``None`` keeps every modality in order of
        first appearance.
    modality_dims : None, sequence of int or dict, default=None
        How to split an array (or a frame without ``name__`` groups) into modalities.

    Returns
    -------
    layout : tuple of ModalitySpec
    """
    _check_flat_columns(X)
    if is_grouped_frame(X):
        groups = {}
        raw = _raw_columns(X)
        prefixed = _transformer_prefixed(X, raw)
        for col in X.columns.tolist():
            label = str(col).split(SEPARATOR, 1)[1] if prefixed else str(col)
            if SEPARATOR in label:
                groups.setdefault(label.split(SEPARATOR, 1)[0], []).append(col)
            elif raw[col]:
                groups.setdefault(label, []).append(col)
            else:
                raise ValueError(
                    f"column {label!r} is not part of a modality block: name it '<modality>__{label}' "
                    "(e.g. 'clin__age'), or pass a frame without any '<modality>__' groups to have it "
                    "split like an array (see modality_dims)."
                )
        layout = []
        for name, cols in groups.items():
            raw_names = [c for c in cols if _modality_label(c, prefixed) == name]
            if len(cols) == 1 and raw_names:
                layout.append(_raw_spec(name, X[cols[0]]))
            elif raw_names:
                raise ValueError(f"modality {name!r} has both a raw column {name!r} and '{name}__*' columns.")
            else:
                not_numeric = [str(c) for c in cols if raw[c]]
                if not_numeric:
                    raise ValueError(f"column {not_numeric[0]!r} of modality {name!r} is not numeric.")
                layout.append(ModalitySpec(name, "vector", tuple(cols), len(cols)))
    else:
        n_features = X.shape[1]
        layout = [
            ModalitySpec(name, "vector", tuple(range(start, stop)), stop - start)
            for name, start, stop in _split_dims(n_features, modality_dims)
        ]
    if modalities is None:
        return tuple(layout)
    by_name = {spec.name: spec for spec in layout}
    unknown = [m for m in modalities if m not in by_name]
    if unknown:
        raise ValueError(f"unknown modality name(s) {unknown}; X has modalities {list(by_name)}.")
    return tuple(by_name[m] for m in modalities)


def check_X(estimator, X, reset):
    """Validate ``X`` like scikit-learn does and return it as a DataFrame or float array.

    Grouped DataFrames keep their columns (raw object columns included) and get scikit-learn's
    feature-name checks; anything else (arrays, frames without groups) goes through
    ``check_array`` and comes back as a float array (float32 or float64, as given; other dtypes
    become float32).

    As in scikit-learn, a model fitted on a frame reads an array by position (warning that it
    has no feature names), and a model fitted on an array reads a frame by position (warning
    that it has feature names), whatever its column names.
    """
    X = as_pandas(X)
    check_unique_columns(X)
    if not reset and not isinstance(X, pd.DataFrame) and _fitted_on_groups(estimator):
        # scikit-learn warns that X has no feature names and reads it by position; so do we.
        X = validate_data(estimator, X, reset=False, dtype=_FLOATS, ensure_all_finite=False)
        return pd.DataFrame(X, columns=estimator.feature_names_in_)
    if is_grouped_frame(X) and (reset or not _fitted_on_positions(estimator)):
        validate_data(estimator, X, reset=reset, skip_check_array=True)
        if X.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s) (shape=(0, %d)) while a minimum of 1 is required." % X.shape[1])
        if X.shape[1] == 0:
            raise ValueError("Found array with 0 feature(s) while a minimum of 1 is required.")
        return X
    return validate_data(estimator, X, reset=reset, dtype=_FLOATS, ensure_all_finite=False)


def check_unique_columns(X):
    """Raise a ValueError naming the duplicated column names of a DataFrame (a block would be ambiguous).

    MultiIndex columns are refused too (:func:`_check_flat_columns`).
    """
    _check_flat_columns(X)
    if isinstance(X, pd.DataFrame) and X.columns.duplicated().any():
        duplicated = X.columns[X.columns.duplicated()].unique().tolist()
        raise ValueError(f"X has duplicate column names {duplicated[:_MAX_ROWS_SHOWN]}: every column needs its own name.")


def _check_flat_columns(X):
    """Refuse MultiIndex columns: their tuples would be read as modality names such as ``"('img', 'img"``."""
    if isinstance(X, pd.DataFrame) and isinstance(X.columns, pd.MultiIndex):
        raise ValueError(
            f"X has MultiIndex columns ({X.columns.nlevels} levels, e.g. {X.columns[0]!r}); modalities are "
            "read from flat '<modality>__<feature>' column names: flatten them first, e.g. "
            "X.columns = [f'{modality}__{feature}' for modality, feature in X.columns]."
        )


def as_pandas(X):
    """A polars DataFrame as a pandas one (column by column: no pyarrow needed); anything else unchanged."""
    if type(X).__module__.split(".")[0] == "polars" and hasattr(X, "get_columns"):
        return pd.DataFrame({series.name: series.to_numpy() for series in X.get_columns()})
    return X


def _fitted_on_positions(estimator):
    """Whether ``estimator``'s layout reads columns by position (it was fitted on an array or a frame without groups).

    Such a layout has vector blocks of integer positions only; a raw column is always a label.
    """
    return all(spec.kind == "vector" and not isinstance(spec.columns[0], str) for spec in estimator.layout_)


def _fitted_on_groups(estimator):
    """Whether ``estimator`` was fitted on a frame of ``name__`` groups (its layout names columns)."""
    layout = getattr(estimator, "layout_", ())
    return any(isinstance(c, str) for spec in layout for c in spec.columns)


def _out_of_float32(X, spec, row, labels, block):
    """The message for an inf in ``block[row]`` as float32: a real inf, or a finite value beyond float32's range."""
    with np.errstate(over="ignore"):
        col = int(np.flatnonzero(np.isinf(block[row].astype(np.float32)))[0])
    source = X[spec.columns[col]].iloc[row] if isinstance(X, pd.DataFrame) else X[row, spec.columns[col]]
    value = float(source)
    if np.isfinite(value):
        return (
            f"modality {spec.name!r} has the value {value:.3g} in row {row}, column {labels[col]!r}, beyond "
            f"float32's range (|x| <= {np.finfo(np.float32).max:.3g}): rescale that feature."
        )
    return f"modality {spec.name!r} contains inf (first in row {row}, column {labels[col]!r})."


# pandas 2 without copy-on-write copies the columns that ``iloc`` takes from a frame of several
# blocks (pd.concat's output), even columns lying in one block; under copy-on-write they are a
# view, as always on pandas 3, where the option is deprecated. The option is process-wide: the
# lock keeps fits in threads from restoring each other's setting in the wrong order.
_PANDAS_2 = int(pd.__version__.split(".")[0]) < 3
_COPY_ON_WRITE_LOCK = threading.Lock()


@contextlib.contextmanager
def _copy_on_write():
    if not _PANDAS_2:
        yield
        return
    with _COPY_ON_WRITE_LOCK, pd.option_context("mode.copy_on_write", True):
        yield


def _float_values(X, spec):
    """The block's values as they are in ``X`` when they are float32 or float64 (else None).

    A view of the caller's memory, unless pandas must copy them (columns spanning several
    blocks of the frame, or not consecutive).
    """
    if not isinstance(X, pd.DataFrame):
        return X[:, spec.columns[0] : spec.columns[-1] + 1] if X.dtype in _FLOATS else None
    positions = X.columns.get_indexer(spec.columns)
    consecutive = positions[-1] - positions[0] == len(positions) - 1 and (np.diff(positions) == 1).all()
    with _copy_on_write():
        columns = X.iloc[:, positions[0] : positions[-1] + 1] if consecutive else X.iloc[:, positions]
        dtypes = set(columns.dtypes.tolist())
        return columns.to_numpy() if len(dtypes) == 1 and dtypes.pop() in _FLOATS else None


def _tensor(values):
    """``values`` as a tensor sharing their memory (a read-only array too: batches are gathered copies)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(values)


def _float32_chunk(X, spec, start, stop):
    """Columns ``start:stop`` of the block as a float32 array."""
    try:
        if isinstance(X, pd.DataFrame):
            return X[list(spec.columns[start:stop])].to_numpy(dtype=np.float32)
        return np.asarray(X[:, spec.columns[start] : spec.columns[stop - 1] + 1], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"modality {spec.name!r} is not numeric: {exc}") from None


def _vector_block(X, spec, in_place=False):
    # The caller's values read in place (``in_place``, where they can be), else a C-ordered
    # float32 copy filled a slice of columns at a time. NaN/inf are counted per slice of
    # columns (the transient memory is one slice); the rows of a missing modality stay NaN,
    # to be zeroed as batches are gathered (ModalityDataset.batch).
    frame = isinstance(X, pd.DataFrame)
    labels = [str(c) for c in spec.columns] if frame else [f"{spec.name}{SEPARATOR}{i}" for i in range(spec.dim)]
    values = _float_values(X, spec)
    # Only the caller's own memory is read in place; values pandas had to copy are the source
    # of the float32 copy (read once).
    caller = X[spec.columns[0]].to_numpy() if frame else X
    in_place = in_place and values is not None and np.may_share_memory(values, caller)
    block = values if in_place else np.empty((len(X), spec.dim), dtype=np.float32)
    n_nan = np.zeros(len(X), dtype=np.int64)
    has_inf = np.zeros(len(X), dtype=bool)
    for start in range(0, spec.dim, _COPY_CHUNK):
        stop = min(start + _COPY_CHUNK, spec.dim)
        chunk = _float32_chunk(X, spec, start, stop) if values is None else values[:, start:stop]
        # One summing pass (a fifth of the cost of the counts) clears the common chunk, without
        # NaN or inf; an overflowing sum of finite values merely takes the counting path. It
        # sums in float32, which a float64 value beyond float32's range overflows, as it does
        # in the float32 copy or in the batch read in place.
        with np.errstate(over="ignore", invalid="ignore"):
            if not in_place:
                block[:, start:stop] = chunk
            if not np.isfinite(chunk.sum(dtype=np.float32)):
                chunk = chunk.astype(np.float32, copy=False)
                n_nan += np.isnan(chunk).sum(axis=1)
                has_inf |= np.isinf(chunk).any(axis=1)
    missing = n_nan == spec.dim
    partial = (n_nan > 0) & ~missing
    if partial.any():
        row = int(np.flatnonzero(partial)[0])
        col = labels[int(np.flatnonzero(np.isnan(block[row]))[0])]
        raise ValueError(
            f"modality {spec.name!r} has NaN in rows {_rows(partial)} that are not wholly missing "
            f"(first: row {row}, column {col!r}); a missing modality must be NaN in every column of its block."
        )
    if has_inf.any():
        raise ValueError(_out_of_float32(X, spec, int(np.flatnonzero(has_inf)[0]), labels, block))
    return {"x": _tensor(block), "present": torch.from_numpy(~missing)}


def _sequence_block(X, spec):
    cells = X[spec.columns[0]].tolist()
    lengths = np.zeros(len(cells), dtype=np.int64)
    arrays = [None] * len(cells)
    for i, cell in enumerate(cells):
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            continue
        arr = np.asarray(cell, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != spec.dim:
            raise ValueError(
                f"column {spec.name!r}, row {i}: expected a (T, {spec.dim}) array; got shape {arr.shape}."
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"column {spec.name!r}, row {i}: token array contains NaN or inf.")
        arrays[i], lengths[i] = arr, arr.shape[0]
    x = np.full((len(cells), max(int(lengths.max()), 1), spec.dim), np.nan, dtype=np.float32)
    for i, arr in enumerate(arrays):
        if arr is not None:
            x[i, : len(arr)] = arr
    lengths_t = torch.from_numpy(lengths)
    mask = torch.arange(x.shape[1])[None, :] < lengths_t[:, None]
    return {"x": torch.from_numpy(x), "present": lengths_t > 0, "mask": mask}


def _image_block(X, spec):
    cells = X[spec.columns[0]].tolist()
    if spec.files:
        paths, present = check_image_files(cells, spec.name, spec.volume)
        files = VolumeFiles(paths, spec.shape, spec.window) if spec.volume else ImageFiles(paths, spec.shape[-1])
        return {"files": files, "present": torch.from_numpy(present)}
    x = np.zeros((len(cells), *spec.shape), dtype=np.float32)
    present = np.zeros(len(cells), dtype=bool)
    for i, cell in enumerate(cells):
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            continue
        if is_path(cell):
            raise ValueError(
                f"column {spec.name!r}, row {i}: holds a file path where the column's first image is an array; "
                "give every image of a column the same way (all arrays or all paths)."
            )
        where, arr = f"column {spec.name!r}, row {i}", np.asarray(cell)
        image = _volume_from_array(arr, where) if spec.volume else image_from_array(arr, where)
        if image.shape != spec.shape:
            expected = spec.shape if spec.volume else (*spec.shape[1:], spec.shape[0])
            raise ValueError(
                f"{where}: expected a {expected} {'volume' if spec.volume else 'image'} (every cell of a column "
                f"has one shape); got shape {arr.shape}."
            )
        x[i], present[i] = image, True
    return {"x": torch.from_numpy(x), "present": torch.from_numpy(present)}


def _volume_from_array(array, where):
    """A ``(Z, H, W)`` volume cell as float32, unscaled (Hounsfield units, windowed by the encoder)."""
    volume = array.astype(np.float32)
    if not np.isfinite(volume).all():
        raise ValueError(f"{where}: volume contains NaN or inf.")
    return volume


_BLOCK_READERS = {"sequence": _sequence_block, "image": _image_block}


def to_blocks(X, layout):
    """Turn validated ``X`` into ``{name: {"x", "present"[, "mask"]}}`` CPU tensors.

    Vector blocks are ``x`` of shape (n, d), float32 or, read in place from the caller's
    memory, float64; sequence blocks are ``x`` of shape (n, T_max, d) with a boolean ``mask``
    (n, T_max) that is true on real tokens; image blocks are ``x`` of shape (n, C, H, W), the
    ``(H, W, C)`` cells moved channels-first and scaled to [0, 1] (volumes: (n, Z, H, W) in HU).
    ``present`` (n,) is false where the row lacks the modality. The ``x`` of a vector or
    sequence block is NaN wherever there is no value (a missing row, the padding after a
    sequence's last token); an image block's is zero. :class:`ModalityDataset` gives batches
    as float32, standardized (:func:`standardize_blocks`), with zeros there.
    """
    missing_cols = []
    if isinstance(X, pd.DataFrame):
        missing_cols = [c for spec in layout for c in spec.columns if c not in X.columns]
    if missing_cols:
        raise ValueError(f"X lacks column(s) {missing_cols[:_MAX_ROWS_SHOWN]} seen during fit.")
    # The vector blocks are read in place when their float32 copies would together exceed COPY_LIMIT.
    in_place = 4 * len(X) * sum(spec.dim for spec in layout if spec.kind == "vector") > COPY_LIMIT
    return {
        spec.name: _vector_block(X, spec, in_place) if spec.kind == "vector" else _BLOCK_READERS[spec.kind](X, spec)
        for spec in layout
    }


def fit_standardization(blocks):
    """Per-feature ``(mean, scale)`` of every vector and sequence block, over the rows (tokens) present.

    Computed in float64 a few rows at a time (no second copy of a block), each chunk's
    exact mean and sum of squared deviations merged into the running ones by Chan, Golub &
    LeVeque's update ("Algorithms for computing the sample variance", The American
    Statistician, 1983): as accurate as a two-pass float64 computation, and a chunk that
    fits in cache is several times faster than ``torch.std_mean`` over whole columns. A
    feature with zero variance keeps its values (scale 1), as in scikit-learn's
    ``StandardScaler``; images are left to their encoder. Zero variance is judged relative to
    the feature's own magnitude (a standard deviation at most ``1e-12 * max|x|``, round-off of
    a constant), never by an absolute cut-off: a feature in tiny units (values near 1e-20)
    varies and is standardized like the same feature in ordinary units.

    Returns
    -------
    stats : dict of str to (ndarray, ndarray)
    """
    stats = {}
    for name, block in blocks.items():
        if "files" in block or block["x"].ndim == 4:
            continue
        x = block["x"]
        rows = block["mask"] if "mask" in block else block["present"]
        every = bool(rows.all())  # then a chunk is read as it is, not gathered
        mean = torch.zeros(x.shape[-1], dtype=torch.float64)
        sum_sq, largest = torch.zeros_like(mean), torch.zeros_like(mean)
        count = 0
        step = max(1, _STATS_CHUNK // (x[0].numel() or 1))
        for start in range(0, len(x), step):
            values = x[start : start + step]
            values = (values.reshape(-1, x.shape[-1]) if every else values[rows[start : start + step]]).double()
            if not len(values):
                continue
            chunk_mean = values.mean(dim=0)
            delta = chunk_mean - mean
            total = count + len(values)
            mean += delta * (len(values) / total)
            sum_sq += ((values - chunk_mean) ** 2).sum(dim=0) + delta**2 * (count * len(values) / total)
            torch.maximum(largest, values.abs().amax(dim=0), out=largest)
            count = total
        mean, scale = mean.numpy(), (sum_sq / max(count, 1)).sqrt().numpy()
        scale[~(scale > _CONSTANT_SCALE * largest.numpy())] = 1.0
        stats[name] = (mean, scale)
    return stats


# A standardized value this many standard deviations from the training mean is refused.
MAX_STANDARD_SCORE = 1e6


def standardize_blocks(blocks, stats):
    """Attach :func:`fit_standardization`'s ``stats`` to ``blocks``.

    The blocks keep their values: :class:`ModalityDataset` standardizes each batch as it
    gathers it (and refuses a value more than ``MAX_STANDARD_SCORE`` standard deviations
    from the training mean), so that a block read in place from the caller's memory is
    never copied, nor read a second time to be checked.
    """
    for name, stats_of_block in stats.items():
        blocks[name]["standardization"] = stats_of_block


def warn_wholly_missing(blocks):
    """Warn for every modality that is missing in every row: it cannot inform the model."""
    for name, block in blocks.items():
        if not block["present"].any():
            warnings.warn(
                f"modality {name!r} is missing (all NaN / None) in every row: it carries no information; "
                "drop its columns or check the data.",
                UserWarning,
                stacklevel=4,
            )


def take_rows(X, rows):
    """Rows ``rows`` of a DataFrame or array-like (all of ``X`` when ``rows`` is None)."""
    if rows is None:
        return X
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else np.asarray(X)[rows]


def take_block_rows(blocks, rows):
    """The rows ``rows`` of :func:`to_blocks`'s ``blocks`` (new block dicts; all rows when ``rows`` is None).

    The tensors of the rows taken are copies; a block's standardization is kept.
    """
    if rows is None:
        return {name: dict(block) for name, block in blocks.items()}
    index = torch.as_tensor(rows)
    return {
        name: {
            key: value.take(rows) if key == "files" else value[index] if key in ("x", "present", "mask") else value
            for key, value in block.items()
        }
        for name, block in blocks.items()
    }


def require_present(blocks, names, hint):
    """Raise a ValueError naming the modality and rows where any of ``names`` is missing."""
    for name in names:
        absent = ~blocks[name]["present"].numpy()
        if absent.any():
            raise ValueError(f"modality {name!r} is missing (all NaN / None) in rows {_rows(absent)}; {hint}")


def require_any_present(blocks):
    """Raise a ValueError naming the rows that have no modality at all."""
    none = ~np.any([block["present"].numpy() for block in blocks.values()], axis=0)
    if none.any():
        raise ValueError(f"rows {_rows(none)} have no modality at all (every block is missing).")


def image_memory_format(device):
    """The memory format of image batches: channels-last on CUDA, where cuDNN's convolutions are fastest."""
    return torch.channels_last if torch.device(device).type == "cuda" else torch.preserve_format


def _consecutive(rows):
    """``rows`` as a slice when they are consecutive (prediction's batches): a view, not a gathered copy."""
    n = len(rows)
    if n and int(rows[-1]) - int(rows[0]) == n - 1 and bool((rows[1:] > rows[:-1]).all()):
        return slice(int(rows[0]), int(rows[0]) + n)
    return rows


def _gather(values, rows):
    """Rows ``rows`` (a slice or an index tensor) of ``values``: a view, or a copy by
    ``index_select`` (5x faster than indexing with the tensor on the CPU)."""
    if isinstance(rows, slice):
        return values[rows]
    if values.ndim == 2 and values.stride(0) == 1 < values.stride(1):
        # A column-major source (a frame read in place), gathered as columns of its row-major
        # transpose: 20% faster than by rows. The batch is column-major too.
        return values.T.index_select(1, rows).T
    return values.index_select(0, rows)


class ModalityDataset(torch.utils.data.Dataset):
    """Modality blocks and targets held as tensors on one device, batched by index.

    Batches are gathered with tensor indexing (no per-row collation) and made float32,
    standardized with the statistics :func:`standardize_blocks` attached, and zero where
    there is no value. ``indices`` selects a subset without copying the blocks (used for the
    validation split). An image column of file paths stays on disk (``files``):
    :meth:`batch` is given its images, read by the :class:`~skfusion._engine.BatchIterator`'s
    loader, or reads them itself.
    """

    def __init__(self, blocks, targets=None, device="cpu", indices=None):
        self.files = {name: block["files"] for name, block in blocks.items() if "files" in block}
        self.standardization = {
            name: tuple(torch.as_tensor(v, dtype=torch.float32, device=device) for v in block["standardization"])
            for name, block in blocks.items()
            if "standardization" in block
        }
        self.blocks = {
            name: {key: value.to(device) for key, value in block.items() if key in ("x", "present", "mask")}
            for name, block in blocks.items()
        }
        # Whether a vector or sequence block has entries without a value (NaN), to be zeroed.
        self.gaps = {
            name: not bool((block["mask"] if "mask" in block else block["present"]).all())
            for name, block in self.blocks.items()
            if "x" in block and block["x"].ndim < 4
        }
        self.targets = None if targets is None else targets.to(device)
        self.device = torch.device(device)
        n = len(next(iter(blocks.values()))["present"])
        self.indices = torch.arange(n, device=self.device) if indices is None else indices.to(self.device)
        # Whether position i is row i of the blocks (not a subset): a slice of positions is then one of rows.
        self.identity = indices is None

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.batch(torch.as_tensor([i], device=self.device))

    def subset(self, positions):
        """A view on rows ``positions`` (relative to this dataset) sharing the same tensors."""
        view = object.__new__(ModalityDataset)
        view.__dict__.update(self.__dict__)
        view.indices = self.indices[torch.as_tensor(positions, device=self.device)]
        view.identity = False
        return view

    def target_values(self):
        """Targets of the rows of this dataset, on the CPU."""
        return None if self.targets is None else self.targets[self.indices].cpu()

    def rows(self, positions):
        """The rows of the full blocks that ``positions`` (relative to this dataset) select."""
        return self.indices.index_select(0, positions) if isinstance(positions, torch.Tensor) else self.indices[positions]

    def batch(self, positions, images=None, names=None):
        """Gather rows ``positions`` (an index tensor or a slice) into ``({name: block}, targets)``; sequences
        trimmed to the longest.

        ``images`` holds the preprocessed images of the file columns for these rows (from
        :func:`~skfusion._images.read_batches`); without it they are read here, as at
        prediction time (centre crop). ``names`` restricts the batch to those modalities.
        """
        rows = self.rows(positions)
        blocks = self.blocks if names is None else {name: self.blocks[name] for name in names}
        files = {name: column for name, column in self.files.items() if name in blocks}
        if files and images is None:
            images = {name: column.read(rows.cpu()) for name, column in files.items()}
        take = positions if isinstance(positions, slice) and self.identity else _consecutive(rows)
        out = {}
        for name, block in blocks.items():
            gathered = {key: _gather(value, take) for key, value in block.items()}
            if name in self.files:
                # A volume batch (n, D, H, W) has no channel axis yet: its encoder lays it out (channels-last-3d).
                volumes = isinstance(self.files[name], VolumeFiles)
                layout = torch.preserve_format if volumes else image_memory_format(self.device)
                gathered["x"] = images[name].to(self.device, non_blocking=True, memory_format=layout)
            if "mask" in gathered:
                width = max(int(gathered["mask"].sum(dim=1).max()), 1)
                gathered["x"] = gathered["x"][:, :width]
                gathered["mask"] = gathered["mask"][:, :width]
            if name in self.gaps:
                gathered["x"] = self._values(name, gathered, rows)
            out[name] = gathered
        return out, (None if self.targets is None else _gather(self.targets, take))

    def _values(self, name, gathered, rows):
        """A batch's float32 values of a vector or sequence block (the block's ``rows``): standardized, zero where
        there is no value.

        Raises
        ------
        ValueError
            Where a value lies more than ``MAX_STANDARD_SCORE`` standard deviations from the
            training mean: far outside anything seen in ``fit``, the network's output there is
            meaningless (a survival curve of exactly 0 or 1).
        """
        # Written row-major whatever the source's layout: a block read in place from a frame is
        # column-major, and the modules' concatenation of column-major blocks costs twice the
        # standardization (0.7 s of a 200,000-row predict, benchmarks/results/predict.md).
        x = gathered["x"].to(torch.float32)
        if name in self.standardization:
            mean, scale = self.standardization[name]
            x = torch.sub(x, mean, out=torch.empty(x.shape, device=x.device)).div_(scale)
        else:
            x = x.contiguous()
        if self.gaps[name]:
            valid = gathered["mask"] if "mask" in gathered else gathered["present"]
            x = x.masked_fill(~valid.unsqueeze(-1), 0.0)
        if name in self.standardization and len(x):
            low, high = torch.aminmax(x)  # one pass, no temporary (NaN propagates, and is refused)
            if not (-MAX_STANDARD_SCORE <= low and high <= MAX_STANDARD_SCORE):
                self._refuse_far_value(name, gathered["x"], x, rows)
        return x

    def _refuse_far_value(self, name, raw, standardized, rows):
        """Raise the ValueError of a batch value beyond ``MAX_STANDARD_SCORE``, naming its row and feature."""
        position = np.unravel_index(int(standardized.abs().argmax()), standardized.shape)
        feature = int(position[-1])
        mean, scale = (float(v[feature]) for v in self.standardization[name])
        score = abs(float(raw[position]) - mean) / scale
        raise ValueError(
            f"modality {name!r}, row {int(rows[position[0]])}, feature {feature}: the value lies {score:.3g} "
            "standard deviations from the training mean, far outside the data seen in fit."
        )
