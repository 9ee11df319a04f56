"""Backbones for the image encoders: resolution, local weights, batched extraction.

A backbone is any ``torch.nn.Module`` mapping a ``(B, 3, H, W)`` float batch to ``(B, d)``
embeddings, or the name of a torchvision architecture whose weights come from a local file
(:func:`load_backbone`): the ResNets are skfusion's copies of torchvision's
(:class:`~skfusion.modules.encoders.ResNet`), other names import torchvision. Weights are
never downloaded: they are read with ``torch.load(..., weights_only=True)`` or safetensors.

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

from ..modules.encoders import RESNETS, resnet
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


def load_backbone(backbone, weights=None):
    """An evaluation-mode copy of a backbone, with weights from a local file.

    The one way weights reach a network in skfusion: ``backbone=`` / ``weights=`` of
    :class:`ImageEmbedder` and :class:`CTVolumeEmbedder` call it, and its result is what to
    give the fusion estimators' ``image_encoder`` for a pre-trained image encoder (they
    fine-tune a copy of it).

    Parameters
    ----------
    backbone : torch.nn.Module or str
        A module (copied, so the caller's module is never modified), or the name of an
        architecture without its classification layer, which is replaced by the identity
        so that the network returns its penultimate features. The ResNets
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` and ``"resnet152"``
        are skfusion's copies of torchvision's (same modules, parameter names and shapes,
        so torchvision checkpoints load; torchvision is not needed); any other name is
        built by torchvision (``torchvision.models.get_model(name, weights=None)``), which
        must then be importable.
    weights : str, os.PathLike or None, default=None
        Local state-dict file (safetensors or a ``torch.save`` file, told apart by content),
        never downloaded. Its keys and shapes must match the module exactly; for a name,
        the removed classification layer's keys (``fc.*`` of a ResNet) are ignored, so a
        checkpoint with any number of classes loads. None keeps the random initialisation.

    Returns
    -------
    module : torch.nn.Module
        Mapping ``(n, 3, H, W)`` images to ``(n, d)`` features (a named ResNet also takes
        1-channel images, replicated to 3).

    Raises
    ------
    ValueError
        When ``weights`` cannot be read, or has missing, unexpected or misshaped keys (named).

    See Also
    --------
    ImageEmbedder, CTVolumeEmbedder : Frozen embeddings from a backbone.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from skfusion.encoders import load_backbone
    >>> path = Path(tempfile.mkdtemp()) / "resnet18.pt"
    >>> torch.save(load_backbone("resnet18").state_dict(), path)  # stands for a torchvision file
    >>> network = load_backbone("resnet18", path)
    >>> network(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 512])

    With ``ConcatClassifier(image_encoder=network)``, training starts from these weights.
    """
    if isinstance(backbone, str):
        module, head = _named_backbone(backbone)
    else:
        module, head = copy.deepcopy(backbone), None
    if weights is not None:
        state = load_state_dict(weights)
        if head is not None:
            state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
        _load_exactly(module, state, weights)
    return module.eval()


def _named_backbone(name):
    """The module of an architecture name with its classifier replaced by the identity, and that classifier's name."""
    if name in RESNETS:
        return resnet(name), "fc"
    module = _torchvision_model(name)
    head = _last_linear_name(module)
    if head is not None:
        parent, _, child = head.rpartition(".")
        setattr(module.get_submodule(parent), child, nn.Identity())
    return module, head


def _load_exactly(module, state, weights):
    """``module.load_state_dict(state)``, with every key and shape difference a ValueError naming the keys."""
    own = module.state_dict()
    misshaped = [
        f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the backbone"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    missing, unexpected = [], []
    if not misshaped:
        # load_state_dict lists the keys itself, knowing which may be absent (the batch-norm
        # counters of checkpoints written before they existed).
        missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected or misshaped:
        raise ValueError(
            f"weights {str(weights)!r} do not match the backbone: missing keys {_first(missing)}, "
            f"unexpected keys {_first(unexpected)}, misshaped keys {_first(misshaped)}."
        )


def _first(keys, n=5):
    return f"{list(keys[:n])}{' ...' if len(keys) > n else ''}"


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
