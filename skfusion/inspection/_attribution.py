"""Gradient attributions of a fitted fusion model's score to one modality's input.

Both methods differentiate the score a fitted estimator's ``net_.module_`` computes for each
row: the risk (log relative hazard) of a Cox survival model, or a class (label) logit of a
classifier. :func:`gradient_saliency` is the gradient of the score with respect to the
input (Simonyan, Vedaldi and Zisserman, "Deep inside convolutional networks: visualising
image classification models and saliency maps", ICLR workshop 2014);
:func:`integrated_gradients` integrates it along the straight path from a baseline
(Sundararajan, Taly and Yan, "Axiomatic attribution for deep networks", ICML 2017), so that
the attributions of a row sum to the change of its score from the baseline (completeness).
The inputs are those the network reads: the tokens of a token column (per-slice CT
embeddings, per-step EHR states), the pixels of a raw image column when the image encoder is
in the network (``image_encoder=``), the voxels of a CT volume column whose 3-D encoder is in
the network, or a numeric block. An image's attributions come back in its cells' ``(H, W, C)``
layout, per unit of the image as the network reads it (an array scaled to [0, 1]: integer
cells divided by their dtype's maximum). A volume's come back per Hounsfield unit of the
volume as its cell holds it: an array, or a file read at its own shape and resampled to
``volume_size`` inside the differentiated graph, so that each of the file's voxels gets the
gradient that the resampling carries back to it.

A fitted Pipeline of skfusion encoders ending in a fusion estimator is explained too. Its
model's modalities are explained at the model's input, as above. The volume column of a
:class:`~skfusion.encoders.CTVolumeEmbedder` step with a torch backbone is explained down to
the voxels, in Hounsfield units (``_volume.py``): the gradient goes through the model, the
embedder's pooling over z (or its slice tokens), its frozen backbone and its own per-slice
preprocessing (normalisation, resize, window), one volume at a time; each row's map has its
volume's ``(z, y, x)`` shape.
"""

import contextlib
import functools
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.pipeline import Pipeline

from .._data import ModalityDataset
from .._images import VolumeFiles, resize_volume
from ..modules.tte import SliceGeometry
from ..modules.volume_input import VolumeGeometry, hold_minmax_scaling
from ._score import check_model, modality_names, score, score_columns
from ._volume import VolumeScore, object_array, path_start, volume_step


def _check_estimator(estimator, modality, target):
    check_model(estimator, target)
    names = modality_names(estimator)
    if modality not in names:
        raise ValueError(f"modality={modality!r} is not a modality of the fitted model; its modalities are {names}.")


def _inputs(estimator, X, modality, target):
    """``(blocks, columns, x, as_block)`` per batch of ``X``, in order: its blocks on the model's device, each row's
    score column, the input ``x`` that is attributed, and the map from a point of ``x``'s path to the modality's
    block input.

    ``x`` is the block's input (``as_block`` the identity), ``batch_size`` rows at a time. A
    column of volume files goes row by row instead: ``x`` is the row's volume at its file's
    shape, ``(1, z, y, x)`` in HU, read as :class:`~skfusion._images.VolumeFiles` reads it
    before resampling, and ``as_block`` resamples it to ``volume_size`` with the same
    function, inside the graph, so that the gradient reaches the file's voxels.
    """
    blocks, n_samples = estimator._blocks(X, reset=False)
    dataset = ModalityDataset(blocks, device=estimator.net_.device)
    if not bool(dataset.blocks[modality]["present"].all()):
        absent = np.flatnonzero(~dataset.blocks[modality]["present"].cpu().numpy())
        raise ValueError(
            f"modality {modality!r} is missing in rows {absent[:8].tolist()}: it has no input to attribute."
        )
    columns = score_columns(estimator, dataset, target)
    positions = torch.arange(n_samples, device=dataset.device)
    files = dataset.files.get(modality)
    if not isinstance(files, VolumeFiles):
        for chunk in positions.split(estimator.net_.batch_size):
            blocks = dataset.batch(chunk)[0]
            yield blocks, columns[chunk.cpu()], blocks[modality]["x"], _identity
        return
    as_block = functools.partial(resize_volume, size=files.size)
    for chunk in positions.split(1):
        rows = chunk.cpu()
        volume = torch.from_numpy(files.raw(int(rows[0])))[None].to(dataset.device)
        images = {name: column.read(rows) for name, column in dataset.files.items() if name != modality}
        blocks = dataset.batch(chunk, images={**images, modality: as_block(volume)})[0]
        yield blocks, columns[rows], volume, as_block


