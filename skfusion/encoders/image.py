"""2-D images (chest X-rays) to embeddings, with MedFuse's preprocessing by default."""

from numbers import Integral

import numpy as np

from .._compat import Interval
from .._images import IMAGENET_MEAN, IMAGENET_STD, center_crop, resize
from ._descriptors import ImageDescriptor
from ._embedder import SliceEmbedder, as_size, check_size
from .._volumes import read_image


class ImageEmbedder(SliceEmbedder):
    """Embed 2-D images (chest X-rays) with a backbone or a training-free descriptor.

    Each cell of the raw column ``image`` is one image: a PNG/JPEG (anything Pillow
    reads) or DICOM file (a ``.dcm``/``.dicom`` suffix or the ``DICM`` preamble), or an
    ndarray ``(H, W)`` / ``(H, W, C)`` with ``C`` 1 or 3 (numpy's layout, the one the fusion
    estimators' image columns use; integers scaled by their dtype's maximum, floats already
    in [0, 1]; a channels-first ``(C, H, W)`` array is refused). Images are scaled to [0, 1]
    (a grayscale DICOM goes through its modality and VOI LUTs, is inverted when MONOCHROME1
    and min-max scaled), resized so that the shorter side is ``resize``,
    centre-cropped to ``image_size``, replicated to 3 channels, normalised with ImageNet's
    mean and standard deviation, and encoded by ``backbone`` in batches: MedFuse's
    preprocessing [1]_ (resize 256, centre crop 224) by default. The extraction loop, the
    device handling and the resumable cache are those of :class:`CTVolumeEmbedder`.

    With ``backbone=None`` (the default) each image is described by a deterministic,
    training-free descriptor instead of a neural network: a 16-bin intensity histogram,
    mean, standard deviation and percentiles, gradient-magnitude (edge) statistics, and the
    mean intensity and edge strength on a fixed 4 x 4 grid, computed on the resized and
    cropped grayscale image: 59 features (listed in ``skfusion.encoders._descriptors``). It
    is a baseline, not a foundation model.

    Parameters
    ----------
    image : str, default="img"
        The raw column holding the images. Missing cells (None/NaN) give NaN rows.
    output : str, default=None
        Prefix of the output columns ``"{output}__{i}"``; None uses ``image``.
    backbone : None, torch.nn.Module or str, default=None
        The image encoder. A module receives ``(B, 3, H, W)`` float batches (grey images
        replicated to 3 channels) and must return ``(B, d)``; it is copied at fit, never
        modified. One whose first convolution reads another number of channels is refused
        at fit (a ValueError). A string names a torchvision
        architecture, built without weights, its classification layer (last ``nn.Linear``)
        replaced by the identity (MedFuse uses a ResNet-34 this way): ``"resnet18"`` to
        ``"resnet152"`` are built by skfusion with torchvision's layout
        (:func:`~skfusion.encoders.load_backbone`), any other name needs torchvision. None uses the training-free descriptor above. For
        MedImageInsight, see the notes of :class:`CTVolumeEmbedder`; use
        ``resize=(480, 480), image_size=None`` with it.
    weights : None, str or os.PathLike, default=None
        Local state-dict file loaded into the backbone (safetensors, or ``torch.save``
        read with ``weights_only=True``); keys must match. Nothing is ever downloaded.
    resize : None, int or tuple of (int, int), default=256
        An int sets the shorter side (aspect kept), a pair sets (height, width)
        (bilinear, antialiased); None keeps the native size.
    image_size : None, int or tuple of (int, int), default=224
        The side (an int: a square) or ``(height, width)`` of the image the backbone reads,
        centre-cropped after resizing, as the fusion estimators' ``image_size``; None skips
        the crop. Without a crop (or a resize to a pair), images of different sizes go
        through the backbone in separate batches.
    mean : tuple of float or None, default=(0.485, 0.456, 0.406)
        Per-channel means of the normalisation ``(x - mean) / std`` of the backbone input
        (1 or 3 values; ImageNet's by default); ``mean`` and ``std`` both None to skip it.
    std : tuple of float or None, default=(0.229, 0.224, 0.225)
        Per-channel standard deviations of that normalisation (ImageNet's by default).
        Neither is used by the descriptor.
    batch_size : int, default=32
        Images per forward pass.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available (with autocast mixed precision, bfloat16 where
        supported, for neural backbones) and the CPU otherwise.
    cache_dir : None, str or os.PathLike, default=None
        Folder of a resumable, content-addressed cache with one entry per image, keyed by
        the hash of the image's bytes and of every parameter that changes its embedding
        (see :class:`CTVolumeEmbedder`).
    n_jobs : int, default=None
        Number of joblib jobs that images are shared out to, in contiguous chunks of the
        non-missing cells (``with joblib.parallel_backend("dask"):`` runs them on a Dask
        cluster); the output is that of the single-process run, its values up to float32
        rounding (a chunk boundary changes which images share a batch). See
        :class:`CTVolumeEmbedder`.
    verbose : int, default=0
        Show a progress bar over images (tqdm, if installed) when positive; with
        several jobs, joblib's progress messages over chunks instead.

    Attributes
    ----------
    backbone_ : torch.nn.Module
        The module that encodes images (a copy of ``backbone``, or the descriptor), in
        evaluation mode on ``device_``.
    device_ : torch.device
        Where images are encoded.
    amp_dtype_ : torch.dtype or None
        Autocast dtype used for the backbone (None: full precision).
    embedding_dim_ : int
        Size ``d`` of an embedding.
    fingerprint_ : str or None
        Hash of the output-changing parameters (part of every cache key); None without
        ``cache_dir``.
    n_features_in_ : int
        Number of columns of ``X`` at fit.
    feature_names_in_ : ndarray of str
        Column names of ``X`` at fit.

    See Also
    --------
    CTVolumeEmbedder : CT volumes, slice by slice.

    References
    ----------
    .. [1] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: Multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare, PMLR 182 (``nyuad-cai/MedFuse``, image transforms).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skfusion.encoders.image import ImageEmbedder
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"img": [rng.random((300, 260)) for _ in range(2)] + [None]})
    >>> Xt = ImageEmbedder().fit_transform(X)
    >>> Xt.shape
    (3, 59)
    >>> bool(Xt.iloc[2].isna().all())
    True
    """

    _parameter_constraints = {
        **SliceEmbedder._parameter_constraints,
        "resize": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "image_size": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
    }

    def __init__(
        self,
        *,
        image="img",
        output=None,
        backbone=None,
        weights=None,
        resize=256,
        image_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        batch_size=32,
        device="auto",
        cache_dir=None,
        n_jobs=None,
        verbose=0,
    ):
        self.image = image
        self.output = output
        self.backbone = backbone
        self.weights = weights
        self.resize = resize
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _check_own_params(self):
        check_size(self.resize, "resize")
        check_size(self.image_size, "image_size")

    def _read_cell(self, cell, where):
        return read_image(cell, where)[None]

    def _geometry(self, x):
        return center_crop(resize(x, as_size(self.resize)), as_size(self.image_size))

    def _descriptor(self):
        return ImageDescriptor()

    def _output_params(self):
        return {"resize": as_size(self.resize), "image_size": as_size(self.image_size)}

    def _encode_cells(self, cells):
        return np.stack(self._extract(cells, pool=True))
