"""Attributions through a fitted Pipeline, down to the Hounsfield-unit voxels of its CT volumes.

A :class:`~skfusion.encoders.CTVolumeEmbedder` with a torch backbone is differentiable: its
per-slice preprocessing (window, resize, replication to 3 channels, normalisation) is a
chain of torch functions, the embedder's own (``_prepare``), and so is the backbone. The
score of the model after it is therefore a differentiable function of the voxels of each
volume, which :class:`VolumeScore` evaluates and differentiates one volume at a time. A
backbone that embeds each volume whole (``TimeToEventPretraining``'s ``image_encoder_``,
whose first layer windows the HU volume) is differentiated the same way, through the
embedder's resampling of the kept slices to the network's ``volume_size``.
"""

import contextlib

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._data import ModalityDataset
from .._images import is_missing_cell, window_low
from ..encoders import CTVolumeEmbedder
from ..encoders._base import BaseColumnEncoder, as_pandas_frame, is_polars_frame
from ..modules.volume_input import hold_minmax_scaling
from ._score import check_model, modality_names, score, score_columns


def path_start(window, baseline, whose=""):
    """The HU that integrated gradients' paths start from, through a volume encoder's ``window``.

    ``baseline``, by default the window's low end (black once windowed); None under
    ``window="minmax"``: each path starts at its volume's own minimum, which min-max scaling
    reads as zeros, as it reads any constant volume, so a number is refused there.
    ``whose`` qualifies the window in that error.
    """
    low = window_low(window)
    if low is None:
        if baseline is not None:
            raise ValueError(
                f"baseline={baseline!r} cannot be used with {whose}window='minmax': min-max scaling reads every "
                "constant volume as zeros, whatever its value, so the baseline is each volume's own minimum; "
                "leave baseline=None."
            )
        return None
    return low if baseline is None else float(baseline)


def object_array(rows):
    """A 1-D object array holding the arrays ``rows``, one per sample (their shapes may differ)."""
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out


def volume_step(pipeline, modality, target):
    """The CTVolumeEmbedder step whose volume column ``modality`` names, or None when it names a modality of the model.

    Every step but the last must be a skfusion encoder: an encoder reads its own column and
    passes the others through untouched, so the volumes reach the embedder as they are in
    ``X`` and its output reaches the model as it made it. A volume column asks for voxel
    attributions even where the embedder's output has the same name.
    """
    *steps, (last, model) = pipeline.steps
    check_model(model, target, f"the last step {last!r} of the Pipeline")
    steps = [(name, step) for name, step in steps if step not in (None, "passthrough")]
    for name, step in steps:
        if not isinstance(step, BaseColumnEncoder):
            raise ValueError(
                f"step {name!r} ({type(step).__name__}) is not a skfusion encoder: what it does to the columns is "
                "unknown, so attributions cannot be followed through the Pipeline. To explain the inputs of its "
                "model instead, pass pipe[-1] and pipe[:-1].transform(X)."
            )
    names = modality_names(model)
    readers = [(name, step) for name, step in steps if isinstance(step, CTVolumeEmbedder) and step.image == modality]
    if not readers:
        if modality in names:
            return None
        volumes = [step.image for _, step in steps if isinstance(step, CTVolumeEmbedder)]
        raise ValueError(
            f"modality={modality!r} is neither the volume column of a CTVolumeEmbedder step ({volumes}) nor a "
            f"modality of the Pipeline's model ({names})."
        )
    name, step = readers[0]
    if step.backbone is None:
        raise ValueError(
            f"step {name!r} (CTVolumeEmbedder) describes the slices of column {modality!r} with the training-free "
            "descriptor (backbone=None), which has no gradient: voxel attributions need a torch backbone. Its "
            f"output is explained at the model's input with pipe[-1], pipe[:-1].transform(X) and "
            f"modality={step._output_name()!r}."
        )
    check_is_fitted(step, "backbone_", msg=f"step {name!r} (CTVolumeEmbedder) is not fitted: fit the Pipeline first.")
    if step._output_name() not in names:
        raise ValueError(
            f"the model does not read modality {step._output_name()!r}, the output of step {name!r}; its "
            f"modalities are {names}."
        )
    return step


