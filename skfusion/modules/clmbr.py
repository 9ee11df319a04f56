"""The CLMBR transformer in plain torch, laid out as femr 0.2.2/0.2.3 saves it.

CLMBR (Steinberg et al. 2021) is a causal transformer over a patient's coded events, trained
to predict the next code. CLMBR-T-base (Wornow et al. 2023), the EHR encoder of Zhang et al. (2026)
(section 2.1), was released as a femr ``FEMRModel`` checkpoint; this module rebuilds that
network so the released ``model.safetensors`` loads key for key:

- ``transformer.embed.weight`` (or ``transformer.embed_bag.weight`` for a hierarchical
  vocabulary, where a token is a weighted sum of the embeddings of a code and its ancestors),
  then ``transformer.in_norm``;
- ``n_layers`` pre-norm blocks ``transformer.layers.{i}``: an RMSNorm (``norm.weight``); one
  ``input_proj`` giving ``[feed-forward | q | k | v]``; local causal attention (a token sees
  itself and the ``attention_width - 1`` tokens before it) with rotary embeddings whose
  positions are the patient's ages in days; GELU or SwiGLU feed-forward; one ``output_proj``
  of ``[attention | feed-forward]`` added to the residual stream; with ``use_normed_ages``
  the last two features after each block's norm are replaced by the normalised age and its
  square;
- ``transformer.out_norm``; the representation of a patient at a time is this output at the
  last token at or before it;
- ``task_model.final_layer``: the next-code head over the first ``clmbr_vocab_size`` tokens.

:class:`NextCodePretraining` (the network fed batches of padded token sequences) and
:class:`NextCodeLoss` (the criterion) pretrain it with the next-code objective through the
training engine (:func:`skfusion._engine.make_net`).

Checkpoints of femr 0.2.0/0.2.1 (RMSNorm parameter ``scale``, another norm) and of femr
0.2.4 (recurrent blocks on even layers) are a different network: :func:`load_femr_checkpoint`
refuses them by naming the keys that do not fit.

References
----------
.. [1] Steinberg E, Jung K, Fries JA, Corbin CK, Pfohl SR, Shah NH. Language models are an
   effective representation learning technique for electronic health record data. J Biomed
   Inform 113 (2021).
.. [2] Wornow M, Thapa R, Steinberg E, Fries JA, Shah NH. EHRSHOT: An EHR benchmark for
   few-shot evaluation of foundation models. NeurIPS Datasets and Benchmarks (2023).
"""

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# femr's FEMRTransformerConfig defaults: config.json only records the values that differ.
FEMR_TRANSFORMER_DEFAULTS = {
    "vocab_size": 32768,
    "is_hierarchical": False,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "n_heads": 12,
    "n_layers": 6,
    "attention_width": 496,
    "use_normed_ages": False,
    "use_bias": True,
    "hidden_act": "gelu",
}
HIDDEN_ACTS = ("gelu", "swiglu")
CONFIG_FILE, DICTIONARY_FILE, WEIGHTS_FILE = "config.json", "dictionary.msgpack", "model.safetensors"


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain ``weight`` (eps inside the square root)."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        # Half-precision inputs are normed in float32, as femr does; float64 stays float64.
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotary_sin_cos(ages, head_dim):
    """Sine and cosine tables of the rotary embedding at ``ages`` (days), shape ``(..., T, 1, d)``.

    Frequencies are ``10000 ** -linspace(0, 2, d / 2)`` (femr's choice, twice the usual
    range), each repeated for the two features of a rotated pair.
    """
    inv_freq = 10000.0 ** -torch.linspace(0, 2, head_dim // 2, dtype=ages.dtype, device=ages.device)
    angles = ages.unsqueeze(-1) * inv_freq
    sin = angles.sin().repeat_interleave(2, dim=-1).unsqueeze(-2)
    cos = angles.cos().repeat_interleave(2, dim=-1).unsqueeze(-2)
    return sin, cos


def rotate_pairs(x):
    """Map each feature pair ``(x0, x1)`` to ``(-x1, x0)``."""
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def apply_rotary(x, sin, cos):
    """Rotate the feature pairs of ``x`` (``(..., T, heads, d)``) by the age angles."""
    return x * cos.to(x.dtype) + rotate_pairs(x) * sin.to(x.dtype)


def local_causal_mask(length, width, device=None):
    """``(T, T)`` boolean mask: query ``i`` sees keys ``j`` with ``i - width < j <= i``."""
    i = torch.arange(length, device=device)
    offset = i[:, None] - i[None, :]
    return (offset >= 0) & (offset < width)


class CLMBRLayer(nn.Module):
    """One pre-norm block: shared input projection, local rotary attention, feed-forward."""

    def __init__(self, config):
        super().__init__()
        self.hidden_size = config["hidden_size"]
        self.n_heads = config["n_heads"]
        self.hidden_act = config["hidden_act"]
        self.use_normed_ages = config["use_normed_ages"]
        ff_size = config["intermediate_size"] * (2 if self.hidden_act == "swiglu" else 1)
        self.norm = RMSNorm(self.hidden_size)
        self.input_proj = nn.Linear(self.hidden_size, 3 * self.hidden_size + ff_size, bias=config["use_bias"])
        self.output_proj = nn.Linear(
            self.hidden_size + config["intermediate_size"], self.hidden_size, bias=config["use_bias"]
        )

    def forward(self, x, normed_ages, sin, cos, mask):
        h = self.norm(x)
        if self.use_normed_ages:
            # femr squares the float16 age; each feature is cast before stacking, as autocast
            # refuses to stack float16 tensors in a bfloat16 region.
            ages = torch.stack((normed_ages.to(h.dtype), (normed_ages**2).to(h.dtype)), dim=-1)
            h = torch.cat((h[..., :-2], ages), dim=-1)
        projected = self.input_proj(h)
        ff = projected[..., : -3 * self.hidden_size]
        qkv = projected[..., -3 * self.hidden_size :].unflatten(-1, (3, self.n_heads, -1))
        q = apply_rotary(qkv[..., 0, :, :], sin, cos)
        k = apply_rotary(qkv[..., 1, :, :], sin, cos)
        v = qkv[..., 2, :, :]
        attn = F.scaled_dot_product_attention(
            q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2), attn_mask=mask
        )
        attn = attn.transpose(-3, -2).flatten(-2)
        if self.hidden_act == "gelu":
            ff = F.gelu(ff)
        else:
            gate, value = ff.chunk(2, dim=-1)
            ff = F.silu(gate) * value
        return self.output_proj(torch.cat((attn, ff), dim=-1))


