"""CLMBREmbedder and the CLMBR transformer: femr's network, checkpoints, tokens, estimator contract."""

import json
import math
import warnings

import msgpack
import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_float32_close
from safetensors.torch import save_file
from sklearn.base import clone
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from skorch.callbacks import Callback

import skfusion.encoders.clmbr as clmbr_encoder
from skfusion.encoders.clmbr import CLMBREmbedder
from skfusion.modules.clmbr import CLMBRModel, NextCodeLoss, NextCodePretraining, complete_config, local_causal_mask

BIRTH = "SNOMED/184099003"


# --------------------------------------------------------------------------------------------
# A direct, slow transcription of femr 0.2.3's FEMRTransformer.forward for one patient
# (RMSNorm, normed-age features, rotary embeddings on ages in days, local causal attention),
# in float64, from a state dict with femr's key names.
# --------------------------------------------------------------------------------------------
def _rmsnorm(x, weight):
    return weight * x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6)


def _rotate(vec, age, head_dim):
    out = vec.clone()
    for m in range(head_dim // 2):
        freq = 10000.0 ** -(2.0 * m / (head_dim // 2 - 1)) if head_dim // 2 > 1 else 1.0
        c, s = math.cos(age * freq), math.sin(age * freq)
        a, b = vec[2 * m].item(), vec[2 * m + 1].item()
        out[2 * m], out[2 * m + 1] = a * c - b * s, b * c + a * s
    return out


def reference_forward(state, config, embedded, ages, normed_ages):
    """Hidden states ``(T, hidden)`` of one patient from its token embeddings ``(T, hidden)``."""
    hidden, heads = config["hidden_size"], config["n_heads"]
    head_dim, width, inter = hidden // heads, config["attention_width"], config["intermediate_size"]
    ff_size = inter * (2 if config["hidden_act"] == "swiglu" else 1)
    x = _rmsnorm(embedded, state["transformer.in_norm.weight"])
    n = x.shape[0]
    for layer in range(config["n_layers"]):
        key = f"transformer.layers.{layer}."
        y = _rmsnorm(x, state[key + "norm.weight"])
        if config["use_normed_ages"]:
            y = y.clone()
            y[:, -2], y[:, -1] = normed_ages, normed_ages**2
        p = y @ state[key + "input_proj.weight"].T
        if config["use_bias"]:
            p = p + state[key + "input_proj.bias"]
        ff, q, k, v = p[:, :ff_size], p[:, ff_size : ff_size + hidden], p[:, -2 * hidden : -hidden], p[:, -hidden:]
        attn = torch.zeros(n, hidden, dtype=x.dtype)
        for h in range(heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            for i in range(n):
                qi = _rotate(q[i, cols], ages[i].item(), head_dim)
                keys = range(max(0, i - width + 1), i + 1)
                scores = torch.stack(
                    [qi @ _rotate(k[j, cols], ages[j].item(), head_dim) / math.sqrt(head_dim) for j in keys]
                )
                weights = torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum()
                attn[i, cols] = sum(w * v[j, cols] for w, j in zip(weights, keys))
        if config["hidden_act"] == "gelu":
            ff = 0.5 * ff * (1 + torch.erf(ff / math.sqrt(2)))
        else:
            gate, value = ff[:, :inter], ff[:, inter:]
            ff = gate / (1 + torch.exp(-gate)) * value
        out = torch.cat((attn, ff), dim=1) @ state[key + "output_proj.weight"].T
        if config["use_bias"]:
            out = out + state[key + "output_proj.bias"]
        x = x + out
    return _rmsnorm(x, state["transformer.out_norm.weight"])


TINY = {
    "vocab_size": 9,
    "hidden_size": 8,
    "intermediate_size": 6,
    "n_heads": 2,
    "n_layers": 2,
    "attention_width": 3,
    "use_normed_ages": True,
    "use_bias": False,
    "hidden_act": "swiglu",
}


def femr_state(config, head=4, seed=0):
    """Random weights under femr's key names and shapes, written out by hand."""
    g = torch.Generator().manual_seed(seed)
    h, inter = config["hidden_size"], config["intermediate_size"]
    ff = inter * (2 if config["hidden_act"] == "swiglu" else 1)
    embed = "transformer.embed_bag.weight" if config.get("is_hierarchical") else "transformer.embed.weight"
    state = {
        embed: torch.randn(config["vocab_size"], h, generator=g),
        "transformer.in_norm.weight": 1 + 0.1 * torch.randn(h, generator=g),
        "transformer.out_norm.weight": 1 + 0.1 * torch.randn(h, generator=g),
        "task_model.final_layer.weight": torch.randn(head, h, generator=g),
        "task_model.final_layer.bias": torch.randn(head, generator=g),
    }
    for i in range(config["n_layers"]):
        key = f"transformer.layers.{i}."
        state[key + "norm.weight"] = 1 + 0.1 * torch.randn(h, generator=g)
        state[key + "input_proj.weight"] = torch.randn(3 * h + ff, h, generator=g) / math.sqrt(h)
        state[key + "output_proj.weight"] = torch.randn(h, h + inter, generator=g) / math.sqrt(h + inter)
        if config["use_bias"]:
            state[key + "input_proj.bias"] = 0.1 * torch.randn(3 * h + ff, generator=g)
            state[key + "output_proj.bias"] = 0.1 * torch.randn(h, generator=g)
    return state


FLAT_VOCAB = [
    {"type": "code", "code_string": BIRTH, "weight": -0.5},
    {"type": "code", "code_string": "Dx/A", "weight": -0.4},
    {"type": "code", "code_string": "Lab/B", "weight": -0.3},
    {"type": "numeric", "code_string": "Lab/B", "val_start": float("-inf"), "val_end": 1.0, "weight": -0.2},
    {"type": "numeric", "code_string": "Lab/B", "val_start": 1.0, "val_end": float("inf"), "weight": -0.2},
    {"type": "text", "code_string": "Note/C", "text_string": "positive", "weight": -0.1},
    {"type": "code", "code_string": "Dx/D", "weight": -0.1},
]
AGE_STATS = {"mean": 40 * 365.25 * 86400.0, "std": 20 * 365.25 * 86400.0}


def write_checkpoint(path, config=TINY, vocab=FLAT_VOCAB, state=None, hierarchical=False):
    """A checkpoint folder in the layout femr's ``save_pretrained`` writes."""
    path.mkdir(parents=True, exist_ok=True)
    transformer_config = {**config, "is_hierarchical": hierarchical, "model_type": ""}
    task_config = {"task_type": "clmbr", "task_kwargs": {"clmbr_vocab_size": 4}, "id2label": {"0": "LABEL_0"}}
    (path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["FEMRModel"],
                "transformer_config": transformer_config,
                "task_config": task_config,
                "torch_dtype": "float32",
            }
        )
    )
    dictionary = {"vocab": vocab, "is_hierarchical": hierarchical, "age_stats": AGE_STATS}
    (path / "dictionary.msgpack").write_bytes(msgpack.packb(dictionary))
    state = femr_state({**config, "is_hierarchical": hierarchical}) if state is None else state
    save_file(state, str(path / "model.safetensors"))
    return state


def patient_frame():
    t = pd.Timestamp
    rows = [
        (t("1950-01-01"), BIRTH, np.nan, None),
        (t("2000-01-01 08:00"), "Dx/A", np.nan, None),
        (t("2000-01-01 09:00"), "Dx/A", np.nan, None),  # same day again: dropped
        (t("2000-01-01 10:00"), "Lab/B", 0.5, None),
        (t("2000-01-01 11:00"), "Lab/B", 2.0, None),
        (t("2000-01-01 12:00"), "Unknown/X", np.nan, None),  # not in the vocabulary: dropped
        (t("2000-01-02 07:00"), "Dx/A", np.nan, None),  # a new day
        (t("2000-01-02 08:00"), "Lab/B", np.nan, None),
        (t("2000-01-02 09:00"), "Note/C", np.nan, "positive"),
        (t("2000-01-02 10:00"), "Note/C", np.nan, "negative"),  # unknown text: dropped
        (t("2000-01-03 06:00"), "Lab/B", 0.7, None),
    ]
    frame = pd.DataFrame(rows, columns=["time", "code", "numeric_value", "text_value"])
    # Shuffled on purpose: the encoder orders events by time.
    return frame.iloc[[3, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10]].reset_index(drop=True)


# The tokens femr makes of patient_frame(), by hand: vocabulary index and event time.
EXPECTED_TOKENS = [
    (0, "1950-01-01"),
    (1, "2000-01-01 08:00"),
    (3, "2000-01-01 10:00"),
    (4, "2000-01-01 11:00"),
    (1, "2000-01-02 07:00"),
    (2, "2000-01-02 08:00"),
    (5, "2000-01-02 09:00"),
    (3, "2000-01-03 06:00"),
]


def expected_inputs(tokens=EXPECTED_TOKENS):
    birth = pd.Timestamp("1950-01-01")
    ids = torch.tensor([i for i, _ in tokens])
    ages = torch.tensor([(pd.Timestamp(t) - birth) / pd.Timedelta(days=1) for _, t in tokens], dtype=torch.float64)
    seconds = ages.numpy() * 86400.0
    normed = (seconds - AGE_STATS["mean"]) / AGE_STATS["std"]
    normed = torch.from_numpy(normed.astype(np.float16).astype(np.float64))
    return ids, ages.float().double(), normed


def small_config(**changes):
    return complete_config({**TINY, **changes}, "test")


def double_model(config, state):
    model = CLMBRModel(config, clmbr_vocab_size=4).double()
    model.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
    return model.eval()


# ----------------------------------------------------------------------------- the network
@pytest.mark.parametrize("hidden_act, use_bias, width", [("swiglu", False, 3), ("gelu", True, 2), ("gelu", False, 50)])
def test_transformer_matches_slow_transcription(hidden_act, use_bias, width):
    config = small_config(hidden_act=hidden_act, use_bias=use_bias, attention_width=width)
    state = {k: v.double() for k, v in femr_state(config, seed=1).items()}
    model = double_model(config, state)
    g = torch.Generator().manual_seed(2)
    lengths = [7, 4]
    tokens = torch.randint(0, config["vocab_size"], (2, 7), generator=g)
    ages = torch.cumsum(torch.rand(2, 7, generator=g, dtype=torch.float64) * 300, dim=1)
    normed = torch.randn(2, 7, generator=g, dtype=torch.float64)
    with torch.no_grad():
        got = model(tokens, ages, normed)
    for row, n in enumerate(lengths):
        embedded = state["transformer.embed.weight"][tokens[row, :n]]
        want = reference_forward(state, config, embedded, ages[row, :n], normed[row, :n])
        # Right padding never reaches a real token: the first n states are the patient's alone.
        torch.testing.assert_close(got[row, :n], want, rtol=1e-10, atol=1e-10)


def test_local_causal_mask_window():
    mask = local_causal_mask(5, 2)
    want = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]])
    assert torch.equal(mask, want.bool())


