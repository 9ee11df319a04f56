"""Backbones for the image encoders: resolution, local weights, batched extraction.

A backbone is any ``torch.nn.Module`` mapping a ``(B, 3, H, W)`` float batch to ``(B, d)``
embeddings, or the name of a torchvision architecture whose weights come from a local file
(torchvision is imported only then). Weights are never downloaded: they are read with
``torch.load(..., weights_only=True)`` or safetensors.

:func:`extract_tokens` is the extraction loop every image encoder shares: it reads volumes
one by one (the next one is read in a background thread while the current one is encoded),
packs their slices into batches of ``batch_size`` across volume boundaries, runs the model
under :func:`torch.inference_mode` (and CUDA autocast), splits the outputs back per volume,
and stores each finished volume in the cache, so an interrupted run resumes where it
stopped.
"""

import contextlib
import copy
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._cache import cache_key, content_hash


def resolve_device(device):
    """``"auto"`` is CUDA when available, else CPU; anything else goes to :class:`torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device ({exc}).") from exc


def autocast_dtype(device):
    """Autocast dtype for a neural backbone: bfloat16 (else float16) on CUDA, None (full precision) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_backbone(backbone, weights):
    """Return an evaluation-mode copy of the backbone, with ``weights`` loaded when given.

    Parameters
    ----------
    backbone : torch.nn.Module or str
        A module (copied, so the caller's module is never modified), or the name of a
        torchvision architecture (``torchvision.models.get_model(name, weights=None)``)
        whose classification layer, the last ``nn.Linear``, is replaced by the identity so
        that it returns its penultimate features.
    weights : str, os.PathLike or None
        Local state-dict file (safetensors or a ``torch.save`` file, told apart by content).
        Keys must match the module exactly; for a torchvision name, the removed
        classification layer's keys are ignored, so a checkpoint with any number of
        classes loads.

    Returns
    -------
    module : torch.nn.Module
    """
    if isinstance(backbone, str):
        module = _torchvision_model(backbone)
        head = _last_linear_name(module)
        if head is not None:
            parent, _, child = head.rpartition(".")
            setattr(module.get_submodule(parent), child, nn.Identity())
    else:
        module, head = copy.deepcopy(backbone), None
    if weights is not None:
        state = load_state_dict(weights)
        if head is not None:
            state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights {str(weights)!r} do not match the backbone: missing keys "
                f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected keys "
                f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}."
            )
    return module.eval()


def _torchvision_model(name):
    try:
        import torchvision
    except Exception as exc:
        raise ImportError(
            f"backbone={name!r} names a torchvision architecture, but torchvision cannot be "
            f"imported ({exc}); install a torchvision build matching your torch, or pass an "
            "nn.Module."
        ) from exc
    try:
        return torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise ValueError(f"backbone={name!r} is not a torchvision architecture ({exc}).") from exc


