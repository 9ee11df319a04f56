"""Pairing images with prediction times: each row gets its subject's latest image, never a later one."""

from datetime import timedelta
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from .._compat import StrOptions

_DIRECTIONS = StrOptions({"backward"})


def _check_max_gap(max_gap):
    """``max_gap`` as a non-negative ``pd.Timedelta``, or None."""
    if max_gap is None:
        return None
    if isinstance(max_gap, Real):
        raise ValueError(
            f"max_gap must be a duration, not a number ({max_gap!r}): give e.g. pd.Timedelta(days={max_gap!r}) "
            "or datetime.timedelta(days=...), or None for no limit."
        )
    if not isinstance(max_gap, (timedelta, np.timedelta64)) or pd.isna(max_gap):
        raise ValueError(
            f"max_gap must be a pd.Timedelta, datetime.timedelta or None; got {max_gap!r}."
        )
    max_gap = pd.Timedelta(max_gap)
    if max_gap < pd.Timedelta(0):
        raise ValueError(f"max_gap must not be negative; got {max_gap}.")
    return max_gap


def _rows_of(X, subject, time):
    """``(subject ids, prediction times)`` of ``X``'s rows, from its index levels or its columns."""
    values = {}
    for parameter, name in (("subject", subject), ("index_time", time)):
        if name in X.index.names:
            values[name] = X.index.get_level_values(name)
        elif name in X.columns:
            values[name] = X[name]
        else:
            raise ValueError(
                f"{parameter}={name!r}: X has no index level or column {name!r} (its levels: {list(X.index.names)})."
            )
    times = pd.to_datetime(pd.Series(np.asarray(values[time])), errors="coerce")
    missing = np.flatnonzero(times.isna().to_numpy())
    if len(missing):
        raise ValueError(
            f"X has {len(missing)} missing or unparseable prediction time(s) {time!r}, "
            f"at rows {X.index[missing[:5]].tolist()}."
        )
    return np.asarray(values[subject]), times.dt.as_unit("us").to_numpy()


def _read_manifest(manifest, subject, time, path):
    """The manifest's ``subject``, ``time`` (datetime) and ``path`` columns, its rows named by its index."""
    if not isinstance(manifest, pd.DataFrame):
        raise ValueError(f"manifest must be a pandas.DataFrame; got {type(manifest).__name__}.")
    lacking = [name for name in (subject, time, path) if name not in manifest.columns]
    if lacking:
        raise ValueError(f"manifest lacks column(s) {lacking}; its columns: {manifest.columns.tolist()}.")
    times = pd.to_datetime(manifest[time], errors="coerce", format="mixed")
    unparseable = np.flatnonzero(times.isna().to_numpy())
    if len(unparseable):
        bad = manifest.index[unparseable]
        raise ValueError(
            f"manifest row {bad[0]!r} has an unparseable {time!r}: {manifest[time].iloc[unparseable[0]]!r} "
            f"({len(bad)} such row(s), {bad[:5].tolist()})."
        )
    frame = pd.DataFrame(
        {"_subject": manifest[subject].to_numpy(), "_time": times.dt.as_unit("us").to_numpy(),
         "_path": manifest[path].to_numpy(), "_row": manifest.index}
    )  # fmt: skip
    duplicated = frame.duplicated(["_subject", "_time"], keep=False).to_numpy()
    if duplicated.any():
        raise ValueError(
            f"manifest rows {manifest.index[duplicated][:10].tolist()} repeat a ({subject!r}, {time!r}) pair: "
            "which image to pair would be ambiguous; keep one row per subject and time."
        )
    return frame


