"""The machinery shared by the CT volume and 2-D image encoders.

:class:`SliceEmbedder` is a :class:`~skfusion.encoders._base.BaseColumnEncoder` whose cells
are read into stacks of 2-D slices (one slice for an image), encoded slice by slice by a
backbone or a training-free descriptor (:func:`~._backbone.extract_tokens`), optionally
through the on-disk cache, in this process or sharded over joblib workers (a Dask cluster
under ``joblib.parallel_backend("dask")``). Subclasses say how to read a cell, how to turn
raw slices into the model's input, which descriptor to use, and which of their parameters
change the output.
"""

import os
from numbers import Integral, Real

import numpy as np
import torch
from joblib import effective_n_jobs
from sklearn.utils import gen_even_slices
from sklearn.utils.parallel import Parallel, delayed

from .._compat import Interval
from .._images import to_backbone_input
from .._volumes import series_files
from ..modules.encoders import first_convolution
from ._backbone import autocast_dtype, check_finite_embeddings, extract_tokens, load_backbone, resolve_device, run_model
from ._base import BaseColumnEncoder
from ._cache import EmbeddingCache, fingerprint_of, module_fingerprint
from ._descriptors import DESCRIPTOR_VERSION


def check_size(value, name):
    """``None``, a positive int, or a pair of positive ints; a ValueError naming ``name`` otherwise."""
    if value is None or (isinstance(value, Integral) and value > 0):
        return
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, Integral) and v > 0 for v in value)
    ):
        return
    raise ValueError(f"{name}={value!r}: expected None, a positive int or a pair of positive ints.")


def as_size(size):
    """A size parameter with lists turned into tuples (hashable, stable ``repr``)."""
    return tuple(size) if isinstance(size, (tuple, list)) else size


