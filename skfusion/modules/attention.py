"""Cross- and co-attention fusion over token sequences (Zhang et al., 2026, section 2.2, Fig. 1c-d).

Attention needs several keys: softmax over a single key is identically 1, which turns
"attention" into a linear layer. Every modality is therefore read as a sequence of tokens
of width ``d`` (``attention_dim``) by a :class:`Tokenizer`:

- a *sequence* block (``x`` of shape (n, T, d_in) with its ``mask``): each token is
  projected by a linear layer ``d_in -> d``; padded tokens stay masked. Sequences get no
  position embedding (their lengths vary from row to row), so attention over them ignores
  token order;
- a *vector* block of width ``d_in``: its features are cut into ``k = min(n_tokens, d_in)``
  contiguous chunks as :func:`numpy.array_split` cuts them (widths differ by at most one),
  and chunk ``c`` becomes the token :math:`W_c x_c + b_c` with its own weights (the bias
  :math:`b_c` doubles as a learned position embedding). The features of a pooled
  embedding are not "the same kind of thing" from chunk to chunk, as image patches are:
  with one projection shared by the chunks, the mean of the tokens would only keep the sum
  of the chunks (``d_in / k`` of the ``d_in`` dimensions), while with per-chunk weights it
  is a full linear map of the vector.

One attention direction (:class:`AttentionDirection`) takes queries from the tokens
:math:`Z_q` of one modality and keys and values from the tokens :math:`Z_k` of another:

.. math::

    A_{q \\leftarrow k} = \\mathrm{softmax}\\Bigl(\\frac{(Z_q W_Q)(Z_k W_K)^\\top}{\\sqrt{d_k}}\\Bigr)
    \\, Z_k W_V,

with scores of padded keys set to :math:`-\\infty` before the softmax (so they get exactly
zero weight) and ``n_heads`` heads of width :math:`d_k = d / n_{heads}` whose outputs are
concatenated (no output projection: the prediction MLP follows). Each query token attends;
the outputs of the real query tokens are averaged (masked mean) into one vector per row.
The modality embedding :math:`h_m` is the masked mean of its tokens :math:`Z_m`.

Outside training, both fusion modules run their forward pass on blocks of exactly
:data:`INFERENCE_ROWS` rows (:class:`FixedShapeInference`), so that a row's output does not
depend on how many rows are predicted with it.
"""

from math import ceil, sqrt

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._blocks import masked_mean, mlp

# Rows of every forward pass outside training. Matrix-product kernels (MKL, oneDNN, cuBLAS) are
# chosen by the shape: MKL, for one, takes another path for fewer than 4 rows (and for a
# thread's share of fewer), which rounds a row's float32 output differently than among 256 rows
# (by ~1e-7, over scikit-learn's check_methods_subset_invariance tolerance). At one shape the
# kernels, and so a row's output, are the same whatever rows surround it. 256 is the attention
# estimators' batch_size: their prediction batches need no padding but the last one.
INFERENCE_ROWS = 256


def chunk_index(dim, n_tokens):
    """``(k, ceil(dim / k))`` feature positions of the chunks of a width-``dim`` vector.

    Chunks are :func:`numpy.array_split`'s; a position equal to ``dim`` marks zero padding.
    """
    chunks = np.array_split(np.arange(dim), min(n_tokens, dim))
    width = ceil(dim / len(chunks))
    return torch.tensor([list(c) + [dim] * (width - len(c)) for c in chunks], dtype=torch.long)


class ChunkProjection(nn.Module):
    """A vector ``(n, dim)`` as ``k`` tokens ``(n, k, width)``: chunk ``c`` maps to ``W_c x_c + b_c``.

    Parameters
    ----------
    dim : int
    n_tokens : int
        Number of chunks (at most ``dim``); see :func:`chunk_index`.
    width : int
    """

    def __init__(self, dim, n_tokens, width):
        super().__init__()
        index = chunk_index(dim, n_tokens)
        self.register_buffer("index", index)
        n_chunks, chunk_width = index.shape
        # nn.Linear's default initialisation, one chunk at a time.
        bound = 1.0 / sqrt(chunk_width)
        self.weight = nn.Parameter(torch.empty(n_chunks, chunk_width, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_chunks, width).uniform_(-bound, bound))

    def forward(self, x):
        # Position ``dim`` of the padded copy is the zero that fills the narrower chunks.
        padded = torch.cat([x, x.new_zeros(len(x), 1)], dim=1)
        return torch.einsum("nkc,kcw->nkw", padded[:, self.index], self.weight) + self.bias


