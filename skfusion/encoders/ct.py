"""CT volumes to embeddings: the windowing, slice selection and z-averaging of Zhang et al. (2026)."""

from numbers import Integral, Real

import numpy as np
import torch

from .._compat import Interval, StrOptions
from .._images import IMAGENET_MEAN, IMAGENET_STD, resize, resize_volume
from ._cache import callable_fingerprint
from .._cardiac import HEART_SLICES_VERSION
from ._descriptors import CTSliceDescriptor
from ._embedder import SliceEmbedder, as_size, check_size
from .._volumes import apply_window, read_ct_volume, resolve_window, select_slices
from ..modules.volume_input import VolumeGeometry, _windows_itself


class CTVolumeEmbedder(SliceEmbedder):
    """Embed CT volumes slice by slice with a 2-D backbone, then average over z.

    Each cell of the raw column ``image`` is one CT volume: a DICOM series folder, a DICOM
    file (a single slice or an enhanced multi-frame CT), a NIfTI file, or an ndarray
    ``(z, y, x)`` already in Hounsfield units (HU). The volume is read in HU (DICOM slices
    ordered along the slice normal, RescaleSlope/RescaleIntercept applied; NIfTI
    reoriented to the axial DICOM layout), the axial slices named by ``slices`` are kept,
    each is windowed (clipped to ``window`` and scaled to [0, 1]) and encoded by
    ``backbone`` in batches, and ``pool="mean"`` averages the slice embeddings into one
    vector per volume, as in Zhang et al. (2026) [1]_ (section 2.1). ``pool=None`` keeps the
    per-slice embeddings as tokens for the attention models. A backbone that windows the
    volume itself (a 3-D encoder pretrained by
    :class:`~skfusion.ssl.TimeToEventPretraining`, its ``image_encoder_``) embeds each
    volume whole, in one forward pass: see ``backbone``.

    With ``backbone=None`` (the default) each slice is described by a deterministic,
    training-free descriptor instead of a neural network: the fraction of voxels and their
    mean HU in eight clinically meaningful HU bands (air, lung, low density, fat, fluid,
    soft tissue, contrast-enhanced blood, bone), the HU mean and spread, and, on the
    windowed slice, an intensity histogram, percentiles, gradient-magnitude (edge)
    statistics and a 4 x 4 grid of mean intensity and edge strength: 77 features per slice
    (listed in ``skfusion.encoders._descriptors``). It is a baseline that carries real
    signal about tissue composition, not a foundation model.

    Parameters
    ----------
    image : str, default="ct"
        The raw column holding the volumes. Missing cells (None/NaN) give NaN rows (or
        None tokens).
    output : str, default=None
        Name of the output block (``"{output}__{i}"`` columns, or the ``"{output}"`` token
        column); None uses ``image``.
    window : {"pe", "mace"} or tuple of (float, float), default="pe"
        HU window: ``"pe"`` is [-1350, 150] and ``"mace"`` is [-125, 225] (the windows of
        Zhang et al. (2026) for pulmonary embolism and cardiovascular events); a ``(low, high)`` pair
        sets another. Values are clipped to the window and scaled to [0, 1].
    slices : None, tuple of (int, int), float, "heart" or callable, default=None
        Which axial slices to encode (``z`` runs from feet to head): None keeps all;
        ``(start, stop)`` keeps ``volume[start:stop]``; a float in (0, 1] keeps that
        fraction of the slices around the centre; ``"heart"`` keeps the contiguous range
        of slices that show the heart, found by :func:`heart_slices` (a documented
        heuristic, not the unpublished method of [1]_, which keeps the slices with
        cardiac structures; volumes without two lung fields keep every slice, with a
        warning); a callable receives the ``(z, y, x)`` HU volume and returns slice
        indices or a boolean mask over ``z``.
    backbone : None, torch.nn.Module or str, default=None
        The 2-D slice encoder. A module receives ``(B, 3, H, W)`` float batches (the
        windowed slice replicated to 3 channels, normalised by ``mean``/``std``) and must
        return ``(B, d)``; it is copied at fit, never modified. One whose first convolution
        reads another number of channels is refused at fit (a ValueError). A string names a
        torchvision architecture, built without weights, its classification layer (last
        ``nn.Linear``) replaced by the identity: ``"resnet18"`` to ``"resnet152"`` are built
        by skfusion with torchvision's layout (:func:`~skfusion.encoders.load_backbone`), any
        other name needs torchvision. None uses
        the training-free descriptor above.

        A module that windows HU volumes itself embeds each volume whole instead: a
        ``torch.nn.Sequential`` whose first layer is a
        :class:`~skfusion.modules.volume_input.VolumeGeometry` (a 3-D encoder) or a
        ``SliceGeometry`` (slices pooled inside the network), as the ``image_encoder_`` of
        :class:`~skfusion.ssl.TimeToEventPretraining` is. Such a backbone receives the kept slices of one volume, in HU, as a ``(1, Z, H,
        W)`` tensor (resampled beforehand to the ``VolumeGeometry``'s ``volume_size``, so that
        volumes batch together) and returns ``(1, d)``: one token per volume, nothing pooled
        over ``z`` by this class. ``window``, ``image_size``, ``mean`` and ``std`` are then
        unused (the module's own geometry windows and resizes); ``slices`` still applies.
    weights : None, str or os.PathLike, default=None
        Local state-dict file loaded into the backbone (safetensors, or ``torch.save``
        read with ``weights_only=True``); keys must match. Nothing is ever downloaded.
    image_size : None, int or tuple of (int, int), default=None
        The size of the slice the backbone reads: each slice is resized (bilinear,
        antialiased) so that its shorter side is the int, or to the ``(height, width)``
        pair; None keeps the native size.
    mean : tuple of float or None, default=(0.485, 0.456, 0.406)
        Per-channel means of the normalisation ``(x - mean) / std`` of the backbone input
        (1 or 3 values; ImageNet's by default, as MedImageInsight and torchvision models
        expect); ``mean`` and ``std`` both None to skip it.
    std : tuple of float or None, default=(0.229, 0.224, 0.225)
        Per-channel standard deviations of that normalisation (ImageNet's by default).
        Neither is used by the descriptor.
    pool : {"mean"} or None, default="mean"
        ``"mean"`` averages the slice embeddings (the z-average of Zhang et al., 2026) into
        ``"{output}__{i}"`` columns; None returns one object column ``"{output}"``
        holding a ``(n_slices, d)`` float32 array per row.
    batch_size : int, default=32
        Slices per forward pass; batches span volume boundaries. With a backbone that
        embeds whole volumes: volumes per forward pass (lower it for large volumes).
    device : str, default="auto"
        ``"auto"`` uses CUDA when available (with autocast mixed precision, bfloat16 where
        supported, for neural backbones) and the CPU otherwise.
    cache_dir : None, str or os.PathLike, default=None
        Folder of a resumable, content-addressed cache: one entry per volume, keyed by the
        hash of the volume's bytes (its files, or its array) and of every parameter that
        changes its slice embeddings (window, slices, image_size, mean, std, the backbone's
        class, structure and weights, mixed precision). Entries hold the per-slice
        embeddings, so ``pool`` does not enter the key and both settings share them. A
        killed run resumes without recomputing finished volumes, and the temporary files it
        left are removed once older than an hour; an entry that is truncated, corrupt, not a
        2-D float array, or stored under another key is ignored and recomputed. A path that
        is a file is a ValueError at fit. A callable ``slices`` is identified by its name,
        code, defaults and closure (globals it reads are not: change ``cache_dir`` after
        editing those); one whose closure or defaults cannot be pickled is refused with a
        ValueError at fit.
    n_jobs : int, default=None
        Number of joblib jobs that volumes are shared out to: the non-missing cells are cut
        into one contiguous chunk per job, and each job receives the fitted encoder (its
        backbone included) once with its chunk. None means 1 unless in a
        :func:`joblib.parallel_backend` context, whose setting it then follows: inside
        ``with joblib.parallel_backend("dask"):`` the chunks run on the workers of the active
        ``distributed.Client`` (``n_jobs=None`` or -1: one chunk per worker thread). -1 uses
        all processors (or workers). The row order, the missing rows and a bad cell's
        ValueError are those of the single-process run, and the values too up to float32
        rounding: slices are encoded ``batch_size`` at a time, a chunk boundary (or a volume
        found in the cache) groups them into other batches, and CPU kernels round a float32
        output by the batch it is computed in (differences of about 1e-7 relative).
        Workers encode on ``device_`` and share ``cache_dir``, which must then be a folder
        every worker sees (entries are written atomically, so workers never read one
        another's half-written entries, and an interrupted job resumes from what any worker
        finished).
    verbose : int, default=0
        Show a progress bar over volumes (tqdm, if installed) when positive; with
        several jobs, joblib's progress messages over chunks instead.

    Attributes
    ----------
    backbone_ : torch.nn.Module
        The module that encodes slices, or whole volumes (a copy of ``backbone``, or the
        descriptor), in evaluation mode on ``device_``.
    device_ : torch.device
        Where slices are encoded.
    amp_dtype_ : torch.dtype or None
        Autocast dtype used for the backbone (None: full precision).
    window_ : tuple of (float, float)
        The HU window.
    embedding_dim_ : int
        Size ``d`` of a slice embedding.
    fingerprint_ : str or None
        Hash of the output-changing parameters (part of every cache key); None without
        ``cache_dir``.
    n_features_in_ : int
        Number of columns of ``X`` at fit.
    feature_names_in_ : ndarray of str
        Column names of ``X`` at fit.

    See Also
    --------
    ImageEmbedder : the same machinery for 2-D images (chest X-rays).
    heart_slices : the cardiac slice selector behind ``slices="heart"``.

    Notes
    -----
    **Reading.** A DICOM folder must hold one series of one patient: every file is read
    (hidden files and ``DICOMDIR`` excepted) and a file that is not a DICOM image, slices
    with different SeriesInstanceUID or PatientID values, slices of different size or
    orientation, duplicated positions, or gaps deviating from the median by more than 5%
    raise a ValueError naming the file or folder. Frames are ordered by increasing
    ImagePositionPatient projected on the slice normal (row x column direction cosines),
    i.e. from feet to head for standard axial orientation; InstanceNumber is the fallback
    when positions are missing, and repeated InstanceNumbers are then refused. NIfTI volumes
    are reoriented to LPS axis codes and transposed to ``(z, y, x)`` so that they match that
    layout; their values are taken as HU after the NIfTI scaling.

    **MedImageInsight.** Zhang et al. (2026) encode each slice with MedImageInsight (MII), whose
    image tower is a DaViT network; skfusion does not re-implement it and never
    substitutes another network for it. To reproduce the paper, build the MII image
    tower from your own local copy (the community release ships
    ``vision_model/medimageinsigt-v1.0.0.pt``, a safetensors file, and the UniCL code that
    defines the model), wrap it in an ``nn.Module`` whose ``forward`` takes the
    ``(B, 3, 480, 480)`` ImageNet-normalised batch and returns MII's 1024-d
    ``encode_image`` embedding (projected and L2-normalised), and pass it as
    ``backbone=mii_module, image_size=(480, 480)`` with ``window="pe"`` or ``"mace"``
    and ``pool="mean"``. MII resizes bicubically; skfusion resizes bilinearly, so for an
    exact match leave ``image_size=None`` and resize inside your module.

    Fitting reads the first volume once when a backbone is given, to learn ``d``.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.1.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skfusion.encoders.ct import CTVolumeEmbedder
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"ct": [rng.normal(40, 30, (4, 32, 32)) for _ in range(3)],
    ...                   "age": [61, 70, 55]})
    >>> Xt = CTVolumeEmbedder(window="mace").fit_transform(X)
    >>> Xt.shape
    (3, 78)
    >>> list(Xt.columns[:3])
    ['age', 'ct__0', 'ct__1']
    >>> CTVolumeEmbedder(pool=None, slices=(1, 3)).fit_transform(X)["ct"].iloc[0].shape
    (2, 77)
    """

    _parameter_constraints = {
        **SliceEmbedder._parameter_constraints,
        "window": [StrOptions({"pe", "mace"}), tuple, list],
        "slices": [None, tuple, Interval(Real, 0, 1, closed="right"), StrOptions({"heart"}), callable],
        "image_size": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "pool": [StrOptions({"mean"}), None],
    }

    def __init__(
        self,
        *,
        image="ct",
        output=None,
        window="pe",
        slices=None,
        backbone=None,
        weights=None,
        image_size=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pool="mean",
        batch_size=32,
        device="auto",
        cache_dir=None,
        n_jobs=None,
        verbose=0,
    ):
        self.image = image
        self.output = output
        self.window = window
        self.slices = slices
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.pool = pool
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _check_own_params(self):
        self.window_ = resolve_window(self.window)
        check_size(self.image_size, "image_size")
        check_slices(self.slices)

    def _reads_whole_volumes(self):
        """Whether ``backbone`` windows HU volumes itself, and so embeds each volume whole."""
        return isinstance(self.backbone, torch.nn.Module) and _windows_itself(self.backbone)

    def _read_volume(self, cell, where):
        """The ``(z, y, x)`` HU volume of a cell and the sorted indices of the slices ``slices`` keeps."""
        volume = read_ct_volume(cell, where)
        return volume, select_slices(volume, self.slices, where)

    def _read_cell(self, cell, where):
        volume, indices = self._read_volume(cell, where)
        kept = volume if len(indices) == len(volume) else volume[indices]
        if not self._reads_whole_volumes():
            return np.ascontiguousarray(kept[:, None])
        return self._whole_volume_input(torch.from_numpy(np.ascontiguousarray(kept))[None]).numpy()

    def _whole_volume_input(self, x):
        """One volume's kept HU slices ``(1, k, y, x)`` as a whole-volume backbone reads them.

        Resampled here to its :class:`~skfusion.modules.volume_input.VolumeGeometry`'s
        ``volume_size`` (the geometry then skips it), so that a batch holds volumes of the
        network's size; a ``SliceGeometry`` reads the slices as they are.
        """
        geometry = self.backbone_[0]
        return resize_volume(x, geometry.volume_size) if isinstance(geometry, VolumeGeometry) else x

    def _prepare(self, x):
        # A backbone that windows HU volumes itself reads them as they are.
        return x if self._reads_whole_volumes() else super()._prepare(x)

    def _geometry(self, x):
        if self.backbone is not None:
            x = apply_window(x, *self.window_)
        return resize(x, as_size(self.image_size))

    def _descriptor(self):
        return CTSliceDescriptor(self.window_)

    def _output_params(self):
        slices = self.slices
        if isinstance(slices, str):
            slices = f"heart v{HEART_SLICES_VERSION}"
        elif callable(slices):
            slices = "callable " + callable_fingerprint(slices, "slices")
        params = {"window": self.window_, "slices": slices, "image_size": as_size(self.image_size)}
        if self._reads_whole_volumes():
            # Its window and size are plain attributes, absent from the module's fingerprint.
            geometry = self.backbone[0]
            params["geometry"] = (type(geometry).__name__, sorted(
                (k, v) for k, v in vars(geometry).items() if not k.startswith("_") and k != "training"
            ))
        return params

    def _returns_tokens(self):
        return self.pool is None

    def _encode_cells(self, cells):
        if self.pool is None:
            return self._extract(cells, pool=False)
        return np.stack(self._extract(cells, pool=True))


def check_slices(slices):
    """A ValueError naming ``slices`` for a tuple that is not ``(start, stop)`` with int or None entries."""
    if isinstance(slices, tuple) and not (
        len(slices) == 2 and all(v is None or isinstance(v, Integral) for v in slices)
    ):
        raise ValueError(f"slices={slices!r}: a tuple must be (start, stop) with int or None entries.")