def _last_linear_name(module):
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def load_state_dict(path):
    """Read a state dict from a local safetensors or ``torch.save`` file (``weights_only=True``)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        if head[8:9] == b"{":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"weights {str(path)!r} cannot be read as a state dict ({exc}).") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights {str(path)!r} do not hold a flat state dict of tensors.")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"weights {str(path)!r}: tensor {name!r} holds NaN or infinite values.")
    return state


def run_model(model, x, amp_dtype):
    """Forward one batch under inference mode (autocast if ``amp_dtype``); return ``(B, d)`` float32 numpy."""
    with (
        torch.inference_mode(),
        torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None),
    ):
        y = model(x)
    if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != x.shape[0]:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(
            "the backbone must return a (batch, d) tensor; for an input of shape "
            f"{tuple(x.shape)} it returned {shape}."
        )
    return y.float().cpu().numpy()


def check_finite_embeddings(tokens, where):
    """Refuse NaN or infinite embeddings: a NaN row would read as "modality missing" downstream."""
    if not np.isfinite(tokens).all():
        raise ValueError(
            f"{where}: the backbone returned NaN or infinite embeddings; check the backbone's "
            "parameters and weights (under autocast, a float16 overflow also gives inf)."
        )


class _BatchPacker:
    """Packs the slices of successive volumes into full batches and hands back finished volumes."""

    def __init__(self, model, prepare, batch_size, device, amp_dtype, where):
        self.model, self.prepare, self.batch_size, self.where = model, prepare, batch_size, where
        self.device, self.amp_dtype = device, amp_dtype
        self.buffer, self.buffered = [], 0
        self.parts, self.remaining = {}, {}

    def add(self, index, stack):
        """Queue the ``(n, C, H, W)`` slices of volume ``index``; return the volumes finished meanwhile."""
        finished = []
        self.parts[index], self.remaining[index] = [], len(stack)
        start = 0
        while start < len(stack):
            take = min(len(stack) - start, self.batch_size - self.buffered)
            with torch.inference_mode():
                piece = self.prepare(torch.from_numpy(stack[start : start + take]).to(self.device))
            if self.buffer and piece.shape[1:] != self.buffer[0][1].shape[1:]:
                finished += self.flush()
            self.buffer.append((index, piece))
            self.buffered += take
            start += take
            if self.buffered >= self.batch_size:
                finished += self.flush()
        return finished

    def flush(self):
        """Run the model on what is queued; return ``(index, tokens)`` of the volumes now complete."""
        if not self.buffer:
            return []
        pieces = [piece for _, piece in self.buffer]
        out = run_model(self.model, pieces[0] if len(pieces) == 1 else torch.cat(pieces), self.amp_dtype)
        finished, offset = [], 0
        for index, piece in self.buffer:
            tokens = out[offset : offset + len(piece)]
            check_finite_embeddings(tokens, self.where(index))
            self.parts[index].append(tokens)
            offset += len(piece)
            self.remaining[index] -= len(piece)
            if self.remaining[index] == 0:
                del self.remaining[index]
                finished.append((index, np.concatenate(self.parts.pop(index))))
        self.buffer, self.buffered = [], 0
        return finished


def extract_tokens(
    cells,
    load,
    prepare,
    model,
    *,
    batch_size,
    device,
    amp_dtype,
    cache,
    fingerprint,
    files_of_folder,
    verbose,
    desc,
    where,
    reduce=None,
):
    """Encode every cell into a ``(T_i, d)`` float32 array of per-slice embeddings.

    Parameters
    ----------
    cells : list
        The non-missing cells.
    load : callable
        ``load(i)`` returns the ``(n, C, H, W)`` float32 slices of ``cells[i]``.
    prepare : callable
        Maps a ``(b, C, H, W)`` tensor on ``device`` to the model's input.
    model : torch.nn.Module
    batch_size : int
    device : torch.device
    amp_dtype : torch.dtype or None
        Autocast dtype, or None for full precision.
    cache : EmbeddingCache or None
    fingerprint : str or None
        Hash of every parameter that changes the output (with ``cache``).
    files_of_folder : callable
        Lists a folder cell's files, for content hashing.
    verbose : int
        Progress bar over volumes (tqdm) when positive and tqdm is installed.
    desc : str
        Progress bar label.
    where : callable
        ``where(i)`` names ``cells[i]`` in error messages.
    reduce : callable, default=None
        Applied to each volume's tokens as soon as they are known (the cache still stores
        the tokens), so that pooled runs do not hold every slice embedding in memory.

    Returns
    -------
    tokens : list of ndarray
        ``reduce(tokens)`` per cell when ``reduce`` is given.
    """
    reduce = reduce or (lambda tokens: tokens)
    results = [None] * len(cells)

    def fetch(i):
        """Cached tokens of cell ``i`` when there are some, else its slices to encode."""
        key = None
        if cache is not None:
            key = cache_key(content_hash(cells[i], files_of_folder), fingerprint)
            hit = cache.get(key)
            if hit is not None:
                return i, key, hit, None
        return i, key, None, load(i)

    packer = _BatchPacker(model, prepare, batch_size, device, amp_dtype, where)
    keys = {}
    with (
        _progress_bar(len(cells), verbose, desc) as bar,
        contextlib.closing(_readahead(fetch, range(len(cells)))) as fetched,
    ):
        for i, key, hit, stack in fetched:
            if hit is not None:
                results[i] = reduce(hit)
                bar.update(1)
                continue
            keys[i] = key
            finished = packer.add(i, stack)
            _store(finished, results, keys, cache, bar, reduce)
        _store(packer.flush(), results, keys, cache, bar, reduce)
    return results


def _store(finished, results, keys, cache, bar, reduce):
    for i, tokens in finished:
        results[i] = reduce(tokens)
        if cache is not None:
            cache.put(keys[i], tokens)
        del keys[i]
        bar.update(1)


def _readahead(fn, items, depth=1):
    """``map(fn, items)`` with up to ``depth`` items computed ahead in a background thread."""
    pool = ThreadPoolExecutor(max_workers=1)
    pending = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Silent:
    def update(self, n=1):
        pass


def _progress_bar(total, verbose, desc):
    if verbose:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, unit="volume")
    return contextlib.nullcontext(_Silent())