def test_next_code_losses_sum_each_patients_cross_entropy_of_the_following_token():
    config = small_config()
    model = double_model(config, {k: v.double() for k, v in femr_state(config).items()})
    tokens = torch.tensor([[0, 1, 2, 3, 7], [3, 1, 0, 0, 0]])  # 7 lies outside the 4-token head
    lengths = torch.tensor([5, 2])
    ages = torch.arange(5, dtype=torch.float64).repeat(2, 1)
    hidden = model(tokens, ages, torch.zeros(2, 5, dtype=torch.float64))

    def cross_entropy(row, t, code):
        return torch.nn.functional.cross_entropy(model.task_model(hidden[row, t]), torch.tensor(code))

    # Position t predicts token t + 1 of the same patient; the padding and the target 7 carry no loss.
    want = torch.stack(
        [cross_entropy(0, 0, 1) + cross_entropy(0, 1, 2) + cross_entropy(0, 2, 3), cross_entropy(1, 0, 1)]
    )
    torch.testing.assert_close(model.next_code_losses(hidden, tokens, lengths), want)


# ------------------------------------------------------------------------ checkpoints
def test_published_layout_loads_and_tokenizes_like_femr(tmp_path):
    state = write_checkpoint(tmp_path / "ckpt")
    X = pd.DataFrame({"ehr": [patient_frame()], "other": [1.0]}, index=["p1"])
    Xt = CLMBREmbedder(pretrained=tmp_path / "ckpt").fit(X).transform(X)
    assert list(Xt.columns) == ["other"] + [f"ehr__{i}" for i in range(8)]
    ids, ages, normed = expected_inputs()
    config = small_config()
    state64 = {k: v.double() for k, v in state.items()}
    want = reference_forward(state64, config, state64["transformer.embed.weight"][ids], ages, normed)[-1]
    np.testing.assert_allclose(Xt.filter(like="ehr__").to_numpy()[0], want.numpy(), rtol=1e-4, atol=1e-5)


