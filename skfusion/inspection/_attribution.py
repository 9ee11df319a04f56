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
in the network (``image_encoder=``), or a numeric block. An image's attributions come back in
its cells' ``(H, W, C)`` layout, per unit of the image as the network reads it (an array
scaled to [0, 1]: integer cells divided by their dtype's maximum).

A fitted Pipeline of skfusion encoders ending in a fusion estimator is explained too. Its
model's modalities are explained at the model's input, as above. The volume column of a
:class:`~skfusion.encoders.CTVolumeEmbedder` step with a torch backbone is explained down to
the voxels, in Hounsfield units (``_volume.py``): the gradient goes through the model, the
embedder's pooling over z (or its slice tokens), its frozen backbone and its own per-slice
preprocessing (normalisation, resize, window), one volume at a time; each row's map has its
volume's ``(z, y, x)`` shape.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.pipeline import Pipeline

from .._data import ModalityDataset
from ._score import check_model, modality_names, score, score_columns
from ._volume import VolumeScore, object_array, volume_step


def _check_estimator(estimator, modality, target):
    check_model(estimator, target)
    names = modality_names(estimator)
    if modality not in names:
        raise ValueError(f"modality={modality!r} is not a modality of the fitted model; its modalities are {names}.")


def _batches(estimator, X, modality, target):
    """``(blocks, columns)`` batches of ``X`` on the model's device, in order, with each row's score column."""
    blocks, n_samples = estimator._blocks(X, reset=False)
    dataset = ModalityDataset(blocks, device=estimator.net_.device)
    if not bool(dataset.blocks[modality]["present"].all()):
        absent = np.flatnonzero(~dataset.blocks[modality]["present"].cpu().numpy())
        raise ValueError(
            f"modality {modality!r} is missing in rows {absent[:8].tolist()}: it has no input to attribute."
        )
    columns = score_columns(estimator, dataset, target)
    positions = torch.arange(n_samples, device=dataset.device)
    for chunk in positions.split(estimator.net_.batch_size):
        yield dataset.batch(chunk)[0], columns[chunk.cpu()]


def _path_gradients(estimator, X, modality, alphas, baseline, target):
    """``(block, x - baseline, mean over alphas of the gradient at baseline + alpha (x - baseline))`` per batch.

    Both in the units of ``X``: the network reads standardized features
    ``z = (x - mean) / scale`` (``standardization_``), so the baseline is standardized the
    same way and the gradients are divided by the scale.
    """
    module = estimator.net_.module_.eval()
    dtype = next(module.parameters()).dtype
    device = estimator.net_.device
    mean, scale = (
        torch.as_tensor(v, dtype=dtype, device=device) for v in estimator.standardization_.get(modality, (0.0, 1.0))
    )
    # cuDNN computes an RNN's backward pass in training mode only; the plain kernels in any mode.
    with torch.backends.cudnn.flags(enabled=False):
        for blocks, columns in _batches(estimator, X, modality, target):
            x = blocks[modality]["x"].to(dtype)
            start = (baseline - mean) / scale
            delta = x - start
            total = torch.zeros_like(x)
            for alpha in alphas:
                point = (start + alpha * delta).requires_grad_(True)
                value = score(module, {**blocks, modality: {**blocks[modality], "x": point}}, columns)
                (grad,) = torch.autograd.grad(value.sum(), point)
                total += grad
            yield blocks[modality], delta * scale, total / len(alphas) / scale


def _aligned(estimator, modality, parts):
    """Attributions per batch back to the input's layout: (n, ...) arrays, or a list of (T_i, d) arrays.

    An image's come back channels-last, ``(n, H, W, C)``, as its cells are given (a volume's as
    ``(n, Z, H, W)``).
    """
    spec = next(s for s in estimator.layout_ if s.name == modality)
    if spec.kind != "sequence":
        values = np.concatenate([values.double().cpu().numpy() for _, values in parts])
        return np.moveaxis(values, 1, -1) if spec.kind == "image" and not spec.volume else values
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
        slice), a raw image column read by the network's image encoder (each pixel), or a
        numeric block (each feature). With a Pipeline, also a CT volume column (each voxel);
        any other modality of its model is attributed at the model's input, ``X`` passed
        through the steps before it.
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
        :func:`token_importance` reduces tokens to one value each. For a CT volume column,
        an object array of ``n_samples`` float64 arrays, each the shape ``(z, y, x)`` of its
        row's volume (whether or not the volumes share a shape), per Hounsfield unit.

    See Also
    --------
    integrated_gradients : attributions that add up to the change of the score.
    skfusion.plot.plot_slice_saliency : a voxel map over slices of its volume.

    Notes
    -----
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
        for block, _, grad in _path_gradients(estimator, X, modality, [1.0], 0.0, target)
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
        the inputs of the model (an all-black image, null tokens, the value of padding)
        and, for a CT volume column, the low end of the embedder's window: a volume that
        the window turns black, so that a voxel's attribution is what its visible contrast
        adds (voxels below the window get none). A number is in Hounsfield units there.
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
    For a CT volume column, the path moves the whole volume while the slices kept stay
    those ``slices`` keeps for the row's own volume; so the completeness reference
    :math:`f(x')` is the score of the volume filled with ``baseline``, when ``slices``
    does not depend on the voxels (None, a range or a fraction). Each step costs what
    :func:`gradient_saliency` costs a volume.

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
    for block, delta, mean_grad in _path_gradients(estimator, X, modality, alphas, float(baseline or 0.0), target):
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