class VolumeScore:
    """The score of a fitted Pipeline's model as a function of the CT volume of each row of ``X``.

    The other modalities are as ``pipeline[:-1].transform(X)`` makes them. Volumes go one
    at a time. The gradient at ``k`` points of a volume's path (one for a saliency map,
    ``n_steps`` for integrated gradients) costs: the kept slices of every point encoded
    without a graph, ``batch_size`` (the embedder's) at a time; one pass of the network
    over the ``k`` points' slice embeddings, giving the gradient with respect to them; then,
    point by point and batch by batch, the slices encoded again with a graph and a backward
    pass carrying that gradient to their voxels. The memory is the volume, its distance to
    the start of the path and the gradient (three volumes), the ``(k, n_slices, d)`` slice
    embeddings, and one batch's activations through the backbone.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
    embedder : CTVolumeEmbedder
        The step of ``pipeline`` that reads ``modality`` (:func:`volume_step`).
    X : pandas.DataFrame
    modality : str
        The raw volume column.
    target : class label or None
        See :func:`~skfusion.inspection.gradient_saliency`.
    """

    def __init__(self, pipeline, embedder, X, modality, target):
        self.embedder, self.model = embedder, pipeline[-1]
        self.name = embedder._output_name()
        self.modality = modality
        self.cells = (as_pandas_frame(X) if is_polars_frame(X) else X)[modality].tolist()
        missing = [i for i, cell in enumerate(self.cells) if is_missing_cell(cell)]
        if missing:
            raise ValueError(f"modality {modality!r} is missing in rows {missing[:8]}: it has no input to attribute.")
        blocks, _ = self.model._blocks(pipeline[:-1].transform(X), reset=False)
        self.dataset = ModalityDataset(blocks, device=self.model.net_.device)
        self.columns = score_columns(self.model, self.dataset, target)
        # A whole-volume backbone's first layer windows (and resamples) the volume itself.
        self.geometry = embedder.backbone_[0] if embedder._reads_whole_volumes() else None

    def __len__(self):
        return len(self.cells)

    def read(self, i):
        """Row ``i``'s ``(z, y, x)`` HU volume (on the embedder's device, in its backbone's dtype) and kept slices."""
        volume, kept = self.embedder._read_volume(self.cells[i], f"column {self.modality!r}, row {i}")
        dtype = next((p.dtype for p in self.embedder.backbone_.parameters() if p.is_floating_point()), torch.float32)
        device = self.embedder.device_
        return torch.as_tensor(volume, dtype=dtype, device=device), torch.as_tensor(kept, device=device)

    def _embed(self, slices):
        """The backbone's embeddings of ``(b, y, x)`` HU slices, through the embedder's own preprocessing."""
        embedder = self.embedder
        amp = embedder.amp_dtype_
        with torch.autocast(slices.device.type, dtype=amp, enabled=amp is not None):
            return embedder.backbone_(embedder._prepare(slices[:, None]))

    def _batches(self, kept):
        return kept.split(self.embedder.batch_size)

    def tokens(self, volume, kept, alpha=1.0, start=0.0):
        """The ``(len(kept), d)`` embeddings of the kept slices of ``start + alpha * volume``, without a graph."""
        with torch.no_grad():
            return torch.cat([self._embed(start + alpha * volume[chunk]) for chunk in self._batches(kept)])

    def score(self, i, tokens):
        """Row ``i``'s score for each of the ``(n, len(kept), d)`` slice embeddings ``tokens``, differentiable in them.

        The other modalities are row ``i``'s.
        """
        module = self.model.net_.module_.eval()
        dtype = next(module.parameters()).dtype
        device = self.dataset.device
        blocks, _ = self.dataset.batch(torch.full((len(tokens),), i, device=device))
        blocks = {name: {**block, "x": block["x"].to(dtype)} for name, block in blocks.items()}
        mean, scale = (
            torch.as_tensor(v, dtype=dtype, device=device)
            for v in self.model.standardization_.get(self.name, (0.0, 1.0))
        )
        tokens = tokens.to(device=device, dtype=dtype)
        embedding = tokens.mean(dim=1) if self.embedder.pool == "mean" else tokens
        blocks[self.name]["x"] = (embedding - mean) / scale
        # cuDNN computes an RNN's backward pass in training mode only; the plain kernels in any mode.
        with torch.backends.cudnn.flags(enabled=False):
            return score(module, blocks, self.columns[[i] * len(tokens)])

    def _embed_whole(self, slices):
        """The ``(1, d)`` embedding of one volume's kept ``(k, y, x)`` HU slices by a whole-volume backbone.

        The embedder's own path: the slices resampled to the network's ``volume_size``
        (:class:`~skfusion.modules.volume_input.VolumeGeometry`), then the backbone, which
        windows them.
        """
        x = self.embedder._whole_volume_input(slices[None])
        amp = self.embedder.amp_dtype_
        with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            return self.embedder.backbone_(x)

    def _whole_path_gradients(self, i, volume, kept, alphas, start):
        """:meth:`path_gradients` through a whole-volume backbone: one forward and backward pass per point.

        ``start=None`` is the volume's own minimum under ``window="minmax"``, the scaling of
        the volume held along the path (:func:`~skfusion.modules.volume_input.hold_minmax_scaling`).
        """
        minmax = start is None
        path = (
            hold_minmax_scaling(self.embedder.backbone_, lambda: self._embed_whole(volume[kept]), volume[kept][None])
            if minmax
            else contextlib.nullcontext(start)
        )
        with path as start:
            if minmax:
                start = start.reshape(()).to(volume.dtype)  # a scalar against the (z, y, x) voxels
            delta = volume - start
            total = torch.zeros_like(volume)
            for alpha in alphas:
                slices = (start + alpha * delta[kept]).requires_grad_(True)
                value = self.score(i, self._embed_whole(slices)[None])
                (grad,) = torch.autograd.grad(value.sum(), slices)
                total[kept] += grad
        return delta, total / len(alphas)

    def path_gradients(self, i, alphas, start):
        """Row ``i``'s volume ``x`` less ``start``, and the mean of the gradients at ``start + alpha (x - start)``.

        The network reads the path's points together; each point's slices then go through
        the backbone a batch at a time to carry the gradient to their voxels. The slices not
        kept get zero. A whole-volume backbone reads each point's kept slices at once.
        """
        volume, kept = self.read(i)
        if self.geometry is not None:
            return self._whole_path_gradients(i, volume, kept, alphas, start)
        delta = volume - start
        tokens = torch.stack([self.tokens(delta, kept, alpha, start) for alpha in alphas]).requires_grad_(True)
        (by_token,) = torch.autograd.grad(self.score(i, tokens).sum(), tokens)
        total = torch.zeros_like(volume)
        for alpha, weights in zip(alphas, by_token):
            for chunk, part in zip(self._batches(kept), weights.split(self.embedder.batch_size)):
                slices = (start + alpha * delta[chunk]).requires_grad_(True)
                out = self._embed(slices)
                (grad,) = torch.autograd.grad(out, slices, part.to(device=out.device, dtype=out.dtype))
                total[chunk] += grad
        return delta, total / len(alphas)

    def saliency(self):
        """The gradient at each row's volume, as float64 ``(z, y, x)`` arrays."""
        # Start 0 and alpha 1: the point is the volume itself, to the last bit.
        return object_array([_numpy(self.path_gradients(i, [1.0], 0.0)[1]) for i in range(len(self))])

    def integrated_gradients(self, alphas, baseline):
        """``(x - x') * mean over alphas of the gradient at x' + alpha (x - x')`` per row, ``x'`` all ``baseline`` HU.

        ``baseline=None`` is the low end of the window (0 once windowed): the embedder's, or
        that of a whole-volume backbone's first layer; under its ``window="minmax"``, each
        volume's own minimum, which min-max scaling reads as zeros (a number is refused there).
        """
        window = self.embedder.window_ if self.geometry is None else self.geometry.window
        start = path_start(window, baseline, whose="the backbone's ")
        return object_array(
            [_numpy(delta * mean) for delta, mean in (self.path_gradients(i, alphas, start) for i in range(len(self)))]
        )


def _numpy(tensor):
    return tensor.double().cpu().numpy()