def test_max_length_keeps_the_last_tokens(tmp_path):
    state = write_checkpoint(tmp_path / "ckpt")
    X = pd.DataFrame({"ehr": [patient_frame()]})
    got = CLMBREmbedder(pretrained=tmp_path / "ckpt", max_length=3).fit(X).transform(X).to_numpy()[0]
    ids, ages, normed = expected_inputs()
    state64 = {k: v.double() for k, v in state.items()}
    embedded = state64["transformer.embed.weight"][ids[-3:]]
    want = reference_forward(state64, small_config(), embedded, ages[-3:], normed[-3:])[-1]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


def test_prediction_time_column_cuts_the_history(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    frame = patient_frame()
    cut = pd.Timestamp("2000-01-02 08:30")
    X = pd.DataFrame({"ehr": [frame], "at": [cut]})
    got = CLMBREmbedder(pretrained=tmp_path / "ckpt", index_time="at").fit(X).transform(X)
    early = frame[frame["time"] <= cut]
    want = CLMBREmbedder(pretrained=tmp_path / "ckpt").fit(X).transform(pd.DataFrame({"ehr": [early], "at": [cut]}))
    np.testing.assert_array_equal(got.filter(like="ehr__").to_numpy(), want.filter(like="ehr__").to_numpy())
    assert "at" in got.columns


def test_hierarchical_checkpoint_embeds_code_bags(tmp_path):
    vocab = [
        {"type": "code", "code_string": "ICD/A", "weight": -1},
        {"type": "code", "code_string": "ICD/Parent", "weight": -1},
        {"type": "code", "code_string": "ICD/Root", "weight": -1},
        {"type": "numeric", "val_start": float("-inf"), "val_end": 1.0, "weight": -1},
        {"type": "numeric", "val_start": 1.0, "val_end": float("inf"), "weight": -1},
        {"type": "text", "text_string": "positive", "weight": -1},
    ]
    state = write_checkpoint(tmp_path / "ckpt", vocab=vocab, hierarchical=True)
    frame = pd.DataFrame(
        {"time": [0.0, 10.0, 10.5], "code": ["ICD/A", "Lab/X", "ICD/Root"], "numeric_value": [np.nan, 2.0, np.nan]}
    )
    parents = {"ICD/A": ["ICD/Parent"], "ICD/Parent": ["ICD/Root"]}
    X = pd.DataFrame({"ehr": [frame]})
    with pytest.warns(UserWarning, match="no birth event"):
        got = CLMBREmbedder(pretrained=tmp_path / "ckpt", code_parents=parents).fit(X).transform(X)
    table = state["transformer.embed_bag.weight"].double()
    third = float(np.float16(1 / 3))  # femr keeps bag weights in float16
    # ICD/A -> {A, Parent, Root} / 3; Lab/X (no code token) -> value bin [1, inf); ICD/Root on
    # day 10 is new that day.
    embedded = torch.stack([third * table[[0, 1, 2]].sum(0), table[4], table[2]])
    ages = torch.tensor([0.0, 10.0, 10.5], dtype=torch.float64)
    normed = torch.from_numpy(((ages.numpy() * 86400 - AGE_STATS["mean"]) / AGE_STATS["std"]).astype(np.float16))
    want = reference_forward({k: v.double() for k, v in state.items()}, small_config(), embedded, ages, normed.double())
    np.testing.assert_allclose(got.to_numpy()[0], want[-1].numpy(), rtol=1e-4, atol=1e-5)


# A hierarchical vocabulary for pbcseq's codes: two parent codes, three global value bins
# (listed out of order: femr sorts them by val_start) and three unit texts.
PBCSEQ_HIERARCHICAL_VOCAB = [
    {"type": "code", "code_string": BIRTH, "weight": -1},  # 0
    {"type": "code", "code_string": "Gender/F", "weight": -1},  # 1
    {"type": "code", "code_string": "LOINC/LP-chemistry", "weight": -1},  # 2
    {"type": "code", "code_string": "LOINC/1975-2", "weight": -1},  # 3 bilirubin
    {"type": "code", "code_string": "LOINC/1751-7", "weight": -1},  # 4 albumin
    {"type": "code", "code_string": "LOINC/777-3", "weight": -1},  # 5 platelets
    {"type": "code", "code_string": "PBCSEQ/finding", "weight": -1},  # 6
    {"type": "code", "code_string": "PBCSEQ/ascites", "weight": -1},  # 7
    {"type": "numeric", "val_start": float("-inf"), "val_end": 5.0, "weight": -1},  # 8
    {"type": "numeric", "val_start": 100.0, "val_end": float("inf"), "weight": -1},  # 9
    {"type": "numeric", "val_start": 5.0, "val_end": 100.0, "weight": -1},  # 10
    {"type": "text", "text_string": "mg/dl", "weight": -1},  # 11
    {"type": "text", "text_string": "g/dl", "weight": -1},  # 12
    {"type": "text", "text_string": "10*3/ul", "weight": -1},  # 13
]
PBCSEQ_PARENTS = {
    **{code: ["LOINC/LP-chemistry"] for code in ("LOINC/1975-2", "LOINC/1751-7", "LOINC/6768-6", "LOINC/1920-8")},
    **{code: ["PBCSEQ/finding"] for code in ("PBCSEQ/ascites", "PBCSEQ/hepatomegaly", "PBCSEQ/spiders")},
}
# Units as a source system might spell them; femr lower-cases them and removes spaces.
PBCSEQ_UNITS = {
    "LOINC/1975-2": "mg/dL", "LOINC/1751-7": "g/dL", "LOINC/6768-6": "U/L", "LOINC/1920-8": "U/mL",
    "LOINC/2093-3": "MG/DL", "LOINC/777-3": "10*3 / uL", "LOINC/5902-2": "s",
}
# The bags femr 0.2.3 makes of pbcseq patient 1 (events in the order load_pbcseq_events
# gives), worked out by hand from femr/models/tokenizer.py (FEMRTokenizer.get_feature_codes:
# the code and its ancestors with weights 1 / n, then the normalised unit's text entry, the
# global value bin found by bisect on the sorted val_starts, the text value, each weight 1)
# and femr/models/processor.py (BatchCreator.add_patient: a measurement whose features were
# all seen earlier the same day is skipped). Day and {vocabulary index: weight}.
PBCSEQ_PATIENT1_BAGS = [
    (-21464, {0: 1.0}),  # birth
    (-21464, {1: 1.0}),  # Gender/F
    # day 0: D-penicillamine has no token; histologic stage 4 only its value bin
    (0, {8: 1.0}),
    (0, {3: 0.5, 2: 0.5, 11: 1.0, 10: 1.0}),  # bilirubin 14.5 mg/dL
    (0, {4: 0.5, 2: 0.5, 12: 1.0, 8: 1.0}),  # albumin 2.6 g/dL
    (0, {2: 1.0, 9: 1.0}),  # alk. phosphatase 1718 U/L: parent only, unit not in the vocabulary
    # AST 138 U/mL -> {2, 9}, cholesterol 261 MG/DL -> {11, 9}: all seen today, skipped
    (0, {5: 1.0, 13: 1.0, 9: 1.0}),  # platelets 190, "10*3 / uL" normalised to "10*3/ul"
    # prothrombin time 12.2 s -> {10}: seen, skipped
    (0, {7: 0.5, 6: 0.5}),  # ascites
    # hepatomegaly, spiders -> {6}; edema 1.0 -> {8}: seen, skipped
    (192, {3: 0.5, 2: 0.5, 11: 1.0, 10: 1.0}),  # bilirubin 21.3 on a new day
    (192, {4: 0.5, 2: 0.5, 12: 1.0, 8: 1.0}),  # albumin 2.94
    (192, {2: 1.0, 9: 1.0}),  # alk. phosphatase 1612
    # AST 6.2 -> {2, 10}: seen, skipped
    (192, {5: 1.0, 13: 1.0, 9: 1.0}),  # platelets 183
    # prothrombin time 11.2 -> {10}: seen
    (192, {7: 0.5, 6: 0.5}),  # ascites
    # hepatomegaly, spiders, edema: seen
]


def test_hierarchical_tokens_on_pbcseq_follow_femr(tmp_path, pbcseq):
    state = write_checkpoint(
        tmp_path / "ckpt", config={**TINY, "vocab_size": 14}, vocab=PBCSEQ_HIERARCHICAL_VOCAB, hierarchical=True
    )
    frame = pbcseq[0].loc[1, "ehr"]
    frame = frame.assign(unit=frame["code"].map(PBCSEQ_UNITS))
    X = pd.DataFrame({"ehr": [frame]}, index=[1])
    emb = CLMBREmbedder(pretrained=tmp_path / "ckpt", code_parents=PBCSEQ_PARENTS).fit(X)
    (tokens,) = emb._tokenize_all(emb._read_all(emb._check_frame(X, reset=False)))
    bags = [
        {int(i): float(w) for i, w in zip(ids, weights) if w > 0} for ids, weights in zip(tokens.ids, tokens.weights)
    ]
    assert bags == [bag for _, bag in PBCSEQ_PATIENT1_BAGS]
    birth = -21464.0
    np.testing.assert_array_equal(tokens.ages, [day - birth for day, _ in PBCSEQ_PATIENT1_BAGS])
    # The embedding reads those bags: the reference network on their weighted sums.
    table = state["transformer.embed_bag.weight"].double()
    embedded = torch.stack([sum(w * table[i] for i, w in bag.items()) for _, bag in PBCSEQ_PATIENT1_BAGS])
    ages = torch.tensor([day - birth for day, _ in PBCSEQ_PATIENT1_BAGS], dtype=torch.float64)
    normed = ((ages.numpy() * 86400 - AGE_STATS["mean"]) / AGE_STATS["std"]).astype(np.float16)
    config = small_config(vocab_size=14)
    state64 = {k: v.double() for k, v in state.items()}
    want = reference_forward(state64, config, embedded, ages, torch.from_numpy(normed).double())
    # Rotary angles of ages near 21,500 days are only good to ~1e-3 in float32 (as in femr).
    np.testing.assert_allclose(emb.transform(X).to_numpy()[0], want[-1].numpy(), rtol=2e-3, atol=2e-3)


def test_units_are_ignored_by_a_flat_vocabulary(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    frame = patient_frame()
    emb = CLMBREmbedder(pretrained=tmp_path / "ckpt").fit(pd.DataFrame({"ehr": [frame]}))
    with_units = frame.assign(unit="mg/dL")
    np.testing.assert_array_equal(
        emb.transform(pd.DataFrame({"ehr": [frame]})).to_numpy(),
        emb.transform(pd.DataFrame({"ehr": [with_units]})).to_numpy(),
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.update({"transformer.layers.0.extra.weight": torch.zeros(1)}), "Unused key.*0.extra.weight"),
        (lambda s: s.pop("transformer.layers.1.norm.weight"), "Missing key.*layers.1.norm.weight"),
        (lambda s: s.update({"transformer.out_norm.weight": torch.ones(9)}), "Wrong shape.*out_norm.weight"),
        (
            lambda s: s.update({"transformer.in_norm.scale": s.pop("transformer.in_norm.weight")}),
            "in_norm.scale.*femr 0.2.0/0.2.1",
        ),
    ],
)
def test_checkpoint_that_does_not_fit_fails_naming_the_key(tmp_path, edit, message):
    state = femr_state(small_config())
    edit(state)
    write_checkpoint(tmp_path / "ckpt", state=state)
    X = pd.DataFrame({"ehr": [patient_frame()]})
    with pytest.raises(ValueError, match=message):
        CLMBREmbedder(pretrained=tmp_path / "ckpt").fit(X)