class Tokenizer(nn.Module):
    """One modality's block as tokens ``(n, T, width)`` and a mask ``(n, T)``.

    Parameters
    ----------
    kind : {"vector", "sequence"}
    dim : int
        Width of the block's features (of each token for a sequence).
    n_tokens : int
        Number of chunks a vector block is cut into (at most ``dim``).
    width : int
        Width of the tokens.
    learn_missing : bool
        A row without this modality becomes a single learnable token (instead of no token).
    """

    def __init__(self, kind, dim, n_tokens, width, learn_missing=False):
        super().__init__()
        self.kind = kind
        self.proj = ChunkProjection(dim, n_tokens, width) if kind == "vector" else nn.Linear(dim, width)
        self.missing = nn.Parameter(torch.zeros(width)) if learn_missing else None

    def forward(self, block):
        present = block["present"]
        tokens = self.proj(block["x"])
        if self.kind == "vector":
            mask = present[:, None].expand(-1, tokens.shape[1])
        else:
            mask = block["mask"]
        if self.missing is not None:
            tokens, mask = self._fill_missing(tokens, mask, present)
        return tokens, mask

    def _fill_missing(self, tokens, mask, present):
        """The learnable token in position 0 of absent rows, the only real token there."""
        first = torch.zeros(mask.shape[1], dtype=torch.bool, device=mask.device)
        first[0] = True
        absent = ~present[:, None]
        tokens = torch.where((absent & first)[:, :, None], self.missing, tokens)
        return tokens, torch.where(absent, first, mask)


