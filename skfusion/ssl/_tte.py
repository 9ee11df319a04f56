"""Time-to-event pretraining of a CT encoder on the EHR events that follow each scan."""

import json
import os
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted

from .._engine import BalancedBatches, draw_seed, make_net, resolve_device, seeded
from .._training import HELD_OUT_PARAMETERS, MIN_VALIDATION_ROWS, held_out_split, record_epochs
from .._compat import Interval, StrOptions, _fit_context
from .._data import ModalityDataset
from .._survival import MAX_TIME
from .._images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MINMAX,
    VOLUME_FILE_CONSTRAINTS,
    is_missing_cell,
    resolve_volume_window,
)
from ..encoders._backbone import load_backbone, load_state_dict
from ..encoders._base import BaseColumnEncoder
from ..encoders._cache import EmbeddingCache, cache_key, callable_fingerprint, content_hash, fingerprint_of
from ..encoders._embedder import as_size, check_size
from ..encoders._event_store import EventView
from ..encoders._events import as_event_frame, is_number, to_days, utc_naive
from .._volumes import read_ct_volume, select_slices, series_files
from ..encoders._tte_weights import _LAYOUTS, load_tte_encoder
from ..encoders.ct import CTVolumeEmbedder, check_slices
from ..modules.tte import (
    PiecewiseExponentialHead,
    PiecewiseExponentialLoss,
    SliceGeometry,
    TimeToEventNetwork,
    VolumeEncoder,
    WholeVolumeEncoder,
    default_slice_backbone,
    reads_volumes,
)
from ..modules.volume_input import VolumeGeometry
from ..modules.volumes import VOLUME_NETWORKS, check_volume_input, volume_network


_PREPROCESSING_VERSION = 1
_MIN_ROWS = 2
# The 3-D networks whose checkpoints Huo et al. released: their architecture in load_tte_encoder.
_RELEASED = {network: architecture for architecture, (network, _, _) in _LAYOUTS.items()}


