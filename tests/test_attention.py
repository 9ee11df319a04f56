"""Cross- and co-attention fusion: the paper's equations, tokens and masks, estimator contracts."""

import pickle
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_batch_invariant, assert_float32_close, skip_float32_batch_check
from _sample_weight_checks import WEIGHTS_ARE_NOT_ROWS
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from sksurv.util import Surv

from skfusion._data import ModalitySpec
from skfusion.fusion.attention import (
    CoAttentionClassifier,
    CoAttentionSurvival,
    CrossAttentionClassifier,
    CrossAttentionSurvival,
)
from skfusion.modules.attention import (
    AttentionDirection,
    CoAttentionFusion,
    CrossAttentionFusion,
    Tokenizer,
    chunk_index,
)

# The attention network alone, trained for a fixed number of epochs: these tests are about its mechanics.
TINY = {
    "attention_dim": 8, "n_tokens": 4, "max_epochs": 15, "lr": 0.02, "batch_size": 256, "early_stopping": False,
    "linear_path": False,
    "random_state": 0,
}

# --- slow transcriptions of the formulas (numpy, float64, loops over rows) -------------------


def np_(t):
    return t.detach().numpy().astype(np.float64)


def slow_vector_tokens(x, tokenizer, dim, n_tokens):
    """Chunk ``x`` (n, dim) like numpy.array_split; chunk c becomes W_c x_c + b_c."""
    chunks = np.array_split(np.arange(dim), min(n_tokens, dim))
    w, b = np_(tokenizer.proj.weight), np_(tokenizer.proj.bias)
    out = np.zeros((len(x), len(chunks), w.shape[2]))
    for i in range(len(x)):
        for c, cols in enumerate(chunks):
            out[i, c] = x[i, cols] @ w[c, : len(cols)] + b[c]
    return out


def slow_sequence_tokens(x, tokenizer):
    w, b = np_(tokenizer.proj.weight), np_(tokenizer.proj.bias)
    return np.einsum("ntd,kd->ntk", x, w) + b


def slow_masked_mean(z, mask):
    return np.array([z[i][mask[i]].mean(axis=0) for i in range(len(z))])


def slow_attention(zq, mq, zk, mk, direction, n_heads):
    """softmax(Q K^T / sqrt(d_k)) V per row and head over the real keys; masked mean over queries."""
    wq, wk, wv = np_(direction.w_q.weight), np_(direction.w_k.weight), np_(direction.w_v.weight)
    n, tq, d = zq.shape
    dk = d // n_heads
    pooled = np.zeros((n, d))
    weights = np.zeros((n, n_heads, tq, zk.shape[1]))
    for i in range(n):
        keys = np.flatnonzero(mk[i])
        queries = np.flatnonzero(mq[i])
        for h in range(n_heads):
            cols = slice(h * dk, (h + 1) * dk)
            outputs = []
            for s in queries:
                q = wq[cols] @ zq[i, s]
                scores = np.array([q @ (wk[cols] @ zk[i, t]) / np.sqrt(dk) for t in keys])
                e = np.exp(scores - scores.max())
                a = e / e.sum()
                weights[i, h, s, keys] = a
                outputs.append(sum(a_t * (wv[cols] @ zk[i, t]) for a_t, t in zip(a, keys)))
            pooled[i, cols] = np.mean(outputs, axis=0)
    return pooled, weights


# --- data -----------------------------------------------------------------------------------


def random_blocks(n=4, dim_vec=10, dim_seq=3, max_t=5, seed=0, dtype=torch.float64):
    """A vector block ``v`` and a sequence block ``s`` with lengths 1..max_t (padded, masked)."""
    rng = np.random.default_rng(seed)
    lengths = np.array([1, max_t, 2, 3][:n])
    seq = np.zeros((n, max_t, dim_seq))
    for i, t in enumerate(lengths):
        seq[i, :t] = rng.normal(size=(t, dim_seq))
    mask = np.arange(max_t)[None, :] < lengths[:, None]
    vec = rng.normal(size=(n, dim_vec))
    present = torch.ones(n, dtype=torch.bool)
    blocks = {
        "v": {"x": torch.tensor(vec, dtype=dtype), "present": present},
        "s": {"x": torch.tensor(seq, dtype=dtype), "present": present, "mask": torch.tensor(mask)},
    }
    specs = [ModalitySpec("v", "vector", (), dim_vec), ModalitySpec("s", "sequence", ("s",), dim_seq)]
    return blocks, specs, vec, seq, mask