def _identity(x):
    return x


def _volume_input(module):
    """The first layer that windows the HU volumes of a volume column in ``module`` (None without one).

    Every volume column of a model has the same: the estimator's ``image_encoder``,
    ``volume_size`` and ``window`` build each one.
    """
    return next((m for m in module.modules() if isinstance(m, (VolumeGeometry, SliceGeometry))), None)


def _standardization(estimator, modality):
    """``(mean, scale)`` by which the network reads ``modality``: ``z = (x - mean) / scale`` (``standardization_``)."""
    dtype = next(estimator.net_.module_.parameters()).dtype
    stats = estimator.standardization_.get(modality, (0.0, 1.0))
    return (torch.as_tensor(v, dtype=dtype, device=estimator.net_.device) for v in stats)


def _paths(estimator, X, modality, target, integrated=False, baseline=None):
    """``(block, x, start, at)`` per batch (see :func:`_inputs`), in the units the network reads.

    ``at(point)`` is each row's score with the modality's input at ``point`` (``x``'s shape),
    ``start`` the start of integrated gradients' path (``integrated``; else 0), from
    ``baseline`` in the units of ``X`` (None: :func:`integrated_gradients`' default). Under
    ``window="minmax"``, a path's start is each volume's minimum and ``at`` holds the
    scaling of ``x`` (:func:`~skfusion.modules.volume_input.hold_minmax_scaling`) while the
    generator is at its batch.
    """
    module = estimator.net_.module_.eval()
    dtype = next(module.parameters()).dtype
    mean, scale = _standardization(estimator, modality)
    spec = next(s for s in estimator.layout_ if s.name == modality)
    geometry = _volume_input(module) if spec.volume else None
    if not integrated:
        baseline = 0.0
    elif geometry is not None:
        baseline = path_start(geometry.window, baseline)
    elif baseline is None:
        baseline = 0.0
    minmax = baseline is None  # each volume's minimum, its scaling held along the path
    for blocks, columns, x, as_block in _inputs(estimator, X, modality, target):
        x = x.to(dtype)

        def at(point, blocks=blocks, columns=columns, as_block=as_block):
            return score(module, {**blocks, modality: {**blocks[modality], "x": as_block(point)}}, columns)

        path = (
            hold_minmax_scaling(module, lambda: at(x), as_block(x))
            if minmax
            else contextlib.nullcontext((float(baseline) - mean) / scale)
        )
        with path as start:
            yield blocks[modality], x, start, at


def _path_gradients(estimator, X, modality, target, alphas=None, baseline=None):
    """``(block, x - x', mean over alphas of the gradient at x' + alpha (x - x'))`` per batch, in the units of ``X``.

    ``alphas=None`` is the gradient at ``x`` itself (``x' = 0``, ``alpha = 1``); otherwise
    ``baseline`` is ``x'`` (see :func:`_paths`). The network reads standardized features,
    so the gradients are divided by the scale.
    """
    _, scale = _standardization(estimator, modality)
    paths = _paths(estimator, X, modality, target, alphas is not None, baseline)
    alphas = [1.0] if alphas is None else alphas
    # cuDNN computes an RNN's backward pass in training mode only; the plain kernels in any mode.
    with torch.backends.cudnn.flags(enabled=False):
        for block, x, start, at in paths:
            delta = x - start
            total = torch.zeros_like(x)
            for alpha in alphas:
                point = (start + alpha * delta).requires_grad_(True)
                (grad,) = torch.autograd.grad(at(point).sum(), point)
                total += grad
            yield block, delta * scale, total / len(alphas) / scale