class TimeToEventPretraining(BaseColumnEncoder):
    """Pretrain a CT encoder to predict the time to the EHR events that follow each scan.

    Time-to-event pretraining (Huo, Fries, Lozano et al., "Time-to-event pretraining for 3D
    medical imaging", ICLR 2025 [1]_): each row pairs a CT volume with the patient's event
    history and the scan's time (``index_time``). The ``n_tasks`` codes that occur most
    often after the index time in the training rows are the tasks; for each row and task,
    the target is the time from the index time to the code's first occurrence after it (an
    event), or to the row's last event (censored). The encoder is trained, without labels,
    to predict these times with MOTOR's piecewise-exponential head (Steinberg et al.,
    ICLR 2024 [2]_): the embedding is projected to a ``rank``-dimensional representation per
    time piece, shared by the tasks, and a per-task linear read-out of it gives each task's
    log-hazard in each piece; the loss is the negative log-likelihood of these
    piecewise-constant hazards, averaged over rows and tasks. ``transform`` then embeds
    volumes with the pretrained encoder, for a linear probe, a Cox model or a fusion model.

    The encoder is one of two kinds, chosen by ``backbone``:

    - **a 3-D network** (a name of :data:`~skfusion.modules.volumes.VOLUME_NETWORKS`, or a
      module whose first convolution is a ``torch.nn.Conv3d``) reads the whole volume, as
      the fusion estimators' volume columns do: each volume, in HU, is resampled to
      ``volume_size`` (trilinear) and windowed (``window``; ``"minmax"`` scales it by its own
      minimum and maximum), then read as ``(1, D, H, W)``. **These follow the paper** [1]_:
      its encoders are DenseNet-121-3D (``"densenet121-3d"``), ResNet-152-3D inflated from 2-D
      weights (``"resnet152-3d"``, the architecture; skfusion does not inflate) and SwinUNETR
      (``"swinunetr"``), trained on 224^3 volumes with min-max scaling: ``volume_size=(224,
      224, 224), window="minmax"``. Their released weights load through ``weights``. The
      other networks of that list (smaller ResNets and DenseNets, ``"swinvit"``) and smaller
      volumes are alternatives that fit a CPU.
    - **a 2-D slice network** (None, the default, a torchvision name, or any other module)
      reads a volume as :class:`~skfusion.encoders.CTVolumeEmbedder` does (same readers,
      ``window``, ``slices``, ``image_size``, ``mean``/``std``), encodes each slice and pools
      the slices by gated attention over ``z`` (Ilse et al., ICML 2018 [3]_). This is
      skfusion's **alternative** to the paper's 3-D encoders, sized for a CPU (the default
      network has 78k parameters), whose backbone is a drop-in ``backbone=`` of
      ``CTVolumeEmbedder``.

    Either way the fitted ``image_encoder_`` maps HU volumes to the embedding: it is the
    ``image_encoder=`` of the fusion estimators on a column of ``(Z, H, W)`` HU arrays, and
    the ``backbone=`` of a ``CTVolumeEmbedder``, which then embeds each volume whole (the
    values of ``transform``).

    Parameters
    ----------
    image : str, default="ct"
        The raw column of CT volumes: DICOM series folders, DICOM or NIfTI files, ``(z, y,
        x)`` arrays in Hounsfield units, or ``(y, x)`` arrays (a 2-D image in HU: one
        slice). Rows with a missing cell (None/NaN) are skipped at fit and get NaN at
        transform.
    events : str, default="ehr"
        The event column: per row, a frame with ``time``, ``code`` and optionally
        ``numeric_value`` (the frames ``CLMBREmbedder`` and ``OneHotEHREncoder`` read), a
        list of codes (times 0, 1, 2, ...), or the event view of
        :func:`~skfusion.datasets.load_meds`, whose subject's events after the prediction
        time are read from the dataset (they are the targets; give the scan times as the
        ``index_time`` column, e.g. ``X.index.get_level_values("prediction_time")``).
        Needed at fit only.
    index_time : str, default="index_time"
        The column of scan times, in the events' time unit (numbers), or datetimes when the
        event times are datetimes (then times are counted in days). Events after it define
        the tasks; events at or before it are ignored. Needed at fit only.
    n_tasks : int, default=8192
        Number of tasks: the codes occurring after the index time in the most training rows
        (ties broken by code), 8,192 as in [1]_; fewer when fewer codes occur.
    ontology : None, "metadata" or dict, default=None
        Codes' ancestors, as MOTOR and [1]_ use them: each event after the index time also
        counts as an event of every ancestor of its code (parents, their parents, ...), at
        its time, before the tasks are chosen, so that a general code (a disease chapter)
        can be a task made of its specific ones. ``"metadata"`` reads the ``parent_codes``
        of the MEDS dataset the event views of :func:`~skfusion.datasets.load_meds` come
        from (its ``metadata/codes.parquet``); a dict ``{code: parent codes}`` gives them
        directly; None uses the codes as they are.
    n_pieces : int, default=8
        Number of pieces of the piecewise-constant hazards. The boundaries are the
        quantiles of the observed times to event over every row and task, from 0 to
        infinity (fewer pieces when quantiles coincide).
    rank : int, default=32
        Width of the per-piece representation shared by the tasks (MOTOR's low-rank
        read-out).
    backbone : None, torch.nn.Module or str, default=None
        The encoder, copied at fit and never modified. A 3-D encoder: a name of
        :data:`~skfusion.modules.volumes.VOLUME_NETWORKS` (built randomly initialised by
        :func:`~skfusion.modules.volumes.volume_network`, MONAI needed) or a module whose
        first convolution (in module order) is a ``Conv3d``, mapping ``(B, 1, D, H, W)``
        volumes in [0, 1] to ``(B, d)`` (e.g. a network of
        :func:`~skfusion.encoders.load_tte_encoder`). Anything else is the 2-D slice encoder,
        as in ``CTVolumeEmbedder``: a module mapping ``(B, 3, H, W)`` (the windowed slice
        replicated to 3 channels and normalised) to ``(B, d)``, or the name of a torchvision
        architecture built without weights (``"resnet18"`` to ``"resnet152"`` without
        torchvision, as in :func:`~skfusion.encoders.load_backbone`). None is a small 2-D
        ResNet (one basic block per stage, 8 to 64 channels, ``d = 64``) that trains on the
        CPU.
    weights : None, str or os.PathLike, default=None
        A local state-dict file (safetensors, or ``torch.save`` read with
        ``weights_only=True``); nothing is ever downloaded. For a 3-D backbone: the
        network's weights (the file :meth:`save_pretrained` writes, or MONAI's keys), or, for
        ``"densenet121-3d"``, ``"resnet152-3d"`` and ``"swinunetr"``, a checkpoint of Huo et
        al. (read by :func:`~skfusion.encoders.load_tte_encoder`, pretraining head dropped).
        For a 2-D backbone: the backbone's weights (as ``CTVolumeEmbedder`` loads them), or a
        whole encoder written by :meth:`save_pretrained` (backbone and attention pooling).
    window : {"pe", "mace", "minmax"} or tuple of (float, float), default="pe"
        HU window, as in ``CTVolumeEmbedder``: clipped and scaled to [0, 1]. ``"minmax"``
        (3-D backbones only) scales each volume by its own minimum and maximum, what Huo et
        al. did (MONAI's ``ScaleIntensity``).
    volume_size : tuple of 3 int, default=(128, 128, 128)
        3-D backbones only: the ``(D, H, W)`` every volume is resampled to (trilinear), as
        the fusion estimators' ``volume_size``; Huo et al. used 224^3. A volume too small
        for the network's downsampling is a ValueError naming it.
    slices : None, tuple of (int, int), float or callable, default=None
        Which axial slices to keep (before resampling, for a 3-D backbone), as in
        ``CTVolumeEmbedder``.
    image_size : None, int or tuple of (int, int), default=None
        2-D backbones only: the size of the slice the backbone reads, as in
        ``CTVolumeEmbedder``: each slice is resized (bilinear, antialiased) so that its
        shorter side is the int, or to the ``(height, width)`` pair; None keeps the native
        size. Every volume must then have slices of one size: set a pair when volumes
        differ.
    mean : tuple of float or None, default=(0.485, 0.456, 0.406)
        2-D backbones only: per-channel means of the backbone input's normalisation, as in
        ``CTVolumeEmbedder``.
    std : tuple of float or None, default=(0.229, 0.224, 0.225)
        2-D backbones only: per-channel standard deviations of that normalisation.
    attention_dim : int, default=32
        2-D backbones only: hidden width of the attention pooling over slices.
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=0.0
    batch_size : int, default=16
        Volumes per mini-batch (never a batch of one volume).
    max_epochs : int, default=20
        Epochs of pretraining, at most; 0 keeps the initial encoder (random, or
        ``weights``): the untrained baseline.
    early_stopping : bool or "auto", default=False
        How the number of epochs is chosen. ``False``: train ``max_epochs`` epochs on every
        row and keep the last (no warning). ``True``: hold out ``validation_fraction`` of
        the training rows, record their loss (the piecewise-exponential likelihood) before
        training and after each epoch, stop when it has not improved for
        ``n_iter_no_change`` epochs and restore the best epoch (0: the initial encoder);
        ``fit`` warns (:class:`~sklearn.exceptions.ConvergenceWarning`) when ``max_epochs``
        ends training while that loss was still improving. ``"auto"`` does so when that
        share would hold at least 100 rows and at least ``batch_size`` (from 1,000 rows at
        the defaults), as the other pretraining transformers. Off by default: the encoder
        keeps improving for other outcomes after the held-out loss of its own tasks has
        turned (probes 0.01 C lower at 1,500 and 3,000 rows with it, ``docs/design.md``).
    validation_fraction : float, default=0.1
        Share of the training rows held out when ``early_stopping`` holds rows out.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs without a better held-out loss
        (scikit-learn's ``MLPClassifier`` default).
    device : str, default="auto"
        ``"auto"`` is CUDA when available, else the CPU.
    cache_dir : None, str or os.PathLike, default=None
        Folder of ``CTVolumeEmbedder``'s content-addressed cache, here holding the
        windowed, resized slices (or resampled volume) of each volume (keyed by the volume's
        bytes and by ``window``, ``slices``, ``image_size`` and, for a 3-D backbone,
        ``volume_size``), so reading and preprocessing a volume happens once across fits and
        transforms.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the batch order.
    verbose : int, default=0
        skorch's per-epoch log when positive.

    Attributes
    ----------
    tasks_ : ndarray of str, shape ``(n_tasks_,)``
        The task codes, most frequent first.
    task_event_counts_ : ndarray of int, shape ``(n_tasks_,)``
        Training rows in which each task code occurs after the index time (itself or, with
        an ``ontology``, a descendant).
    task_ancestors_ : list of tuple of str
        Each task's ancestors in ``ontology`` (sorted; empty tuples without one).
    piece_boundaries_ : ndarray of shape ``(n_pieces_ + 1,)``
        Start of each piece, then ``inf``, in the events' time unit (days for datetimes).
    n_pieces_ : int
    encoder_ : skfusion.modules.tte.VolumeEncoder or WholeVolumeEncoder
        The pretrained encoder, in evaluation mode. 2-D: backbone and attention pooling,
        reading windowed slices ``(n, Z, H, W)`` with a ``(n, Z)`` mask of real slices. 3-D:
        the network, reading windowed, resampled volumes ``(n, D, H, W)``.
    backbone_ : torch.nn.Module
        The pretrained network. 2-D: the slice encoder (``encoder_.backbone``), the
        ``backbone=`` of a ``CTVolumeEmbedder`` with the same ``window``, ``image_size``,
        ``mean`` and ``std`` (which then embeds slices). 3-D: the network
        (``encoder_.network``), ``(B, 1, D, H, W)`` volumes in [0, 1] to ``(B, d)``.
    image_encoder_ : torch.nn.Sequential
        The encoder behind the windowing and resizing (``SliceGeometry``) or resampling
        (``VolumeGeometry``): ``(n, Z, H, W)`` volumes in HU to ``(n, d)``. The
        ``image_encoder=`` of the fusion estimators on a raw column of equal-shaped ``(Z, H,
        W)`` HU arrays, which they fine-tune with the task head; the ``backbone=`` of a
        ``CTVolumeEmbedder``, which then embeds each volume whole, as ``transform`` does.
    net_ : skfusion._engine.FusionNet
        The skorch network (encoder and piecewise-exponential head) and its history.
    n_iter_ : int
        Epochs trained.
    best_epoch_ : int
        The epoch whose weights the model has: with rows held out, the one of lowest
        held-out loss (0: the initial encoder); otherwise the last, ``n_iter_``.
    embedding_dim_ : int
        Width ``d`` of the embedding.
    slice_shape_ : tuple of (int, int)
        Slice size the encoder was trained on; ``transform`` requires it (3-D: the last two
        sides of ``volume_size``, which every volume is resampled to).
    volume_size_ : tuple of 3 int or None
        The ``(D, H, W)`` volumes are resampled to for a 3-D backbone; None for a 2-D one.
    n_rows_used_ : int
        Training rows (with an image and some follow-up after the index time).
    window_ : tuple of (float, float) or "minmax"
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    skfusion.encoders.CTVolumeEmbedder : training-free or pretrained slice embeddings.
    skfusion.encoders.load_tte_encoder : the 3-D encoders Huo et al. released.

    Notes
    -----
    Rows whose events end at or before the index time (no follow-up) carry no information
    for the likelihood: they are left out with a warning that counts them. Events are
    compared with the index time strictly (an event at the index time is history). The
    preprocessed volumes of the training rows are held in memory (on ``device``) during
    fit: ``4 * D * H * W`` bytes a volume for a 3-D backbone (8 MiB at 128^3).

    References
    ----------
    .. [1] Huo, Z., Fries, J. A., Lozano, A. et al. "Time-to-event pretraining for 3D
           medical imaging." ICLR 2025.
    .. [2] Steinberg, E., Fries, J. A., Xu, Y., Shah, N. H. "MOTOR: a time-to-event
           foundation model for structured medical records." ICLR 2024.
    .. [3] Ilse, M., Tomczak, J. M., Welling, M. "Attention-based deep multiple instance
           learning." ICML 2018.

    Examples
    --------
    >>> from skfusion.datasets import make_imaging_ehr_cohort
    >>> from skfusion.ssl import TimeToEventPretraining
    >>> X, outcomes = make_imaging_ehr_cohort(n_samples=24, random_state=0)
    >>> tte = TimeToEventPretraining(window="mace", max_epochs=1, random_state=0).fit(X)
    >>> Xt = tte.transform(X[["ct"]])
    >>> Xt.shape
    (24, 64)
    >>> list(Xt.columns[:2])
    ['ct__0', 'ct__1']

    A 3-D network on whole volumes, resampled to 8 x 16 x 16 and min-max scaled (the
    paper's recipe at 224^3 with ``"densenet121-3d"``):

    >>> tte3d = TimeToEventPretraining(backbone="resnet10-3d", volume_size=(8, 16, 16),
    ...                                window="minmax", max_epochs=1, random_state=0).fit(X)
    >>> tte3d.transform(X[["ct"]]).shape
    (24, 512)
    """

    _parameter_constraints = {
        "image": [str],
        "events": [str],
        "index_time": [str],
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "ontology": [None, StrOptions({"metadata"}), dict],
        "n_pieces": [Interval(Integral, 1, None, closed="left")],
        "rank": [Interval(Integral, 1, None, closed="left")],
        "backbone": [None, str, torch.nn.Module],
        "weights": [None, str, os.PathLike],
        "window": VOLUME_FILE_CONSTRAINTS["window"],
        "volume_size": VOLUME_FILE_CONSTRAINTS["volume_size"],
        "slices": [None, tuple, Interval(Real, 0, 1, closed="right"), callable],
        "image_size": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "mean": [None, tuple, list],
        "std": [None, tuple, list],
        "attention_dim": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        **HELD_OUT_PARAMETERS,
        "device": [StrOptions({"auto", "cpu", "cuda"}), str],
        "cache_dir": [None, str, os.PathLike],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        image="ct",
        events="ehr",
        index_time="index_time",
        n_tasks=8192,
        ontology=None,
        n_pieces=8,
        rank=32,
        backbone=None,
        weights=None,
        window="pe",
        volume_size=(128, 128, 128),
        slices=None,
        image_size=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        attention_dim=32,
        lr=1e-3,
        weight_decay=0.0,
        batch_size=16,
        max_epochs=20,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        device="auto",
        cache_dir=None,
        random_state=None,
        verbose=0,
    ):
        self.image = image
        self.events = events
        self.index_time = index_time
        self.n_tasks = n_tasks
        self.ontology = ontology
        self.n_pieces = n_pieces
        self.rank = rank
        self.backbone = backbone
        self.weights = weights
        self.window = window
        self.volume_size = volume_size
        self.slices = slices
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.attention_dim = attention_dim
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.cache_dir = cache_dir
        self.random_state = random_state
        self.verbose = verbose

    # BaseColumnEncoder reads the column named by ``image`` and writes ``output``: here the same.
    _column_parameter = "image"
    output = None

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Pretrain the encoder on the rows that have an image and follow-up after the index time.

        Parameters
        ----------
        X : pandas.DataFrame
            The ``image``, ``events`` and ``index_time`` columns (others are ignored).
        y : None
            Ignored: the targets come from the events.

        Returns
        -------
        self : object
        """
        images = self._check_frame(X, reset=True)
        self._check_preprocessing()
        rows = [i for i, cell in enumerate(images) if not is_missing_cell(cell)]
        if not rows:
            raise ValueError(f"{type(self).__name__}: column {self.image!r} has no non-missing cell.")
        futures, censoring, ancestry = self._follow_up(X, rows)
        kept = [i for i, c in zip(rows, censoring) if c is not None]
        if len(rows) > len(kept):
            warnings.warn(
                f"{type(self).__name__}: {len(rows) - len(kept)} row(s) with an image have no event after their "
                f"index time (no follow-up) and are left out of the pretraining.",
                UserWarning,
                stacklevel=2,
            )
        if len(kept) < _MIN_ROWS:
            raise ValueError(
                f"{type(self).__name__} needs at least {_MIN_ROWS} rows with an image and follow-up after the index "
                f"time; got {len(kept)}."
            )
        futures = [f for f, c in zip(futures, censoring) if c is not None]
        censoring = np.array([c for c in censoring if c is not None])
        time, event = self._targets(futures, censoring)
        self.task_ancestors_ = [ancestry.of(task) if ancestry.parents else () for task in self.tasks_]
        volumes = self._preprocess(
            [images[i] for i in kept], [f"row {X.index[i]!r} of column {self.image!r}" for i in kept]
        )
        self.slice_shape_ = tuple(volumes[0].shape[1:])
        self.n_rows_used_ = len(kept)
        self._train(volumes, time, event)
        return self

    def _check_frame(self, X, reset):
        if not reset:
            # transform needs the image column only, so the frame seen at fit is not required.
            if not isinstance(X, pd.DataFrame) or self.image not in X.columns:
                raise ValueError(
                    f"{type(self).__name__}.transform needs a pandas DataFrame with the image column {self.image!r}."
                )
            return X[self.image].tolist()
        cells = super()._check_frame(X, reset)
        for name in ("events", "index_time"):
            if getattr(self, name) not in X.columns:
                raise ValueError(f"{type(self).__name__}: {name} column {getattr(self, name)!r} is not in X.")
        return cells

    def _index_days(self, X, rows):
        """Index times of ``rows`` as floats, and whether they were numbers (not datetimes)."""
        column = X[self.index_time]
        numeric = is_number(column)
        if not (numeric or pd.api.types.is_datetime64_any_dtype(column)):
            raise ValueError(
                f"index_time column {self.index_time!r} must hold numbers (in the events' time unit) or datetimes; "
                f"it has dtype {column.dtype}."
            )
        values = to_days(column.iloc[rows], f"column {self.index_time!r}")
        bad = ~np.isfinite(values)
        if bad.any():
            label = X.index[rows[int(np.flatnonzero(bad)[0])]]
            raise ValueError(
                f"row {label!r} of column {self.index_time!r}: the index time is missing or not finite "
                f"({int(bad.sum())} row(s))."
            )
        return values, numeric

    def _follow_up(self, X, rows):
        """Per row: ``{code: first time after the index}`` and the censoring time (None: no follow-up); the ontology.

        With an ``ontology``, each event also stands for every ancestor of its code (an
        ancestor's first time is that of its earliest descendant).
        """
        index, numeric = self._index_days(X, rows)
        # The stamps too, not only float days: a view's events are compared with them exactly.
        stamps = [None] * len(rows) if numeric else list(utc_naive(X[self.index_time].iloc[rows]))
        cells = X[self.events].iloc[rows].tolist()
        ancestry = _Ancestry(self._parents(cells))
        futures, censoring = [], []
        for label, cell, start, stamp in zip(X.index[rows], cells, index, stamps):
            if is_missing_cell(cell):
                futures.append({})
                censoring.append(None)
                continue
            where = f"row {label!r} of column {self.events!r}"
            codes, delays = self._after(cell, start, stamp, where)
            if (delays > MAX_TIME).any():
                raise ValueError(
                    f"{where}: an event is more than {MAX_TIME:.1e} days after the index time, beyond what the "
                    "float32 network can hold (rescale the times)."
                )
            first = {}
            for code, delay in zip(codes, delays):  # sorted by time: the first one wins
                first.setdefault(code, delay)
            futures.append(ancestry.expand(first))
            censoring.append(float(delays.max()) if len(delays) else None)
        return futures, censoring, ancestry

    def _after(self, cell, start, stamp, where):
        """The codes of the events strictly after the index time and their delays (days), in time order.

        ``start`` is the index time in days, ``stamp`` the UTC timestamp it came from (None
        for a numeric index time). A view of :func:`~skfusion.datasets.load_meds` is read
        from the shared store: the subject's events after its prediction time are there (the
        encoders never read them).
        """
        numeric = stamp is None
        if isinstance(cell, EventView):
            if numeric:
                raise ValueError(
                    f"{where}: the events are MEDS datetimes, but index_time column {self.index_time!r} holds numbers."
                )
            times, codes = cell.subject_events()
            # Compared in whole microseconds (MEDS's unit, floored): an event at the index time is history.
            index = int(stamp.to_datetime64().astype("datetime64[us]").astype(np.int64))
            first = np.searchsorted(times, index, side="right")  # static events (NO_TIME) sort first
            delays = (times[first:] - index).astype("timedelta64[us]") / np.timedelta64(1, "D")
            return cell.store.vocabulary[codes[first:]], delays
        frame = as_event_frame(cell, where)
        if len(frame) and is_number(frame["time"]) != numeric:
            raise ValueError(
                f"{where}: event times and the index time ({self.index_time!r}) must both be numbers or both "
                "datetimes."
            )
        days = to_days(frame["time"], where)
        if not np.isfinite(days).all():
            raise ValueError(f"{where}: event times must be finite.")
        after = days > start
        return frame["code"].to_numpy()[after], days[after] - start

    def _parents(self, cells):
        """The ``{code: parent codes}`` of ``ontology`` (None without one)."""
        if self.ontology is None or isinstance(self.ontology, dict):
            return self.ontology
        views = [cell for cell in cells if isinstance(cell, EventView)]
        if not views or views[0].store.parents is None:
            source = "has no parent_codes" if views else "holds no MEDS event views (load_meds)"
            raise ValueError(
                f"ontology='metadata' reads the parent_codes of a MEDS dataset's metadata/codes.parquet through "
                f"the event views of skfusion.datasets.load_meds; column {self.events!r} {source}. Give the "
                "ontology as a {code: parent codes} dict, or ontology=None."
            )
        return views[0].store.parents

    def _targets(self, futures, censoring):
        """Choose the tasks and pieces; return the ``(n, n_tasks)`` times and event indicators."""
        counts = pd.Series([code for f in futures for code in f], dtype=object).value_counts()
        if counts.empty:
            raise ValueError("no event code occurs after the index time in any training row: there is no task.")
        order = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: self.n_tasks]
        self.tasks_ = np.array([code for code, _ in order], dtype=object)
        self.task_event_counts_ = np.array([count for _, count in order], dtype=np.int64)
        time = np.repeat(censoring[:, None], len(self.tasks_), axis=1)
        event = np.zeros(time.shape, dtype=bool)
        for i, first in enumerate(futures):
            for k, code in enumerate(self.tasks_):
                if code in first:
                    time[i, k], event[i, k] = first[code], True
        inner = np.quantile(time[event], np.linspace(0, 1, self.n_pieces + 1)[1:-1])
        self.piece_boundaries_ = np.unique(np.concatenate([[0.0], inner[inner > 0], [np.inf]]))
        self.n_pieces_ = len(self.piece_boundaries_) - 1
        return time, event

    # ------------------------------------------------------------------ images

    def _check_preprocessing(self):
        """Check the preprocessing parameters; set ``window_`` and ``volume_size_`` (None for a slice backbone)."""
        three_d = _reads_volumes(self.backbone)
        window = resolve_volume_window(self.window)
        if window == MINMAX and not three_d:
            raise ValueError(
                "window='minmax' (each volume scaled by its own minimum and maximum, as Huo et al.) is for a 3-D "
                f"backbone (one of {VOLUME_NETWORKS} or a module whose first convolution is a Conv3d); the 2-D "
                "slice backbone reads an HU window: 'pe', 'mace' or (low, high)."
            )
        self.window_ = window
        self.volume_size_ = tuple(self.volume_size) if three_d else None
        # The slice parameters mean what they mean in CTVolumeEmbedder: same checks.
        check_size(self.image_size, "image_size")
        check_slices(self.slices)
        CTVolumeEmbedder._check_normalisation(self)

    def _geometry(self):
        if self.volume_size_ is None:
            return SliceGeometry(self.window_, as_size(self.image_size))
        return VolumeGeometry(self.window_, self.volume_size_)

    def _preprocess(self, cells, wheres):
        """Windowed, resized ``(Z_i, H, W)`` float32 slices of every cell, all of one slice size."""
        geometry = self._geometry()
        cache = None if self.cache_dir is None else EmbeddingCache(self.cache_dir, ndim=3)
        fingerprint = self._cache_fingerprint() if cache is not None else None
        volumes = []
        for cell, where in zip(cells, wheres):
            key = None if cache is None else cache_key(content_hash(cell, series_files), fingerprint)
            volume = None if cache is None else cache.get(key)
            if volume is None:
                volume = self._read_volume(cell, where, geometry)
                if cache is not None:
                    cache.put(key, volume)
            expected = getattr(self, "slice_shape_", volumes[0].shape[1:] if volumes else volume.shape[1:])
            if tuple(volume.shape[1:]) != tuple(expected):
                raise ValueError(
                    f"{where}: its slices are {tuple(volume.shape[1:])} after preprocessing but the encoder reads "
                    f"{tuple(expected)} slices; set image_size=(height, width) to resize every volume."
                )
            volumes.append(volume)
        return volumes

    def _read_volume(self, cell, where, geometry):
        """The ``(Z, H, W)`` windowed slices, or ``(D, H, W)`` windowed volume resampled for a 3-D backbone."""
        if isinstance(cell, np.ndarray) and cell.ndim == 2:
            cell = cell[None]
        volume = read_ct_volume(cell, where)
        indices = select_slices(volume, self.slices, where)
        volume = volume if len(indices) == len(volume) else volume[indices]
        with torch.inference_mode():
            out = geometry(torch.from_numpy(np.ascontiguousarray(volume))[None])
        return out.reshape(out.shape[-3:]).numpy()

    def _cache_fingerprint(self):
        slices = self.slices
        if callable(slices):
            slices = "callable " + callable_fingerprint(slices, "slices")
        kind = "slices" if self.volume_size_ is None else "volumes"
        params = {
            "encoder": f"{type(self).__name__} {kind} v{_PREPROCESSING_VERSION}",
            "window": self.window_,
            "slices": slices,
            "image_size": as_size(self.image_size),
        }
        if self.volume_size_ is not None:
            params["volume_size"] = self.volume_size_
        return fingerprint_of(params)

    @staticmethod
    def _padded(volumes):
        """Stack ``(Z_i, H, W)`` volumes into zero-padded ``(n, Z_max, H, W)`` and a ``(n, Z_max)`` mask."""
        depth = max(len(v) for v in volumes)
        x = np.zeros((len(volumes), depth, *volumes[0].shape[1:]), dtype=np.float32)
        mask = np.zeros((len(volumes), depth), dtype=bool)
        for i, v in enumerate(volumes):
            x[i, : len(v)], mask[i, : len(v)] = v, True
        return torch.from_numpy(x), torch.from_numpy(mask)

    # ------------------------------------------------------------------ training

    def _build_encoder(self):
        """The initial encoder: the (copied) backbone with its weights, and a fresh attention pooling (2-D)."""
        if self.volume_size_ is not None:
            network = self._volume_backbone()
            return WholeVolumeEncoder(network, check_volume_input(network, self.volume_size_, "backbone"))
        state = None if self.weights is None else load_state_dict(self.weights)
        whole = state is not None and any(key.startswith("pool.") for key in state)
        backbone = default_slice_backbone() if self.backbone is None else self.backbone
        backbone = load_backbone(backbone, None if whole else self.weights)
        with torch.no_grad():
            out_dim = int(backbone(torch.zeros(1, 3, *self.slice_shape_)).shape[1])
        encoder = VolumeEncoder(backbone, out_dim, self.mean, self.std, self.attention_dim)
        if whole:
            missing, unexpected = encoder.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"weights {str(self.weights)!r} do not match the encoder: missing keys {missing[:5]}, "
                    f"unexpected keys {unexpected[:5]}."
                )
        return encoder

    def _volume_backbone(self):
        """The 3-D network: built by name or copied, with ``weights`` (a checkpoint of Huo et al. for theirs)."""
        if not isinstance(self.backbone, str):
            return load_backbone(self.backbone, self.weights)
        if self.weights is not None and self.backbone in _RELEASED:
            # Reads their checkpoints (head dropped, prefixes removed) and plain state dicts of the network alike.
            return load_tte_encoder(self.weights, _RELEASED[self.backbone])
        return load_backbone(volume_network(self.backbone), self.weights)

    def _log_rates(self, time, event):
        """Each task's constant-hazard maximum-likelihood rate, events over time at risk (log)."""
        return np.log(event.sum(axis=0) / time.sum(axis=0))

    def _train(self, volumes, time, event):
        device = resolve_device(self.device)
        x, mask = self._padded(volumes)
        blocks = {self.image: {"x": x, "present": torch.ones(len(x), dtype=torch.bool), "mask": mask}}
        targets = torch.from_numpy(np.stack([time, event.astype(np.float64)], axis=1).astype(np.float32))
        dataset = ModalityDataset(blocks, targets, device)
        seed = draw_seed(self.random_state)
        train, selection = (
            held_out_split(self, dataset, seed, max(MIN_VALIDATION_ROWS, self.batch_size))
            if self.max_epochs
            else (dataset, None)
        )
        with seeded(seed, device):
            encoder = self._build_encoder()
            head = PiecewiseExponentialHead(
                encoder.out_dim, self.n_pieces_, len(self.tasks_), self.rank, self._log_rates(time, event)
            )
            self.net_ = make_net(
                TimeToEventNetwork(self.image, encoder, head),
                PiecewiseExponentialLoss(self.piece_boundaries_),
                device=device,
                batch_size=self.batch_size,
                seed=seed,
                lr=self.lr,
                weight_decay=self.weight_decay,
                max_epochs=self.max_epochs,
                iterator=BalancedBatches,
                callbacks=[] if selection is None else [("epoch_selection", selection)],
                verbose=self.verbose,
            )
            self.net_.fit(train, None)
        self.net_.module_.eval()
        record_epochs(self, self.net_, selection)
        self.encoder_ = self.net_.module_.encoder
        if self.volume_size_ is None:
            self.backbone_ = self.encoder_.backbone
            self.image_encoder_ = torch.nn.Sequential(self._geometry(), self.encoder_).to(self.net_.device)
        else:
            self.backbone_ = self.encoder_.network
            self.image_encoder_ = torch.nn.Sequential(self._geometry(), self.backbone_).to(self.net_.device)
        self.embedding_dim_ = self.encoder_.out_dim

    # ------------------------------------------------------------------ transform

    def _encode_cells(self, cells):
        volumes = self._preprocess(cells, [f"non-missing cell {i} of column {self.image!r}" for i in range(len(cells))])
        device = self.net_.device
        parts = []
        with torch.inference_mode():
            for start in range(0, len(volumes), self.batch_size):
                x, mask = self._padded(volumes[start : start + self.batch_size])
                parts.append(self.encoder_(x.to(device), mask.to(device)).float().cpu().numpy())
        return np.concatenate(parts)

    def _embedding_dim(self):
        return self.embedding_dim_

    def save_pretrained(self, path):
        """Write the fitted encoder to a safetensors file.

        2-D: the backbone and the attention pooling. 3-D: the network alone, under its own
        keys (MONAI's for a named network), so that any code building that network loads
        it. The file loads back with ``TimeToEventPretraining(weights=path, max_epochs=0)``
        (same ``backbone``, and ``attention_dim`` for 2-D); its metadata records the
        preprocessing (window, volume size, image size, normalisation) and the tasks.

        Parameters
        ----------
        path : str or os.PathLike
        """
        from safetensors.torch import save_file

        check_is_fitted(self)
        # A 3-D network is saved alone, under its own keys: the state dict MONAI's network loads.
        module = self.encoder_ if self.volume_size_ is None else self.backbone_
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        metadata = {
            "window": json.dumps(self.window_),
            "volume_size": json.dumps(self.volume_size_),
            "image_size": json.dumps(as_size(self.image_size)),
            "mean": json.dumps(self.mean and list(self.mean)),
            "std": json.dumps(self.std and list(self.std)),
            "slice_shape": json.dumps(self.slice_shape_),
            "tasks": json.dumps([str(t) for t in self.tasks_]),
        }
        save_file(state, str(path), metadata=metadata)