def token_frame(n=120, seed=0):
    """An ``img`` column of (T_i, 4) slice embeddings (T_i from 2 to 6), an ``ehr__0..5`` block.

    The risk depends on the mean of the first slice feature and on two EHR features.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, size=n)
    img = [rng.normal(size=(t, 4)).astype(np.float32) for t in lengths]
    ehr = rng.normal(size=(n, 6)).astype(np.float32)
    eta = 1.5 * np.array([s[:, 0].mean() for s in img]) + ehr[:, 0] - ehr[:, 1]
    time = rng.exponential(np.exp(-eta))
    X = pd.DataFrame({f"ehr__{j}": ehr[:, j] for j in range(6)})
    X["img"] = pd.Series(img, dtype=object)
    return X, Surv.from_arrays(rng.random(n) < 0.8, time), (eta > 0).astype(int)


@pytest.fixture(scope="module")
def tokens_data():
    return token_frame()


# --- reference tests of the equations -------------------------------------------------------


def test_chunk_index_by_hand():
    # 10 features in 4 chunks: array_split gives widths 3, 3, 2, 2; 10 marks zero padding.
    expected = [[0, 1, 2], [3, 4, 5], [6, 7, 10], [8, 9, 10]]
    assert chunk_index(10, 4).tolist() == expected
    assert chunk_index(3, 8).tolist() == [[0], [1], [2]]


@pytest.mark.parametrize("dim, n_tokens", [(10, 4), (12, 4), (3, 8), (7, 1)])
def test_vector_tokens_reference(dim, n_tokens):
    torch.manual_seed(0)
    tokenizer = Tokenizer("vector", dim, n_tokens, 5).double()
    x = np.random.default_rng(1).normal(size=(3, dim))
    present = torch.tensor([True, True, False])
    tokens, mask = tokenizer({"x": torch.tensor(x), "present": present})
    np.testing.assert_allclose(np_(tokens), slow_vector_tokens(x, tokenizer, dim, n_tokens), rtol=1e-12, atol=1e-12)
    assert mask.tolist() == [[True] * min(dim, n_tokens)] * 2 + [[False] * min(dim, n_tokens)]


def test_sequence_tokens_reference():
    torch.manual_seed(0)
    blocks, _, _, seq, mask = random_blocks()
    tokenizer = Tokenizer("sequence", 3, 8, 5).double()
    tokens, out_mask = tokenizer(blocks["s"])
    np.testing.assert_allclose(np_(tokens), slow_sequence_tokens(seq, tokenizer), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


@pytest.mark.parametrize("n_heads", [1, 2])
def test_attention_direction_reference(n_heads):
    rng = np.random.default_rng(0)
    zq, zk = rng.normal(size=(4, 3, 6)), rng.normal(size=(4, 5, 6))
    mq = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=bool)
    mk = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=bool)
    torch.manual_seed(0)
    direction = AttentionDirection(6, n_heads).double()
    inputs = torch.tensor(zq), torch.tensor(mq), torch.tensor(zk), torch.tensor(mk)
    pooled, weights = direction(*inputs, need_weights=True)
    expected_pooled, expected_weights = slow_attention(zq, mq, zk, mk, direction, n_heads)
    np.testing.assert_allclose(np_(pooled), expected_pooled, rtol=1e-12, atol=1e-12)
    # The scaled_dot_product_attention path, without weights, gives the same output.
    np.testing.assert_allclose(np_(direction(*inputs)[0]), expected_pooled, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np_(weights), expected_weights, rtol=1e-12, atol=1e-12)
    # Padded keys and padded queries get exactly zero weight.
    assert np.all(np_(weights)[~np.broadcast_to(mk[:, None, None, :], weights.shape)] == 0.0)
    assert np.all(np_(weights)[~np.broadcast_to(mq[:, None, :, None], weights.shape)] == 0.0)


def test_row_without_keys_gets_zero_weights_not_nan(monkeypatch):
    # Some torch versions' SDPA kernels give NaN for a query that sees no key: the mask the
    # module passes must leave every row at least one key, whatever this version does.
    sdpa, masks = torch.nn.functional.scaled_dot_product_attention, []

    def spy(*args, attn_mask, **kwargs):
        masks.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    direction = AttentionDirection(4, 1)
    zq, zk = torch.randn(2, 2, 4), torch.randn(2, 3, 4)
    mk = torch.tensor([[True, True, False], [False, False, False]])
    pooled, weights = direction(zq, torch.ones(2, 2, dtype=torch.bool), zk, mk, need_weights=True)
    assert torch.isfinite(pooled).all() and torch.all(weights[1] == 0) and torch.all(pooled[1] == 0)
    zk.requires_grad_(True)
    pooled, weights = direction(zq, torch.ones(2, 2, dtype=torch.bool), zk, mk)
    assert weights is None and torch.isfinite(pooled).all() and torch.all(pooled[1] == 0)
    assert len(masks) == 1 and masks[0].any(dim=-1).all()
    pooled.sum().backward()
    assert torch.isfinite(zk.grad).all() and torch.all(zk.grad[1] == 0)


def padded_tokens(n_heads, seed=0):
    """Float32 queries and keys of width 8 with padded keys, padded queries and rows without keys."""
    generator = torch.Generator().manual_seed(seed)
    zq, zk = torch.randn(6, 4, 8, generator=generator), torch.randn(6, 5, 8, generator=generator)
    mq = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]])
    mk = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [0] * 5])
    torch.manual_seed(seed)
    return AttentionDirection(8, n_heads), (zq, mq.bool(), zk, mk.bool())


def pooled_and_gradients(direction, inputs, need_weights):
    """Output and the gradients of a fixed projection of it for the inputs and every parameter."""
    zq, mq, zk, mk = inputs
    zq, zk = zq.clone().requires_grad_(True), zk.clone().requires_grad_(True)
    direction.zero_grad()
    pooled, _ = direction(zq, mq, zk, mk, need_weights=need_weights)
    projection = torch.linspace(-1, 1, pooled.numel()).view_as(pooled)
    (pooled * projection).sum().backward()
    return pooled.detach(), [zq.grad, zk.grad] + [p.grad.clone() for p in direction.parameters()]


@pytest.mark.parametrize("n_heads", [1, 2, 4])
def test_sdpa_path_equals_explicit_path(n_heads):
    direction, inputs = padded_tokens(n_heads)
    pooled, grads = pooled_and_gradients(direction, inputs, need_weights=False)
    expected, expected_grads = pooled_and_gradients(direction, inputs, need_weights=True)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)
    # Rows without keys (2 and 5) and without queries (4) give a zero output on both paths.
    assert torch.all(pooled[[2, 4, 5]] == 0)


def test_forward_uses_sdpa_and_only_the_weights_use_the_explicit_path(monkeypatch):
    blocks, specs, _, _, _ = random_blocks(dtype=torch.float32)
    torch.manual_seed(0)
    module = CrossAttentionFusion(specs, n_tokens=4, width=6, n_heads=2, hidden_dims=(5,), n_outputs=1, dropout=0.0)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    out = module(**blocks)
    assert len(calls) == 2 and module.fuse(blocks)[1] is None
    calls.clear()
    fused, weights = module.fuse(blocks, need_weights=True)
    assert calls == [] and sorted(weights) == ["s<-v", "v<-s"]
    torch.testing.assert_close(module.head(fused), out, rtol=0, atol=1e-6)


def test_cross_attention_fusion_reference():
    blocks, specs, vec, seq, mask = random_blocks()
    torch.manual_seed(0)
    module = CrossAttentionFusion(specs, n_tokens=4, width=6, n_heads=2, hidden_dims=(5,), n_outputs=1, dropout=0.0)
    module.double()
    fused, weights = module.fuse(blocks, need_weights=True)
    np.testing.assert_allclose(np_(module.fuse(blocks)[0]), np_(fused), rtol=1e-12, atol=1e-12)

    z_v = slow_vector_tokens(vec, module.tokenizers["v"], 10, 4)
    m_v = np.ones(z_v.shape[:2], dtype=bool)
    z_s = slow_sequence_tokens(seq, module.tokenizers["s"])
    a_vs, w_vs = slow_attention(z_v, m_v, z_s, mask, module.directions["v"], 2)
    a_sv, w_sv = slow_attention(z_s, mask, z_v, m_v, module.directions["s"], 2)
    # h_fused = concat(h_v, A_{v<-s}, h_s, A_{s<-v}), paper 000, section 2.2.
    expected = np.hstack([slow_masked_mean(z_v, m_v), a_vs, slow_masked_mean(z_s, mask), a_sv])
    np.testing.assert_allclose(np_(fused), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np_(weights["v<-s"]), w_vs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np_(weights["s<-v"]), w_sv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("guide", ["v", "s"])
def test_co_attention_fusion_reference(guide):
    blocks, specs, vec, seq, mask = random_blocks()
    torch.manual_seed(0)
    module = CoAttentionFusion(specs, guide, n_tokens=4, width=6, n_heads=1, hidden_dims=(5,), n_outputs=1, dropout=0.0)
    module.double()
    fused, weights = module.fuse(blocks, need_weights=True)
    np.testing.assert_allclose(np_(module.fuse(blocks)[0]), np_(fused), rtol=1e-12, atol=1e-12)

    z_v = slow_vector_tokens(vec, module.tokenizers["v"], 10, 4)
    m_v = np.ones(z_v.shape[:2], dtype=bool)
    z_s = slow_sequence_tokens(seq, module.tokenizers["s"])
    tokens = {"v": (z_v, m_v), "s": (z_s, mask)}
    other = "s" if guide == "v" else "v"
    attended, w = slow_attention(*tokens[guide], *tokens[other], module.direction, 1)
    # h_fused = concat(h_guide, softmax(Q_guide K_other^T / sqrt(d_k)) V_other).
    expected = np.hstack([slow_masked_mean(*tokens[guide]), attended])
    np.testing.assert_allclose(np_(fused), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np_(weights[f"{guide}<-{other}"]), w, rtol=1e-12, atol=1e-12)


def test_co_attention_over_several_key_modalities():
    blocks, specs, vec, seq, mask = random_blocks()
    rng = np.random.default_rng(5)
    extra = rng.normal(size=(4, 6))
    blocks["u"] = {"x": torch.tensor(extra), "present": torch.ones(4, dtype=torch.bool)}
    specs = specs + [ModalitySpec("u", "vector", (), 6)]
    torch.manual_seed(0)
    module = CoAttentionFusion(specs, "s", n_tokens=3, width=6, n_heads=1, hidden_dims=(), n_outputs=1, dropout=0.0)
    module.double()
    fused, weights = module.fuse(blocks, need_weights=True)
    np.testing.assert_allclose(np_(module.fuse(blocks)[0]), np_(fused), rtol=1e-12, atol=1e-12)

    z_v = slow_vector_tokens(vec, module.tokenizers["v"], 10, 3)
    z_u = slow_vector_tokens(extra, module.tokenizers["u"], 6, 3)
    z_s = slow_sequence_tokens(seq, module.tokenizers["s"])
    keys = np.concatenate([z_v, z_u], axis=1)
    attended, w = slow_attention(z_s, mask, keys, np.ones(keys.shape[:2], dtype=bool), module.direction, 1)
    np.testing.assert_allclose(np_(fused), np.hstack([slow_masked_mean(z_s, mask), attended]), rtol=1e-12)
    np.testing.assert_allclose(np_(weights["s<-v"]), w[..., :3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np_(weights["s<-u"]), w[..., 3:], rtol=1e-12, atol=1e-12)


def test_missing_modality_becomes_one_learnable_token():
    blocks, specs, _, _, _ = random_blocks(dtype=torch.float32)
    blocks["s"]["present"] = torch.tensor([True, False, True, True])
    blocks["s"]["mask"] = blocks["s"]["mask"] & blocks["s"]["present"][:, None]
    blocks["s"]["x"] = blocks["s"]["x"] * blocks["s"]["present"][:, None, None]
    tokenizer = Tokenizer("sequence", 3, 8, 5, learn_missing=True)
    with torch.no_grad():
        tokenizer.missing.copy_(torch.arange(5.0))
    tokens, mask = tokenizer(blocks["s"])
    assert mask[1].tolist() == [True, False, False, False, False]
    assert tokens[1, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    np.testing.assert_array_equal(mask[[0, 2, 3]].numpy(), blocks["s"]["mask"][[0, 2, 3]].numpy())


# --- estimators -----------------------------------------------------------------------------


@pytest.mark.parametrize("Model", [CrossAttentionSurvival, CoAttentionSurvival])
def test_attention_weights_are_non_trivial_and_masked(Model, tokens_data):
    X, y, _ = tokens_data
    model = Model(**TINY).fit(X, y)
    weights = model.attention_weights(X.iloc[:10])
    lengths = np.array([len(s) for s in X["img"].iloc[:10]])
    real_img = np.arange(lengths.max())[None, :] < lengths[:, None]
    for name, w in weights.items():
        query, key = name.split("<-")
        real_q = real_img if query == "img" else np.ones(w.shape[:1] + w.shape[2:3], dtype=bool)
        real_k = real_img if key == "img" else np.ones(w.shape[:1] + w.shape[3:4], dtype=bool)
        real = real_q[:, None, :, None] & real_k[:, None, None, :]
        assert np.all(w[~real] == 0.0), name
        sums = w.sum(axis=-1)
        np.testing.assert_allclose(sums[np.broadcast_to(real_q[:, None, :], sums.shape)], 1.0, rtol=1e-6)
        for i in range(len(w)):
            row = w[i, 0][real_q[i]][:, real_k[i]]
            assert row.std(axis=1).max() > 1e-4, f"{name}: row {i} has uniform weights"
            assert row.max() < 0.999, f"{name}: row {i} is one-hot"


@pytest.mark.float32_batch
def test_prediction_of_a_row_does_not_depend_on_its_batch(tokens_data):
    X, y, _ = tokens_data
    model = CrossAttentionSurvival(**TINY).fit(X, y)
    full = model.predict(X)
    # The shortest rows alone are padded to their own length, not the batch's longest.
    short = np.flatnonzero(X["img"].map(len).to_numpy() == 2)
    assert_float32_close(model.predict(X.iloc[short]), full[short])


@pytest.mark.parametrize("Model", [CrossAttentionSurvival, CoAttentionSurvival])
def test_survival_contract(Model, tokens_data):
    X, y, _ = tokens_data
    model = Model(**TINY).fit(X, y)
    risk = model.predict(X)
    assert risk.shape == (len(X),) and model.score(X, y) > 0.65
    surv = model.predict_survival_function(X.iloc[:5], return_array=True)
    assert surv.shape == (5, len(model.unique_times_))
    assert np.all((surv >= 0) & (surv <= 1)) and np.all(np.diff(surv, axis=1) <= 1e-12)
    functions = model.predict_survival_function(X.iloc[:5])
    np.testing.assert_allclose(np.vstack([f(model.unique_times_) for f in functions]), surv)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), risk)
    np.testing.assert_array_equal(clone(model).fit(X, y).predict(X), risk)


@pytest.mark.parametrize(
    "Model, grid", [(CrossAttentionSurvival, {"n_heads": [1, 2]}), (CoAttentionSurvival, {"guide": ["img", "ehr"]})]
)
def test_model_selection(Model, grid, tokens_data):
    X, y, _ = tokens_data
    cv = KFold(3, shuffle=True, random_state=0)
    params = {**TINY, "max_epochs": 10}
    assert cross_val_score(Model(**params), X, y, cv=cv).mean() > 0.6
    search = GridSearchCV(Model(**params), grid, cv=cv).fit(X, y)
    assert search.best_params_[next(iter(grid))] in next(iter(grid.values()))
    assert search.best_estimator_.score(X, y) > 0.65


def test_guide_sets_the_query_modality(tokens_data):
    X, y, _ = tokens_data
    for guide, expected in [("img", "img<-ehr"), ("ehr", "ehr<-img")]:
        model = CoAttentionSurvival(guide=guide, **{**TINY, "max_epochs": 1}).fit(X, y)
        assert list(model.attention_weights(X.iloc[:2])) == [expected]


def test_missing_learn_fits_rows_without_a_modality(tokens_data):
    X, y, labels = tokens_data
    X = X.copy()
    X.loc[X.index[:10], "img"] = None
    X.loc[X.index[10:20], [f"ehr__{j}" for j in range(6)]] = np.nan
    with pytest.raises(ValueError, match=r"modality 'ehr' is missing .* rows \[10, 11"):
        CrossAttentionClassifier(**TINY).fit(X, labels)
    model = CrossAttentionClassifier(missing="learn", **TINY).fit(X, labels)
    assert model.score(X, labels) > 0.8  # 0.94 measured; the majority class is 0.55
    weights = model.attention_weights(X.iloc[:12])["ehr<-img"]
    # A row without the image attends to its one learnable token.
    np.testing.assert_allclose(weights[:10, :, :, 0], 1.0)
    assert np.all(weights[:10, :, :, 1:] == 0.0)


# --- bad input ------------------------------------------------------------------------------


def test_cross_attention_needs_exactly_two_modalities(tokens_data):
    X, y, _ = tokens_data
    X3 = X.assign(clin__0=1.0)
    with pytest.raises(ValueError, match=r"exactly 2 modalities; X has \['ehr', 'img', 'clin'\]"):
        CrossAttentionSurvival(**TINY).fit(X3, y)
    model = CrossAttentionSurvival(modalities=["img", "clin"], **{**TINY, "max_epochs": 1}).fit(X3, y)
    assert [spec.name for spec in model.layout_] == ["img", "clin"]
    with pytest.raises(ValueError, match=r"X has only \['ehr'\] \(6 feature\(s\)\)"):
        CrossAttentionSurvival(**TINY).fit(X.drop(columns="img"), y)


def test_unknown_guide_names_the_modalities(tokens_data):
    X, y, _ = tokens_data
    with pytest.raises(ValueError, match=r"guide='ct' is not a modality of X; the modalities are \['ehr', 'img'\]"):
        CoAttentionSurvival(guide="ct", **TINY).fit(X, y)


def test_heads_must_divide_attention_dim(tokens_data):
    X, y, _ = tokens_data
    with pytest.raises(ValueError, match="attention_dim=8 must be a multiple of n_heads=3"):
        CrossAttentionSurvival(n_heads=3, **TINY).fit(X, y)


# --- scikit-learn's checks ------------------------------------------------------------------

FAST_CLF = {"attention_dim": 8, "n_tokens": 4, "max_epochs": 10, "lr": 0.05, "random_state": 0}

CHECKED = [CrossAttentionClassifier(**FAST_CLF), CoAttentionClassifier(**FAST_CLF)]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: WEIGHTS_ARE_NOT_ROWS)
def test_sklearn_compatible(estimator, check):
    # float32 products over (rows x tokens) round a row by the batch size on some CPUs
    skip_float32_batch_check(check, ["check_methods_subset_invariance"])
    check(estimator)


# --- the guide ------------------------------------------------------------------------------


@contextmanager
def no_warning_but_convergence():
    """Any warning is an error, but the ConvergenceWarning of the one-epoch fits here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.mark.parametrize("Model", [CoAttentionSurvival, CoAttentionClassifier])