class CLMBRTransformer(nn.Module):
    """Embedding, ``n_layers`` blocks and the output norm; inputs are right-padded batches.

    Parameters
    ----------
    config : dict
        femr transformer configuration (see ``FEMR_TRANSFORMER_DEFAULTS`` for the keys).
    """

    def __init__(self, config):
        super().__init__()
        self.config = dict(config)
        hidden = config["hidden_size"]
        self.in_norm = RMSNorm(hidden)
        self.out_norm = RMSNorm(hidden)
        if config["is_hierarchical"]:
            self.embed_bag = nn.EmbeddingBag(config["vocab_size"], hidden, mode="sum", include_last_offset=True)
        else:
            self.embed = nn.Embedding(config["vocab_size"], hidden)
        self.layers = nn.ModuleList(CLMBRLayer(config) for _ in range(config["n_layers"]))

    def embed_tokens(self, tokens, token_weights=None):
        """Token embeddings: ``tokens`` is ``(B, T)``, or ``(B, T, K)`` bags with weights."""
        if not self.config["is_hierarchical"]:
            return self.embed(tokens)
        # A padded (B, T, K) bag with zero weights on its padding is EmbeddingBag(sum).
        return (F.embedding(tokens, self.embed_bag.weight) * token_weights.unsqueeze(-1)).sum(-2)

    def forward(self, tokens, ages, normed_ages, token_weights=None):
        """Hidden states ``(B, T, hidden_size)`` after the output norm.

        Parameters
        ----------
        tokens : LongTensor of shape (B, T) or (B, T, K)
            Token ids, right-padded (padding never reaches a real token: attention is causal).
        ages : Tensor of shape (B, T)
            Age in days at each token (rotary positions).
        normed_ages : Tensor of shape (B, T)
            Age in seconds, standardised with the vocabulary's ``age_stats``.
        token_weights : Tensor of shape (B, T, K), optional
            Weights of the hierarchical bags.
        """
        x = self.in_norm(self.embed_tokens(tokens, token_weights))
        sin, cos = rotary_sin_cos(ages, self.config["hidden_size"] // self.config["n_heads"])
        mask = local_causal_mask(x.shape[-2], self.config["attention_width"], x.device)
        for layer in self.layers:
            x = x + layer(x, normed_ages, sin, cos, mask)
        return self.out_norm(x)


class CLMBRHead(nn.Module):
    """Next-code head: logits over the first ``clmbr_vocab_size`` tokens."""

    def __init__(self, hidden_size, clmbr_vocab_size):
        super().__init__()
        self.final_layer = nn.Linear(hidden_size, clmbr_vocab_size)

    def forward(self, hidden):
        return self.final_layer(hidden)


class CLMBRModel(nn.Module):
    """``FEMRModel`` with a CLMBR head (or none): state-dict keys match femr's checkpoints.

    Parameters
    ----------
    config : dict
        Complete transformer configuration.
    clmbr_vocab_size : int or None
        Size of the next-code head; None builds the encoder alone (femr's
        ``labeled_patients`` task, which has no parameters).
    """

    def __init__(self, config, clmbr_vocab_size=None):
        super().__init__()
        self.transformer = CLMBRTransformer(config)
        self.clmbr_vocab_size = clmbr_vocab_size
        if clmbr_vocab_size is not None:
            self.task_model = CLMBRHead(config["hidden_size"], clmbr_vocab_size)

    def forward(self, tokens, ages, normed_ages, token_weights=None):
        return self.transformer(tokens, ages, normed_ages, token_weights)

    def next_code_losses(self, hidden, tokens, lengths):
        """Per sequence, the summed cross-entropy of predicting token ``t + 1`` from the state at ``t``.

        Positions past a sequence's length (the right padding) carry no loss, and neither do
        targets outside the head's vocabulary, as in femr's CLMBR task.

        Parameters
        ----------
        hidden : Tensor of shape (B, T, hidden_size)
            The transformer's output.
        tokens : LongTensor of shape (B, T)
            The token ids it read, right-padded.
        lengths : LongTensor of shape (B,)
            The true length of each sequence.

        Returns
        -------
        losses : Tensor of shape (B,)
        """
        targets = tokens[:, 1:]
        position = torch.arange(targets.shape[1], device=tokens.device)
        keep = (position[None, :] + 1 < lengths[:, None]) & (targets < self.clmbr_vocab_size)
        losses = F.cross_entropy(self.task_model(hidden[:, :-1][keep]), targets[keep], reduction="none")
        return torch.zeros(keep.shape, dtype=losses.dtype, device=losses.device).masked_scatter(keep, losses).sum(1)


class NextCodePretraining(nn.Module):
    """A :class:`CLMBRModel` fed modality blocks as the training engine batches them: each patient's next-code loss.

    Block ``name`` holds the right-padded flat ``tokens`` (a vocabulary fitted here),
    ``ages``, ``normed_ages`` and ``token_weights`` (None) and the true ``lengths``; the
    output is each patient's summed next-code cross-entropy (:meth:`CLMBRModel.next_code_losses`), which
    :class:`NextCodeLoss` turns into the mean over a batch's tokens.

    Parameters
    ----------
    name : str
        The block of the batch that holds the token sequences.
    model : CLMBRModel
        The network trained, with a next-code head.
    """

    def __init__(self, name, model):
        super().__init__()
        self.name = name
        self.model = model

    def forward(self, **blocks):
        block = blocks[self.name]
        hidden = self.model(block["tokens"], block["ages"], block["normed_ages"], block["token_weights"])
        return self.model.next_code_losses(hidden, block["tokens"], block["lengths"])


class NextCodeLoss(nn.Module):
    """skorch criterion: the mean next-code cross-entropy over the tokens of a batch.

    Every token weighs alike, whichever history it is in (a long history weighs more than
    a short one): the patients' summed losses (:class:`NextCodePretraining`'s output) over
    their numbers of next-code targets.
    """

    def forward(self, summed, n_targets):
        return summed.sum() / n_targets.sum()


def last_states(hidden, lengths):
    """The state at each sequence's last real token; zeros for an empty sequence."""
    index = (lengths - 1).clamp(min=0)
    states = hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
    return torch.where((lengths > 0)[:, None], states, torch.zeros_like(states))


def complete_config(transformer_config, where):
    """femr's defaults filled in; ValueError naming ``where`` for what this module cannot build.

    Keys femr does not read (Hugging Face bookkeeping such as ``model_type``) are ignored.
    """
    config = {key: transformer_config.get(key, default) for key, default in FEMR_TRANSFORMER_DEFAULTS.items()}
    if config["hidden_act"] not in HIDDEN_ACTS:
        raise ValueError(f"{where}: hidden_act {config['hidden_act']!r} is not one of {HIDDEN_ACTS}.")
    if config["hidden_size"] % config["n_heads"] or (config["hidden_size"] // config["n_heads"]) % 2:
        raise ValueError(
            f"{where}: hidden_size {config['hidden_size']} must split into n_heads {config['n_heads']} "
            "heads of even size (rotary pairs)."
        )
    if config["attention_width"] < 1:
        raise ValueError(f"{where}: attention_width must be at least 1.")
    return config


def read_femr_config(path):
    """Transformer configuration and CLMBR head size from a femr ``config.json``."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise ValueError(
            f"{file}: no such file; a CLMBR checkpoint folder holds {CONFIG_FILE}, "
            f"{DICTIONARY_FILE} and {WEIGHTS_FILE}."
        )
    try:
        raw = json.loads(file.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: is not a JSON file ({exc}).") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: holds a JSON {type(raw).__name__}, not an object with 'transformer_config'.")
    if "FEMRModel" not in (raw.get("architectures") or []):
        raise ValueError(f"{file}: architectures {raw.get('architectures')!r} does not name 'FEMRModel'.")
    if not isinstance(raw.get("transformer_config"), dict):
        raise ValueError(f"{file}: has no 'transformer_config' object.")
    config = complete_config(raw["transformer_config"], str(file))
    task = raw.get("task_config") or {}
    task_type = task.get("task_type", "")
    if task_type == "clmbr":
        kwargs = task.get("task_kwargs") or {}
        if "clmbr_vocab_size" not in kwargs:
            raise ValueError(f"{file}: task_config of type 'clmbr' has no task_kwargs.clmbr_vocab_size.")
        return config, int(kwargs["clmbr_vocab_size"])
    if task_type in ("", "labeled_patients"):
        return config, None
    raise ValueError(f"{file}: task_type {task_type!r} is not supported (only 'clmbr' or none).")


def load_femr_checkpoint(path, map_location="cpu"):
    """Build :class:`CLMBRModel` from a femr checkpoint folder and load its weights strictly.

    Parameters
    ----------
    path : str or path-like
        Folder with ``config.json`` and ``model.safetensors``.
    map_location : str or torch.device

    Returns
    -------
    model : CLMBRModel
        In float32 and eval mode.

    Raises
    ------
    ValueError
        If a file is unreadable, or a weight is missing, unused, of the wrong shape or not
        finite, naming the file and every such key.
    """
    config, head = read_femr_config(path)
    with torch.random.fork_rng(devices=[]):
        model = CLMBRModel(config, head)
    file = Path(path) / WEIGHTS_FILE
    if not file.is_file():
        raise ValueError(f"{file}: no such file.")
    state = _read_weights(file, map_location)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unused = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unused or wrong:
        raise ValueError(_mismatch_message(file, missing, unused, wrong, state, expected))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def _read_weights(file, map_location):
    """The tensors of a safetensors file; ValueError naming the file if unreadable or not finite."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(file), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{file}: is not a readable safetensors file (truncated or corrupted?): {exc}") from exc
    # Checked in float32, the dtype the model runs in: a float16 weight is finite in float32 too.
    not_finite = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v.float()).all())
    if not_finite:
        raise ValueError(f"{file}: tensor(s) {not_finite} hold NaN or infinite values.")
    return state