def _aligned(estimator, modality, parts):
    """Attributions per batch back to the input's layout: (n, ...) arrays, or an object array of per-row arrays.

    An image's come back channels-last, ``(n, H, W, C)``, as its cells are given; a volume's
    as one ``(z, y, x)`` array per row, at its cell's shape; a token column's as one
    ``(T_i, d)`` array per row.
    """
    spec = next(s for s in estimator.layout_ if s.name == modality)
    if spec.volume:
        return object_array([row for _, values in parts for row in values.double().cpu().numpy()])
    if spec.kind != "sequence":
        values = np.concatenate([values.double().cpu().numpy() for _, values in parts])
        return np.moveaxis(values, 1, -1) if spec.kind == "image" else values
    rows = []
    for mask, values in parts:
        lengths = mask.sum(dim=1).cpu().numpy()
        values = values.double().cpu().numpy()
        rows += [values[i, : lengths[i]] for i in range(len(values))]
    return object_array(rows)


def _check_X_frame(X):
    if not hasattr(X, "shape") or len(X) == 0:
        raise ValueError("X must hold at least one row to attribute.")


def _unpipe(estimator, X, modality, target):
    """``(VolumeScore, None, None)`` for a Pipeline's CT volume column, else ``(None, model, X as the model reads it)``.

    A bare estimator comes back as it is; a Pipeline's model with ``X`` passed through the
    steps before it.
    """
    if not isinstance(estimator, Pipeline):
        return None, estimator, X
    embedder = volume_step(estimator, modality, target)
    if embedder is not None:
        return VolumeScore(estimator, embedder, X, modality, target), None, None
    return None, estimator[-1], X if len(estimator) == 1 else estimator[:-1].transform(X)