def _reads_volumes(backbone):
    """Whether ``backbone`` is a 3-D encoder: a name of VOLUME_NETWORKS, or a module whose first convolution is 3-D."""
    if isinstance(backbone, str):
        return backbone in VOLUME_NETWORKS
    return backbone is not None and reads_volumes(backbone)


class _Ancestry:
    """The ancestors of codes in an ontology (``{code: parent codes}``, None for none), found once per code.

    Parameters
    ----------
    parents : dict or None
    """

    def __init__(self, parents):
        self.parents = parents
        self.ancestors = {}

    def of(self, code):
        """The ancestors of ``code`` (parents, their parents, ...; cycles cut), sorted."""
        if code not in self.ancestors:
            seen, stack = set(), list(self.parents.get(code, ()))
            while stack:
                parent = stack.pop()
                if parent != code and parent not in seen:
                    seen.add(parent)
                    stack.extend(self.parents.get(parent, ()))
            self.ancestors[code] = tuple(sorted(seen))
        return self.ancestors[code]

    def expand(self, first):
        """``first`` (``{code: first delay}``) with each ancestor at its earliest descendant's delay."""
        if self.parents is None:
            return first
        out = dict(first)
        for code, delay in first.items():
            for ancestor in self.of(code):
                if delay < out.get(ancestor, np.inf):
                    out[ancestor] = delay
        return out