def _mismatch_message(file, missing, unused, wrong, state, expected):
    parts = [f"{file}: the weights do not fit the CLMBR network that config.json describes."]
    if missing:
        parts.append(f"Missing key(s): {missing}.")
    if unused:
        parts.append(f"Unused key(s): {unused}.")
    if wrong:
        shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in wrong]
        parts.append(f"Wrong shape(s): {shapes}.")
    if any(k.endswith(".scale") for k in unused):
        parts.append("'.scale' norms come from femr 0.2.0/0.2.1; the published CLMBR-T-base uses femr 0.2.2/0.2.3.")
    if any("hawk" in k for k in unused):
        parts.append("Recurrent ('hawk') blocks come from femr 0.2.4, a different network.")
    return " ".join(parts)


def save_femr_checkpoint(path, model, dictionary):
    """Write ``model`` and its vocabulary in femr's layout (``config.json``, msgpack, safetensors)."""
    import msgpack
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    task = (
        {"task_type": "clmbr", "task_kwargs": {"clmbr_vocab_size": model.clmbr_vocab_size}}
        if model.clmbr_vocab_size is not None
        else None
    )
    config = {"architectures": ["FEMRModel"], "transformer_config": model.transformer.config, "task_config": task}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (folder / DICTIONARY_FILE).write_bytes(msgpack.packb(dictionary))
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))


def init_clmbr_weights(model, generator):
    """Small normal initialisation of a freshly built model, drawn from ``generator``."""
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            continue
        if param.dim() == 1:
            param.data.zero_()
        else:
            std = 1.0 / math.sqrt(param.shape[-1])
            param.data.normal_(0.0, std, generator=generator)