class AttentionDirection(nn.Module):
    """Scaled dot-product attention of one modality's tokens (queries) over another's.

    Parameters
    ----------
    width : int
        Token width :math:`d`.
    n_heads : int
        Number of heads; must divide ``width``.
    """

    def __init__(self, width, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.w_q = nn.Linear(width, width, bias=False)
        self.w_k = nn.Linear(width, width, bias=False)
        self.w_v = nn.Linear(width, width, bias=False)

    def _heads(self, x):
        n, t, width = x.shape
        return x.view(n, t, self.n_heads, width // self.n_heads).transpose(1, 2)

    def forward(self, query, query_mask, keys, key_mask, need_weights=False):
        """Pooled attended vector ``(n, width)`` and weights ``(n, n_heads, T_q, T_k)`` or ``None``.

        Weights are zero on padded keys and on padded query tokens; a row without any key
        gets zero weights (and a zero output) rather than NaN. Without ``need_weights`` the
        attention runs in :func:`torch.nn.functional.scaled_dot_product_attention`, which
        never forms the weights, and ``None`` is returned in their place; with it, the
        explicit softmax gives the same output and its weights.
        """
        q, k, v = self._heads(self.w_q(query)), self._heads(self.w_k(keys)), self._heads(self.w_v(keys))
        has_key = key_mask.any(dim=1)
        # An all-masked row would make the softmax 0/0 (NaN in some SDPA kernels too): let it
        # see its padding, then zero it.
        visible = (key_mask | ~has_key[:, None])[:, None, None, :]
        keep = (has_key[:, None] & query_mask).to(q.dtype)[:, None, :, None]
        if need_weights:
            scores = (q @ k.transpose(-2, -1) / sqrt(q.shape[-1])).masked_fill(~visible, float("-inf"))
            weights = torch.softmax(scores, dim=-1) * keep
            attended = weights @ v
        else:
            weights = None
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=visible) * keep
        return masked_mean(attended.transpose(1, 2).flatten(2), query_mask), weights


class FixedShapeInference(nn.Module):
    """A fusion module whose forward pass runs, outside training, on blocks of exactly :data:`INFERENCE_ROWS` rows.

    A batch is cut into blocks of ``INFERENCE_ROWS`` rows, the last one filled up with copies
    of the batch's last row, whose outputs are dropped. Subclasses implement
    ``_forward(blocks)``. Token sequences keep the batch's longest length, so between
    batches whose longest sequences differ a row's output differs by float32 rounding only:
    padded tokens get exactly zero weight (in float64 the outputs agree to 1e-12).
    """

    def forward(self, **blocks):
        if self.training:
            return self._forward(blocks)
        present = next(iter(blocks.values()))["present"]
        n = len(present)
        outputs = []
        for start in range(0, n, INFERENCE_ROWS):
            stop = start + INFERENCE_ROWS
            if stop <= n:
                rows = slice(start, stop)
            else:
                rows = torch.arange(start, stop, device=present.device).clamp_(max=n - 1)
            chunk = {name: {key: value[rows] for key, value in block.items()} for name, block in blocks.items()}
            outputs.append(self._forward(chunk)[: n - start])
        return torch.cat(outputs)


class CrossAttentionFusion(FixedShapeInference):
    """Bidirectional cross-attention (Zhang et al., 2026, Fig. 1d) and an MLP head.

    For modalities ``a`` and ``b`` (in this order),
    :math:`h_{fused} = [h_a, A_{a \\leftarrow b}, h_b, A_{b \\leftarrow a}]`, each direction
    with its own :math:`W_Q, W_K, W_V`.

    Parameters
    ----------
    specs : sequence of two ModalitySpec
    n_tokens, width, n_heads : int
        See :class:`Tokenizer` and :class:`AttentionDirection`.
    hidden_dims : sequence of int
    n_outputs : int
    dropout : float
    learn_missing : bool
    """

    def __init__(self, specs, n_tokens, width, n_heads, hidden_dims, n_outputs, dropout, learn_missing=False):
        super().__init__()
        self.names = [spec.name for spec in specs]
        self.tokenizers = nn.ModuleDict(
            {s.name: Tokenizer(s.kind, s.dim, n_tokens, width, learn_missing) for s in specs}
        )
        self.directions = nn.ModuleDict({name: AttentionDirection(width, n_heads) for name in self.names})
        self.head = mlp(4 * width, hidden_dims, n_outputs, dropout)

    def fuse(self, blocks, need_weights=False):
        """``h_fused`` and ``{"a<-b": weights, "b<-a": weights}`` (``None`` without ``need_weights``)."""
        a, b = self.names
        tokens = {name: self.tokenizers[name](blocks[name]) for name in self.names}
        parts, weights = [], {}
        for query, key in ((a, b), (b, a)):
            attended, weights[f"{query}<-{key}"] = self.directions[query](
                *tokens[query], *tokens[key], need_weights=need_weights
            )
            parts += [masked_mean(*tokens[query]), attended]
        return torch.cat(parts, dim=1), weights if need_weights else None

    def _forward(self, blocks):
        return self.head(self.fuse(blocks)[0])


class CoAttentionFusion(FixedShapeInference):
    """Co-attention (Zhang et al., 2026, Fig. 1c) guided by one modality, and an MLP head.

    The guide's tokens give the queries; the tokens of every other modality, side by side,
    give the keys and values: :math:`h_{fused} = [h_{guide}, A_{guide \\leftarrow others}]`.

    Parameters
    ----------
    specs : sequence of ModalitySpec
    guide : str
        Name of the guiding modality (one of ``specs``).
    n_tokens, width, n_heads : int
        See :class:`Tokenizer` and :class:`AttentionDirection`.
    hidden_dims : sequence of int
    n_outputs : int
    dropout : float
    learn_missing : bool
    """

    def __init__(self, specs, guide, n_tokens, width, n_heads, hidden_dims, n_outputs, dropout, learn_missing=False):
        super().__init__()
        self.guide = guide
        self.others = [spec.name for spec in specs if spec.name != guide]
        self.tokenizers = nn.ModuleDict(
            {s.name: Tokenizer(s.kind, s.dim, n_tokens, width, learn_missing) for s in specs}
        )
        self.direction = AttentionDirection(width, n_heads)
        self.head = mlp(2 * width, hidden_dims, n_outputs, dropout)

    def fuse(self, blocks, need_weights=False):
        """``h_fused`` and ``{"guide<-other": weights}`` split by key modality (``None`` without ``need_weights``)."""
        query, query_mask = self.tokenizers[self.guide](blocks[self.guide])
        keys = [self.tokenizers[name](blocks[name]) for name in self.others]
        attended, weights = self.direction(
            query,
            query_mask,
            torch.cat([k for k, _ in keys], dim=1),
            torch.cat([m for _, m in keys], dim=1),
            need_weights=need_weights,
        )
        fused = torch.cat([masked_mean(query, query_mask), attended], dim=1)
        if not need_weights:
            return fused, None
        split = weights.split([k.shape[1] for k, _ in keys], dim=-1)
        return fused, {f"{self.guide}<-{name}": w for name, w in zip(self.others, split)}

    def _forward(self, blocks):
        return self.head(self.fuse(blocks)[0])