def test_checkpoint_config_errors_name_the_file(tmp_path):
    X = pd.DataFrame({"ehr": [patient_frame()]})
    with pytest.raises(ValueError, match="config.json: no such file"):
        CLMBREmbedder(pretrained=tmp_path).fit(X)
    write_checkpoint(tmp_path / "ckpt")
    raw = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({**raw, "architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="config.json: architectures.*FEMRModel"):
        CLMBREmbedder(pretrained=tmp_path / "ckpt").fit(X)
    raw["task_config"] = {"task_type": "motor"}
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="task_type 'motor'"):
        CLMBREmbedder(pretrained=tmp_path / "ckpt").fit(X)


def test_saved_model_round_trips(tmp_path, tiny_events):
    fitted = CLMBREmbedder(**TINY_FIT).fit(tiny_events)
    fitted.save_pretrained(tmp_path / "mine")
    assert json.loads((tmp_path / "mine" / "config.json").read_text())["architectures"] == ["FEMRModel"]
    loaded = CLMBREmbedder(pretrained=tmp_path / "mine").fit(tiny_events)
    assert loaded.dictionary_ == fitted.dictionary_
    saved, read = fitted.model_.state_dict(), loaded.model_.state_dict()
    assert saved.keys() == read.keys() and all(torch.equal(saved[k], read[k]) for k in saved)
    # Same weights; float32 kernels may round differently in another set of buffers.
    np.testing.assert_allclose(
        fitted.transform(tiny_events).to_numpy(), loaded.transform(tiny_events).to_numpy(), rtol=1e-5, atol=1e-6
    )


# ------------------------------------------------------------------- fitting and contract
# The transformer alone: the code summary has tests of its own below.
TINY_FIT = dict(
    hidden_dim=8, n_layers=1, n_heads=2, intermediate_dim=8, min_frequency=1, max_epochs=2, batch_size=16, device="cpu",
    code_summary=False,
)


@pytest.fixture(scope="module")
def pbcseq():
    from skfusion.datasets._events_real import load_pbcseq_events

    return load_pbcseq_events(landmark=365)


@pytest.fixture
def tiny_events(pbcseq):
    return pbcseq[0].iloc[:40][["ehr"]]


def test_fit_is_deterministic_and_finite(tiny_events):
    first = CLMBREmbedder(**TINY_FIT, random_state=0).fit(tiny_events)
    again = CLMBREmbedder(**TINY_FIT, random_state=0).fit(tiny_events)
    other = CLMBREmbedder(**TINY_FIT, random_state=1).fit(tiny_events)
    Z = first.transform(tiny_events).to_numpy()
    assert Z.shape == (40, 8)  # transform raises on an embedding that is not finite
    np.testing.assert_array_equal(Z, again.transform(tiny_events).to_numpy())
    assert not np.allclose(Z, other.transform(tiny_events).to_numpy())
    assert len(first.loss_curve_) == 2 and first.loss_curve_[-1] < first.loss_curve_[0]


def test_the_engine_minimises_the_mean_cross_entropy_over_a_batchs_tokens(tiny_events):
    """A padded training batch's loss is the cross-entropy of every next code, each patient read alone."""
    emb = CLMBREmbedder(**TINY_FIT, random_state=0).fit(tiny_events)
    tokens = emb._tokenize_all(emb._read_all(emb._check_frame(tiny_events, reset=False)))
    patients = clmbr_encoder._TokenSequences([t for t in tokens if len(t.ids) >= 2], "ehr", "cpu")
    X, n_targets = patients.batch(torch.arange(8))
    logits, targets = [], []
    with torch.inference_mode():
        loss = NextCodeLoss()(NextCodePretraining("ehr", emb.model_)(**X), n_targets)
        for t in patients.tokens[:8]:
            ids = torch.from_numpy(t.ids)
            hidden = emb.model_(ids[None], torch.from_numpy(t.ages)[None], torch.from_numpy(t.normed_ages)[None])[0]
            logits.append(emb.model_.task_model(hidden[:-1]))
            targets.append(ids[1:])
        want = torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(targets))
    assert len({len(t.ids) for t in patients.tokens[:8]}) > 1  # the batch is padded
    torch.testing.assert_close(loss, want)