def gradient_saliency(estimator, X, modality, *, target=None):
    """Gradient of a fitted model's score with respect to one modality's input, per row.

    Parameters
    ----------
    estimator : fitted skfusion estimator or Pipeline
        A fusion model with a network (``net_``): a Cox survival model (the score is the
        risk, ``predict``'s log relative hazard) or a classifier (the score is a class logit).
        Or a fitted Pipeline of skfusion encoders ending in one: then ``modality`` may name
        the raw volume column of a :class:`~skfusion.encoders.CTVolumeEmbedder` step with a
        torch backbone, to attribute the score to the voxels of each volume (see Notes).
    X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        As for ``predict``; every row must have ``modality``.
    modality : str
        The modality whose input is attributed: a token column (each token, e.g. each CT
        slice), a raw image column read by the network's image encoder (each pixel), a CT
        volume column read by its 3-D encoder (each voxel, in Hounsfield units), or a
        numeric block (each feature). With a Pipeline, also the CT volume column of a
        CTVolumeEmbedder step (each voxel); any other modality of its model is attributed at
        the model's input, ``X`` passed through the steps before it.
    target : class label, default=None
        Classifier only: the class whose logit is explained; ``None`` is each row's predicted
        class (a multi-label model needs one). A survival model explains its risk and
        refuses any other value than ``None``.

    Returns
    -------
    saliency : ndarray
        Shaped like the input: ``(n_samples, H, W, C)`` for an image column (the layout of
        its cells), ``(n_samples, d)`` for a numeric block, and for a token column an object
        array of ``n_samples`` arrays ``(T_i, d)``, one per row with its own tokens (no
        padding).
        :func:`token_importance` reduces tokens to one value each. For a CT volume column
        (of ``(Z, H, W)`` arrays or of files, read by the model's 3-D encoder, or through a
        Pipeline's CTVolumeEmbedder), an object array of ``n_samples`` float64 arrays, each
        the shape ``(z, y, x)`` of its row's volume as given (an array's shape, a file's own
        shape as read, not ``volume_size``), whether or not the volumes share a shape, per
        Hounsfield unit.

    See Also
    --------
    integrated_gradients : attributions that add up to the change of the score.
    skfusion.plot.plot_slice_saliency : a voxel map over slices of its volume.

    Notes
    -----
    A volume column of a model that trains a 3-D encoder (``image_encoder=``) is
    differentiated through the network's resampling to ``volume_size`` (trilinear) and its
    window, HU window or per-volume min-max scaling (then through each volume's minimum and
    maximum, as the model computes them); voxels outside a HU window get zero. A file is
    read by the model's reader, in HU at its own shape, and resampled to ``volume_size``
    inside the graph, one row at a time (the memory is one volume, its gradient and the
    network's activations on one resampled volume): the map is the gradient per voxel of
    the file, not a map interpolated afterwards.

    Through a Pipeline, the score is differentiated through the model, the embedder's
    z-average (``pool="mean"``) or slice tokens (``pool=None``), its frozen backbone and its
    own per-slice preprocessing (normalisation, replication to 3 channels, resize, window:
    the same torch functions) into the voxels; the slices that ``slices`` does not keep get
    zero, and so do voxels outside the window, where the window's clipping is flat. The
    other steps must be skfusion encoders (each passes the columns it does not read
    through untouched). Volumes go one at a time, their kept slices ``batch_size`` (the
    embedder's) at a time: the memory is one volume and its gradient, plus one batch's
    activations through the backbone; the work is two forward passes and one backward
    pass of the backbone over the kept slices of each volume.

    References
    ----------
    .. [1] K. Simonyan, A. Vedaldi and A. Zisserman (2014). Deep inside convolutional
           networks: visualising image classification models and saliency maps. ICLR
           workshop.

    Examples
    --------
    >>> from skfusion import ConcatSurvival
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.inspection import gradient_saliency
    >>> X, y = make_multimodal_survival(n_samples=100, n_features=(6, 4), random_state=0)
    >>> model = ConcatSurvival(random_state=0).fit(X, y)
    >>> gradient_saliency(model, X.iloc[:3], "img").shape
    (3, 6)
    """
    _check_X_frame(X)
    volumes, estimator, X = _unpipe(estimator, X, modality, target)
    if volumes is not None:
        return volumes.saliency()
    _check_estimator(estimator, modality, target)
    parts = [
        (block.get("mask"), grad)
        for block, _, grad in _path_gradients(estimator, X, modality, target)
    ]
    return _aligned(estimator, modality, parts)