def test_auto_guide_is_the_image_else_the_widest_modality(tokens_data, Model):
    X, y, _ = tokens_data
    if Model is CoAttentionClassifier:
        y = y["event"].astype(int)
    settings = {**TINY, "max_epochs": 1}
    ehr = [c for c in X.columns if c.startswith("ehr__")]
    with no_warning_but_convergence():
        # "img" (4 features per token) guides over the wider "ehr" (6), whatever the column order.
        model = Model(**settings).fit(X, y)
        assert Model(**settings).fit(X[["img", *ehr]], y).guide_ == "img"
        assert Model(modalities=["ehr", "img"], **settings).fit(X, y).guide_ == "img"
        # Without an image name, the widest modality guides.
        assert Model(**settings).fit(X.rename(columns={"img": "slices"}), y).guide_ == "ehr"
        explicit = Model(guide="ehr", **settings).fit(X, y)
    assert model.guide_ == "img" and explicit.guide_ == "ehr"
    # The recorded guide is the one the network uses: its weights are keyed query<-key.
    assert list(model.attention_weights(X.iloc[:3])) == ["img<-ehr"]
    assert list(explicit.attention_weights(X.iloc[:3])) == ["ehr<-img"]


@pytest.mark.parametrize("name", ["img", "CT", "chest_ct", "cxr-embedding", "Image", "mri_t1", "pet"])
def test_auto_guide_reads_image_names(tokens_data, name):
    X, y, _ = tokens_data
    X = X.rename(columns={"img": name})
    with no_warning_but_convergence():
        assert CoAttentionSurvival(**{**TINY, "max_epochs": 1}).fit(X, y).guide_ == name