def pair_images(X, manifest, *, subject="subject_id", time="time", path="path", image="image",
                index_time="prediction_time", max_gap=None, direction="backward"):  # fmt: skip
    """Add to ``X`` the path of each row's latest image at or before its prediction time.

    For every row of ``X`` (a subject and a prediction time), the image paired is the
    subject's latest manifest image whose time is at or before the prediction time (an image
    at the very prediction time is paired; one a microsecond later is not) and at most
    ``max_gap`` before it; ``None`` where there is none. The search is
    :func:`pandas.merge_asof` by subject on time, both in microseconds (MEDS's resolution).
    The new column feeds the image encoders (``ImageEmbedder(image="image")``,
    ``CTVolumeEmbedder``) and the fusion estimators' image columns directly.

    Parameters
    ----------
    X : pandas.DataFrame
        The rows, as :func:`load_meds` gives them: ``subject_id`` and ``prediction_time``
        as index levels (other levels, such as ``split``, are kept) or as columns.
    manifest : pandas.DataFrame
        One row per image: the subject, the acquisition time (anything
        :func:`pandas.to_datetime` parses) and the path of a 2-D image file, a DICOM folder
        or a NIfTI file. It is only read; its index names its rows in errors.
    subject : str, default="subject_id"
        The subject column of ``manifest`` (and index level or column of ``X``).
    time : str, default="time"
        The acquisition time column of ``manifest``.
    path : str, default="path"
        The path column of ``manifest``.
    image : str, default="image"
        Name of the new column of paths.
    index_time : str, default="prediction_time"
        The index level or column of ``X`` holding each row's time (MEDS's prediction time).
    max_gap : pandas.Timedelta, datetime.timedelta or None, default=None
        The oldest image paired is ``max_gap`` before the prediction time; None: no limit.
    direction : {"backward"}, default="backward"
        Only the past is paired: an image after the prediction time would leak the future.

    Returns
    -------
    X_paired : pandas.DataFrame
        A copy of ``X`` (same index, same row order) with the object column ``image``: a path
        (str) or None.

    Raises
    ------
    ValueError
        If ``manifest`` lacks a named column, has an unparseable time or repeats a (subject,
        time) pair (naming the rows), or a paired path does not exist (naming its row); if
        ``X`` lacks ``subject`` or ``index_time``, has a missing prediction time or
        already has a column ``image``; if ``max_gap`` is not a non-negative duration (a
        number is refused: its unit would be a guess) or ``direction`` is not "backward".

    See Also
    --------
    load_meds : The ``X`` this pairs.
    skfusion.encoders.ImageEmbedder : Embeds the paired column.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> from skfusion.datasets import pair_images
    >>> X = pd.DataFrame(index=pd.MultiIndex.from_arrays(
    ...     [[1, 1, 2], pd.to_datetime(["2020-01-01", "2020-06-01", "2020-01-01"])],
    ...     names=["subject_id", "prediction_time"]))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     (Path(folder) / "a.png").touch()
    ...     manifest = pd.DataFrame({"subject_id": [1], "time": ["2020-03-01"],
    ...                              "path": [str(Path(folder) / "a.png")]})
    ...     paired = pair_images(X, manifest)
    >>> [p if p is None else Path(p).name for p in paired["image"]]
    [None, 'a.png', None]
    """
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"X must be a pandas.DataFrame (load_meds's X); got {type(X).__name__}.")
    if not _DIRECTIONS.is_satisfied_by(direction):
        raise ValueError(f"direction must be {_DIRECTIONS}; got {direction!r}.")
    if not isinstance(image, str) or image in X.columns:
        raise ValueError(f"image must be the name (str) of a new column of X; got {image!r}.")
    max_gap = _check_max_gap(max_gap)
    subjects, times = _rows_of(X, subject, index_time)
    images = _read_manifest(manifest, subject, time, path)
    rows = pd.DataFrame({"_subject": subjects, "_time": times, "_position": np.arange(len(X))})
    # merge_asof needs both sides sorted on the time key; _position restores X's order.
    paired = pd.merge_asof(
        rows.sort_values("_time", kind="stable"),
        images.sort_values("_time", kind="stable"),
        on="_time",
        by="_subject",
        direction="backward",
        tolerance=max_gap,
        allow_exact_matches=True,
    ).sort_values("_position")
    found = paired["_path"].notna().to_numpy()
    for row, file in paired.loc[found, ["_row", "_path"]].drop_duplicates("_row").itertuples(index=False):
        if not Path(file).exists():
            raise ValueError(f"manifest row {row!r}: {path!r} {str(file)!r} does not exist.")
    out = X.copy()
    out[image] = pd.Series(
        [str(file) if hit else None for file, hit in zip(paired["_path"], found)], index=X.index, dtype=object
    )
    return out