def integrated_gradients(estimator, X, modality, *, target=None, baseline=None, n_steps=64):
    """Integrated gradients of a fitted model's score along the path from ``baseline`` to each row.

    :math:`IG_j(x) = (x_j - x'_j) \\int_0^1 \\partial f(x' + \\alpha (x - x')) / \\partial x_j \\, d\\alpha`,
    the integral taken by the midpoint rule on ``n_steps`` points. Only ``modality``'s input
    moves; the other modalities stay as in ``X``. Completeness: a row's attributions sum to
    :math:`f(x) - f(x')`, its score minus the score with ``modality`` set to the baseline
    (the same tokens, image or volume size, filled with ``baseline``), up to the quadrature
    error.

    Parameters
    ----------
    estimator : fitted skfusion estimator or Pipeline
        See :func:`gradient_saliency`.
    X : pandas.DataFrame or array-like of shape (n_samples, n_features)
    modality : str
    target : class label, default=None
        See :func:`gradient_saliency`.
    baseline : float, default=None
        The reference input :math:`x'`, every element equal to this value. None is 0 for
        the inputs of the model (an all-black image, null tokens, the value of padding).
        For a CT volume column, a number is in Hounsfield units, and None is:

        - with a HU window (``window="pe"``, ``(low, high)``, or a CTVolumeEmbedder's
          window through a Pipeline), the window's low end: a volume that the window turns
          black, so that a voxel's attribution is what its visible contrast adds (voxels
          below the window get none);
        - with ``window="minmax"``, each volume's own minimum (of the volume resampled to
          ``volume_size``, as the model scales it), which min-max scaling reads as zeros,
          as it reads any constant volume. The network reads each point :math:`x_\\alpha`
          of the path scaled as the volume itself, :math:`(x_\\alpha - low) / span` with
          ``low`` and ``span`` those of :math:`x` (linear in :math:`\\alpha`): scaled by
          its own minimum and maximum, every point would be the same input (the points
          differ by an offset and a factor), and the attributions would sum to 0. At both
          ends the network's input is the model's own, so completeness holds against its
          outputs. A number is refused there (a ValueError): min-max scaling reads every
          constant volume alike.
    n_steps : int, default=64
        Points of the midpoint rule.

    Returns
    -------
    attributions : ndarray
        Shaped like the input, as in :func:`gradient_saliency`.

    See Also
    --------
    gradient_saliency : the gradient at the input itself.

    Notes
    -----
    For a CT volume column, :math:`f(x')` is the score of the row's volume filled with
    ``baseline`` (an array of its shape, or a file of its shape), the volume read as the
    model reads it; under ``window="minmax"``, of any constant volume. Through a Pipeline,
    the path moves the whole volume while the slices kept stay those ``slices`` keeps for
    the row's own volume; so the completeness reference is the score of the filled volume
    when ``slices`` does not depend on the voxels (None, a range or a fraction). Each step
    costs what :func:`gradient_saliency` costs a volume (a column of files goes one row at
    a time).

    References
    ----------
    .. [1] M. Sundararajan, A. Taly and Q. Yan (2017). Axiomatic attribution for deep
           networks. ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from skfusion import ConcatSurvival
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.inspection import integrated_gradients
    >>> X, y = make_multimodal_survival(n_samples=100, n_features=(6, 4), random_state=0)
    >>> model = ConcatSurvival(random_state=0).fit(X, y)
    >>> attributions = integrated_gradients(model, X.iloc[:3], "img")
    >>> zeroed = X.iloc[:3].assign(**{f"img__{j}": 0.0 for j in range(6)})
    >>> bool(np.allclose(attributions.sum(axis=1), model.predict(X.iloc[:3]) - model.predict(zeroed), atol=1e-2))
    True
    """
    _check_X_frame(X)
    if not isinstance(n_steps, Integral) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}.")
    if baseline is not None and (not isinstance(baseline, Real) or not np.isfinite(baseline)):
        raise ValueError(f"baseline must be a finite number (or None); got {baseline!r}.")
    alphas = (np.arange(n_steps) + 0.5) / n_steps
    volumes, estimator, X = _unpipe(estimator, X, modality, target)
    if volumes is not None:
        return volumes.integrated_gradients(alphas.tolist(), baseline)
    _check_estimator(estimator, modality, target)
    parts = []
    for block, delta, mean_grad in _path_gradients(estimator, X, modality, target, alphas, baseline):
        attribution = delta * mean_grad
        if "mask" in block:
            # Padding is not input: its zeros are no token to attribute.
            attribution = attribution * block["mask"].unsqueeze(-1)
        parts.append((block.get("mask"), attribution))
    return _aligned(estimator, modality, parts)


def token_importance(attributions, *, absolute=False):
    """One value per token: the attributions of a token column summed over its features.

    Parameters
    ----------
    attributions : object ndarray of (T_i, d) arrays
        What :func:`gradient_saliency` or :func:`integrated_gradients` return for a token
        column.
    absolute : bool, default=False
        Sum absolute values (the magnitude of a gradient saliency) instead of signed ones
        (integrated gradients' contributions, which add up to the change of the score).

    Returns
    -------
    importance : list of ndarray
        One ``(T_i,)`` array per row: the importance of each token (each CT slice over z).

    Examples
    --------
    >>> import numpy as np
    >>> from skfusion.inspection import token_importance
    >>> token_importance(np.array([np.ones((3, 2)), -np.ones((1, 2))], dtype=object))[1].tolist()
    [-2.0]
    """
    rows = []
    for i, values in enumerate(attributions):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"attributions[{i}] has shape {values.shape}; token attributions are (T_i, d) arrays.")
        rows.append((np.abs(values) if absolute else values).sum(axis=1))
    return rows