def test_early_stopping_restores_the_best_epoch_on_held_out_patients(tiny_events):
    weights, held_out = [], []  # the model's weights after each epoch, the held-out loss of each

    class Snapshot(Callback):
        def on_epoch_end(self, net, **kwargs):
            weights.append({name: value.clone() for name, value in net.module_.model.state_dict().items()})

        def on_train_end(self, net, **kwargs):
            held_out.extend(net.history[:, "valid_loss"])

    # A high learning rate: the held-out loss falls, then rises within a few dozen epochs.
    emb = CLMBREmbedder(
        **{**TINY_FIT, "max_epochs": 60}, lr=0.1, early_stopping=True, validation_fraction=0.25, n_iter_no_change=3,
        callbacks=[Snapshot()], random_state=0,
    ).fit(tiny_events)
    assert emb.n_iter_ == len(held_out) == len(weights) == len(emb.loss_curve_) < 60
    best = int(np.argmin(held_out))
    assert held_out[-1] > held_out[best]
    # Epochs count from 1 (0 is the initial weights); training stopped 3 epochs past the best.
    assert emb.best_epoch_ == best + 1 == emb.n_iter_ - 3
    fitted = emb.model_.state_dict()
    assert all(torch.equal(value, weights[best][name]) for name, value in fitted.items())
    assert not all(torch.equal(value, weights[-1][name]) for name, value in fitted.items())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_fit_is_deterministic(tiny_events):
    settings = dict(**TINY_FIT, early_stopping=True, validation_fraction=0.25, random_state=0)
    first, again = (CLMBREmbedder(**settings).fit(tiny_events) for _ in range(2))
    assert first.loss_curve_ == again.loss_curve_ and first.best_epoch_ == again.best_epoch_
    np.testing.assert_array_equal(first.transform(tiny_events).to_numpy(), again.transform(tiny_events).to_numpy())