@pytest.mark.parametrize("Model", [CoAttentionSurvival, CoAttentionClassifier])
def test_auto_guide_warns_only_on_a_tie(tokens_data, Model):
    X, y, _ = tokens_data
    if Model is CoAttentionClassifier:
        y = y["event"].astype(int)
    settings = {**TINY, "max_epochs": 1}
    tied = X[[f"ehr__{j}" for j in range(6)]].set_axis([f"{m}__{j}" for m in ("lab", "act") for j in range(3)], axis=1)
    message = r"found 2 modalities, none of them named as an image, of the same width \(3\): \['lab', 'act'\]"
    with pytest.warns(UserWarning, match=r"guide='auto' " + message + r"; the first in column order, 'lab', guides"):
        assert Model(**settings).fit(tied, y).guide_ == "lab"
    with pytest.warns(UserWarning, match="the first in column order, 'act', guides"):
        assert Model(**settings).fit(tied.iloc[:, ::-1], y).guide_ == "act"
    images = tied.set_axis([f"{m}__{j}" for m in ("ct", "cxr") for j in range(3)], axis=1)
    with pytest.warns(UserWarning, match=r"found 2 image modalities of the same width \(3\): \['ct', 'cxr'\]"):
        assert Model(**settings).fit(images, y).guide_ == "ct"
    with no_warning_but_convergence():
        assert Model(guide="act", **settings).fit(tied, y).guide_ == "act"
        # Of two image modalities, the wider guides; the non-image one is not a candidate.
        wider = pd.concat([images, X[["ehr__0", "ehr__1"]].set_axis(["ct__3", "ct__4"], axis=1), X[["img"]]], axis=1)
        wider = wider.rename(columns={"img": "notes"})
        assert Model(**settings).fit(wider, y).guide_ == "ct"


@pytest.mark.parametrize("estimator", CHECKED, ids=lambda e: type(e).__name__)
@pytest.mark.float32_batch
def test_row_outputs_do_not_depend_on_the_batch(estimator):
    assert_batch_invariant(estimator)