class SliceEmbedder(BaseColumnEncoder):
    """Base of the image encoders; not for direct use.

    Subclasses implement ``_read_cell(cell, where)`` (an ``(n, C, H, W)`` float32 stack),
    ``_geometry(x)`` (the tensor transform applied before the model, e.g. windowing and
    resizing), ``_descriptor()`` (the training-free module used when ``backbone=None``),
    ``_output_params()`` (a dict of every parameter that changes the output) and
    ``_check_own_params()``.
    """

    _column_parameter = "image"

    _parameter_constraints = {
        "image": [str],
        "output": [str, None],
        "backbone": [None, str, torch.nn.Module],
        "weights": [None, str, os.PathLike],
        "mean": [None, tuple, list],
        "std": [None, tuple, list],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "cache_dir": [None, str, os.PathLike],
        "n_jobs": [
            None,
            Interval(Integral, 1, None, closed="left"),
            Interval(Integral, None, -1, closed="right"),
        ],
        "verbose": ["verbose"],
    }

    def _check_normalisation(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be both None (no normalisation) or both given.")
        if self.mean is None:
            return
        for name, value in (("mean", self.mean), ("std", self.std)):
            if len(value) not in (1, 3) or not all(isinstance(v, Real) for v in value):
                raise ValueError(f"{name}={value!r}: expected 1 or 3 numbers (one per channel).")
        if min(self.std) <= 0:
            raise ValueError(f"std={self.std!r}: every entry must be positive.")

    def _fit_cells(self, cells, y):
        self._check_own_params()
        self._check_normalisation()
        if self.weights is not None and self.backbone is None:
            raise ValueError(
                "weights is given but backbone is None; name the backbone the weights belong to."
            )
        if self.cache_dir is not None:
            EmbeddingCache(self.cache_dir)  # a bad cache_dir fails here, not after the first volume
        self.device_ = resolve_device(self.device)
        if self.backbone is None:
            model, amp = self._descriptor(), None
        else:
            model, amp = load_backbone(self.backbone, self.weights), autocast_dtype(self.device_)
        self.backbone_ = model.to(self.device_)
        self.amp_dtype_ = amp
        self.embedding_dim_ = self._probe_dim(cells[0])
        self.fingerprint_ = None if self.cache_dir is None else self._fingerprint()
        return self

    def _fingerprint(self):
        """Hash of everything that changes a slice embedding (the cache key's second half)."""
        if self.backbone is None:
            model = {"descriptor": type(self.backbone_).__name__, "version": DESCRIPTOR_VERSION}
        else:
            model = {
                "backbone": module_fingerprint(self.backbone_),
                "autocast": str(self.amp_dtype_),
                "mean": self.mean,
                "std": self.std,
            }
        return fingerprint_of({"encoder": type(self).__name__, **model, **self._output_params()})

    def _probe_dim(self, cell):
        """Embedding size: the descriptor's, or the backbone's output on one real slice."""
        if self.backbone is None:
            return self.backbone_.n_features
        stack = self._read_cell(cell, self._where(0))[:1]
        with torch.inference_mode():
            x = self._prepare(torch.from_numpy(stack).to(self.device_))
        try:
            out = run_model(self.backbone_, x, self.amp_dtype_)
        except RuntimeError as exc:
            conv = first_convolution(self.backbone_)
            if conv is None or conv[1] == x.shape[1]:
                raise
            raise ValueError(
                f"backbone: its first convolution ({conv[0]!r}) reads {conv[1]} channel(s), but "
                f"{type(self).__name__} gives it {x.shape[1]} (column {self.image!r}: grey images and "
                "slices are replicated to RGB, as ImageNet backbones expect). Pass a backbone that reads "
                "3 channels; a 1-channel network can be preceded by a layer that averages the channels."
            ) from exc
        check_finite_embeddings(out, self._where(0))
        return out.shape[1]

    def _where(self, i):
        return f"column {self.image!r}, non-missing cell {i}"

    def _prepare(self, x):
        x = self._geometry(x)
        if self.backbone is None:
            return x
        return to_backbone_input(x, self.mean, self.std)

    def _extract(self, cells, pool):
        """Per-cell ``(T_i, d)`` slice embeddings, or their means over slices when ``pool``.

        Goes through the cache when ``cache_dir`` is set. With more than one joblib job the
        cells are cut into one contiguous chunk per job, each encoded by a worker that
        receives the fitted encoder once, and the chunks are put back in row order.
        """
        if self.cache_dir is not None:
            if self.fingerprint_ is None:
                raise ValueError(
                    f"{type(self).__name__}: cache_dir was set after fit; fit again to use the cache."
                )
            # Opened here first, so that a folder removed or made read-only since fit is named
            # before any volume is read, rather than at a worker's first write.
            EmbeddingCache(self.cache_dir)
        chunks = list(gen_even_slices(len(cells), min(effective_n_jobs(self.n_jobs), len(cells))))
        if len(chunks) == 1:
            return self._extract_chunk(cells, pool, start=0, verbose=self.verbose)
        # A shallow copy by hand: copy.copy would go through __getstate__, which serializes
        # the networks (and makes new ones).
        shipped = object.__new__(type(self))
        shipped.__dict__.update(self.__dict__)
        if isinstance(self.backbone, torch.nn.Module):
            # The user's module and its fitted copy would both travel with every chunk;
            # pointing the parameter at the copy lets pickle send the weights once.
            shipped.backbone = self.backbone_
        parts = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
            delayed(_extract_chunk)(shipped, cells[chunk], pool, chunk.start) for chunk in chunks
        )
        return [tokens for part in parts for tokens in part]

    def _extract_chunk(self, cells, pool, start, verbose):
        """:meth:`_extract` of ``cells``, the non-missing cells ``start, start + 1, ...`` of the column."""
        return extract_tokens(
            cells,
            load=lambda i: self._read_cell(cells[i], self._where(start + i)),
            prepare=self._prepare,
            model=self.backbone_,
            batch_size=self.batch_size,
            device=self.device_,
            amp_dtype=self.amp_dtype_,
            cache=None if self.cache_dir is None else EmbeddingCache(self.cache_dir),
            fingerprint=self.fingerprint_,
            files_of_folder=series_files,
            verbose=verbose,
            desc=type(self).__name__,
            where=lambda i: self._where(start + i),
            reduce=_mean_over_slices if pool else None,
        )

    def _embedding_dim(self):
        return self.embedding_dim_


def _extract_chunk(encoder, cells, pool, start):
    """One worker's share of a sharded extraction (silent: joblib reports progress per chunk)."""
    return encoder._extract_chunk(cells, pool, start, verbose=0)


def _mean_over_slices(tokens):
    return tokens.mean(0, dtype=np.float64).astype(np.float32)