def test_max_epochs_cutting_the_held_out_descent_warns(tiny_events):
    with pytest.warns(ConvergenceWarning, match="stopped at max_epochs=2 while the validation loss was still falling"):
        CLMBREmbedder(**TINY_FIT, early_stopping=True, validation_fraction=0.25, random_state=0).fit(tiny_events)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("fraction, holds_out", [(0.1, True), (0.05, False)])
def test_auto_early_stopping_holds_patients_out_from_a_cohort_size(tiny_events, monkeypatch, fraction, holds_out):
    # 3 held-out patients instead of 100, so that the 40 patients here cross the threshold.
    monkeypatch.setattr(clmbr_encoder, "MIN_VALIDATION_ROWS", 3)
    held_out = []

    class Record(Callback):
        def on_train_end(self, net, **kwargs):
            held_out.append("valid_loss" in net.history[-1])

    CLMBREmbedder(**TINY_FIT, validation_fraction=fraction, callbacks=[Record()], random_state=0).fit(tiny_events)
    assert held_out == [holds_out]


def test_user_callbacks_are_called(tiny_events):
    epochs = []

    class Count(Callback):
        def on_epoch_end(self, net, **kwargs):
            epochs.append(len(net.history))

    CLMBREmbedder(**{**TINY_FIT, "max_epochs": 3}, callbacks=[Count()], random_state=0).fit(tiny_events)
    assert epochs == [1, 2, 3]


def test_mixed_precision_trains_under_autocast_and_keeps_float32_weights(tiny_events, monkeypatch):
    """On a CUDA device with bfloat16 the engine autocasts the pretraining; CPU autocast runs the same path here."""
    full = CLMBREmbedder(**TINY_FIT, random_state=0).fit(tiny_events)
    monkeypatch.setattr(clmbr_encoder, "transformer_precision", lambda device: torch.bfloat16)
    mixed = CLMBREmbedder(**TINY_FIT, random_state=0).fit(tiny_events)
    assert all(value.dtype == torch.float32 for value in mixed.model_.state_dict().values())
    assert mixed.loss_curve_ != full.loss_curve_  # bfloat16 arithmetic
    np.testing.assert_allclose(mixed.loss_curve_, full.loss_curve_, rtol=0.02)
    assert mixed.transform(tiny_events).notna().all().all()


def test_vocabulary_bins_values_per_code(tiny_events):
    emb = CLMBREmbedder(**{**TINY_FIT, "max_epochs": 0}, n_bins=4).fit(tiny_events)
    bili = [e for e in emb.dictionary_["vocab"] if e.get("code_string") == "LOINC/1975-2"]
    assert all(e["type"] == "numeric" for e in bili) and len(bili) == 4
    values = np.concatenate([f.loc[f["code"] == "LOINC/1975-2", "numeric_value"] for f in tiny_events["ehr"]])
    inner = sorted(e["val_start"] for e in bili)[1:]
    np.testing.assert_allclose(inner, np.quantile(values, [0.25, 0.5, 0.75]))


@pytest.mark.float32_batch
def test_empty_history_and_unknown_codes(tiny_events):
    emb = CLMBREmbedder(**TINY_FIT, random_state=0).fit(tiny_events)
    empty = pd.DataFrame({"time": [], "code": []})
    unknown = pd.DataFrame({"time": [0.0, 1.0], "code": ["Never/Seen", "Also/Unknown"]})
    partly = tiny_events["ehr"].iloc[0]
    partly = pd.concat([partly, pd.DataFrame({"time": [1.0], "code": ["Never/Seen"], "numeric_value": [1.0]})])
    X = pd.DataFrame({"ehr": [empty, unknown, partly, None, tiny_events["ehr"].iloc[0]]})
    with pytest.warns(UserWarning) as caught:
        Z = emb.transform(X).to_numpy()
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 row(s) of column 'ehr' have no birth event" in messages
    assert (
        "2 row(s) of column 'ehr' have no event in the vocabulary; their transformer state is the zero vector"
        in messages
    )
    assert np.all(Z[:2] == 0) and np.isnan(Z[3]).all()
    assert_float32_close(Z[2], Z[4])  # the same known events, at two positions of the batch


@pytest.mark.parametrize(
    "cell, message",
    [
        (42, r"row 'b' of column 'ehr'.*got int"),
        (pd.DataFrame({"time": [0.0], "value": ["x"]}), r"row 'b' of column 'ehr'.*lacks column.*code"),
        (pd.DataFrame({"time": ["not a time"], "code": ["x"]}), r"row 'b' of column 'ehr'.*'time'.*numbers \(days\) or datetimes"),
    ],
)
def test_bad_cells_name_row_and_column(tiny_events, cell, message):
    emb = CLMBREmbedder(**{**TINY_FIT, "max_epochs": 0}).fit(tiny_events)
    X = pd.DataFrame({"ehr": [tiny_events["ehr"].iloc[0], cell]}, index=["a", "b"])
    with pytest.raises(ValueError, match=message):
        emb.transform(X)
    with pytest.raises(ValueError, match=message):
        clone(emb).fit(X)


def test_bad_parameters_and_columns(tiny_events):
    with pytest.raises(ValueError, match="device 'gpu!'"):
        CLMBREmbedder(**{**TINY_FIT, "device": "gpu!"}).fit(tiny_events)
    with pytest.raises(ValueError, match="column 'ehr' is not in X"):
        CLMBREmbedder(**TINY_FIT).fit(tiny_events.rename(columns={"ehr": "notes"}))
    with pytest.raises(ValueError, match="index_time column 'when' is not in X"):
        CLMBREmbedder(**TINY_FIT, index_time="when").fit(tiny_events)
    with pytest.raises(ValueError, match="min_frequency=1000"):
        CLMBREmbedder(**{**TINY_FIT, "min_frequency": 1000}).fit(tiny_events)
    with pytest.raises(ValueError, match="hidden_dim=8 must split into n_heads=3"):
        CLMBREmbedder(**{**TINY_FIT, "n_heads": 3}).fit(tiny_events)


def test_clone_and_params():
    emb = CLMBREmbedder(hidden_dim=16, random_state=3)
    twin = clone(emb)
    assert twin.get_params() == emb.get_params()
    assert twin.set_params(n_layers=3).n_layers == 3 and emb.n_layers == 2


def test_embedding_carries_survival_signal_in_a_pipeline(pbcseq):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    X, y = pbcseq
    pipe = Pipeline(
        [
            ("emb", CLMBREmbedder(**{**TINY_FIT, "hidden_dim": 16, "max_epochs": 3}, random_state=0)),
            ("ehr", ColumnTransformer([("ehr", "passthrough", make_column_selector(pattern="^ehr__"))])),
            ("cox", CoxPHSurvivalAnalysis(alpha=1.0)),
        ]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.fit(X, y)
    # Every pbcseq patient has a birth event and in-vocabulary events.
    assert not [w for w in caught if "CLMBREmbedder" in str(w.message)]
    assert pipe.score(X, y) > 0.65


# ------------------------------------------------------------------------- code summary
def summary_frames():
    return [
        pd.DataFrame(
            {"time": [0.0, 1.0, 2.0], "code": ["Dx/A", "Lab/B", "Lab/B"], "numeric_value": [np.nan, 1.0, 3.0]}
        ),
        pd.DataFrame({"time": [0.0], "code": ["Lab/B"], "numeric_value": [2.0]}),
        pd.DataFrame({"time": [0.0, 5.0], "code": ["Dx/A", "Dx/A"], "numeric_value": [np.nan, np.nan]}),
    ]


def test_code_summary_is_log_counts_then_last_value_mid_ranks():
    X = pd.DataFrame({"ehr": summary_frames()})
    emb = CLMBREmbedder(**{**TINY_FIT, "code_summary": True}, birth_code=None, random_state=0).fit(X)
    assert emb.summary_codes_ == ["Dx/A", "Lab/B"] and list(emb.value_quantiles_) == ["Lab/B"]
    np.testing.assert_allclose(emb.value_quantiles_["Lab/B"], np.linspace(1.0, 3.0, 101))
    got = emb.transform(X).to_numpy()[:, 8:]
    # Lab/B's training values 1, 2, 3: the last value 3 is at mid-rank (100 + 101) / 202 of the
    # 101 quantiles, 2 at (50 + 51) / 202; no value is the median, 0.5.
    want = [
        [np.log(2), np.log(3), 201 / 202],
        [0.0, np.log(2), 101 / 202],
        [np.log(3), 0.0, 0.5],
    ]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    new = pd.DataFrame({"ehr": [pd.DataFrame({"time": [0.0, 1.0], "code": ["Never/Seen", "Lab/B"],
                                              "numeric_value": [np.nan, 50.0]})]})
    np.testing.assert_allclose(emb.transform(new).to_numpy()[0, 8:], [0.0, np.log(2), 1.0], rtol=1e-6)


def test_code_summary_auto_only_without_a_checkpoint(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    X = pd.DataFrame({"ehr": [patient_frame()] * 5})
    released = CLMBREmbedder(pretrained=tmp_path / "ckpt").fit(X)
    assert released.summary_codes_ == [] and released.transform(X).shape == (5, 8)
    with_summary = CLMBREmbedder(pretrained=tmp_path / "ckpt", code_summary=True).fit(X)
    np.testing.assert_array_equal(with_summary.transform(X).to_numpy()[:, :8], released.transform(X).to_numpy())
    # Codes with at least min_frequency=5 events: every code of patient_frame (each patient is the same).
    assert with_summary.summary_codes_ == sorted(set(patient_frame()["code"]))
    fitted = CLMBREmbedder(**{**TINY_FIT, "code_summary": "auto"}, random_state=0).fit(X)
    assert fitted.summary_codes_ == with_summary.summary_codes_
    assert fitted.transform(X).shape == (5, 8 + len(fitted.summary_codes_) + len(fitted.value_quantiles_))
