"""Reference tests of the per-modality encoders and the MedFuse, DAFT and MMTM modules.

Each module runs in float64 against a direct, row-by-row transcription of its equations
(one unbatched ``nn.LSTM`` call per row on the unpadded sequence).
"""

import pytest
import torch
from torch import nn

from skfusion._data import ModalitySpec
from skfusion.modules.daft import DAFTBlock, DAFTNet
from skfusion.modules.encoders import (
    EncoderHead,
    IdentityEncoder,
    LSTMEncoder,
    has_parameters,
    load_encoders,
    make_encoder,
)
from skfusion.modules.medfuse import MedFuseNet
from skfusion.modules.mmtm import MMTMBlock, MMTMNet

ATOL = 1e-12


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def sequence_block(lengths, dim, garbage=True):
    """A padded sequence block; padding holds random values so a leak would show."""
    lengths = torch.as_tensor(lengths)
    width = max(int(lengths.max()), 1)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    x = torch.randn(len(lengths), width, dim, dtype=torch.float64)
    if not garbage:
        x = x * mask.unsqueeze(-1)
    return {"x": x, "present": lengths > 0, "mask": mask}


def vector_block(present, dim):
    present = torch.as_tensor(present)
    x = torch.randn(len(present), dim, dtype=torch.float64) * present[:, None]
    return {"x": x, "present": present}


def run_rows(layers, seq):
    """Reference stack: each layer is an unbatched nn.LSTM call on one row's real steps."""
    h = seq.unsqueeze(0)
    for layer in layers:
        h, _ = layer(h)
    return h[0]


def test_lstm_encoder_ignores_padding():
    enc = LSTMEncoder(3, 5, n_layers=2).double().eval()
    lengths = [4, 1, 6, 0, 2]
    block = sequence_block(lengths, 3)
    out = enc(block)
    for i, length in enumerate(lengths):
        expected = run_rows(enc.layers, block["x"][i, :length])[-1] if length else torch.zeros(5, dtype=torch.float64)
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_lstm_layer_states_are_zero_after_each_length():
    enc = LSTMEncoder(3, 4, n_layers=2).double()
    lengths = [3, 1, 5]
    block = sequence_block(lengths, 3)
    states, last = enc.run_layers(block["x"], block["mask"].sum(1), range(1))
    for i, length in enumerate(lengths):
        expected = run_rows(enc.layers[:1], block["x"][i, :length])
        torch.testing.assert_close(states[i, :length], expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(last[i], expected[-1], atol=ATOL, rtol=0)
        assert torch.all(states[i, length:] == 0)


def test_lstm_encoder_reads_a_vector_block_as_one_step():
    enc = LSTMEncoder(3, 4, n_layers=2).double()
    block = vector_block([True, False, True], 3)
    out = enc(block)
    torch.testing.assert_close(out[0], run_rows(enc.layers, block["x"][0:1])[-1], atol=ATOL, rtol=0)
    assert torch.all(out[1] == 0)


def test_lstm_encoder_row_does_not_depend_on_batch():
    enc = LSTMEncoder(3, 4).double()
    block = sequence_block([2, 7, 3], 3)
    alone = enc({key: value[:1] for key, value in block.items()})
    torch.testing.assert_close(enc(block)[:1], alone, atol=ATOL, rtol=0)


def test_identity_encoder():
    enc = IdentityEncoder(3)
    block = vector_block([True, False], 3)
    torch.testing.assert_close(enc(block), block["x"])
    seq = sequence_block([2, 3], 3)
    expected = torch.stack([seq["x"][0, :2].mean(0), seq["x"][1, :3].mean(0)])
    torch.testing.assert_close(enc(seq), expected, atol=ATOL, rtol=0)


def test_make_encoder_follows_the_modality_kind():
    seq = ModalitySpec("ts", "sequence", ("ts",), 6)
    vec = ModalitySpec("img", "vector", ("img__0", "img__1"), 2)
    assert isinstance(make_encoder(seq, hidden_dim=7), LSTMEncoder) and make_encoder(seq, hidden_dim=7).out_dim == 7
    assert isinstance(make_encoder(vec), IdentityEncoder) and make_encoder(vec).out_dim == 2
    assert isinstance(make_encoder(vec, sequence=True), LSTMEncoder)
    assert isinstance(make_encoder(seq, sequence=False), IdentityEncoder)
    assert has_parameters(make_encoder(seq)) and not has_parameters(make_encoder(vec))


def test_load_encoders_copies_and_freezes():
    source = EncoderHead("ts", LSTMEncoder(3, 4), 2)
    target = nn.ModuleDict({"ts": LSTMEncoder(3, 4), "img": IdentityEncoder(2)})
    load_encoders(target, {"ts": source.encoder.state_dict()}, freeze=True)
    for name, value in source.encoder.state_dict().items():
        torch.testing.assert_close(target["ts"].state_dict()[name], value)
    assert not any(p.requires_grad for p in target["ts"].parameters())


def medfuse_reference(net, blocks):
    """Eq. 3-5 row by row: [v_ehr] or [v_ehr, phi(v_img)] through an unbatched fusion LSTM."""
    enc_ehr = net.encoders[net.ehr]
    ehr, img = blocks[net.ehr], blocks[net.image]
    rows = []
    for i in range(len(img["present"])):
        length = int(ehr["mask"][i].sum())
        v_ehr = net.projections[net.ehr](run_rows(enc_ehr.layers, ehr["x"][i, :length])[-1])
        tokens = [v_ehr]
        if img["present"][i]:
            tokens.append(net.projections[net.image](img["x"][i]))
        h = run_rows([net.fusion], torch.stack(tokens))[-1]
        rows.append(net.head(h))
    return torch.stack(rows)


@pytest.mark.parametrize("token_dim", [5, 4])
def test_medfuse_net_matches_transcription(token_dim):
    encoders = {"ts": LSTMEncoder(3, 5), "img": IdentityEncoder(6)}
    net = MedFuseNet("ts", "img", encoders, token_dim, 7, (), 2, 0.0).double().eval()
    assert isinstance(net.projections["ts"], nn.Identity) == (token_dim == 5)
    blocks = {"ts": sequence_block([3, 1, 4, 2], 3), "img": vector_block([True, False, False, True], 6)}
    torch.testing.assert_close(net(**blocks), medfuse_reference(net, blocks), atol=ATOL, rtol=0)


def test_medfuse_missing_image_is_a_shorter_sequence_not_a_zero_token():
    net = MedFuseNet("ts", "img", {"ts": LSTMEncoder(3, 5), "img": IdentityEncoder(6)}, 5, 7, (), 1, 0.0).double()
    blocks = {"ts": sequence_block([3], 3), "img": vector_block([False], 6)}
    with_zero_token = dict(blocks, img={"x": blocks["img"]["x"], "present": torch.tensor([True])})
    assert not torch.allclose(net(**blocks), net(**with_zero_token))


def test_daft_block_formula():
    block = DAFTBlock(4, 3, 2).double()
    h = torch.randn(5, 6, 4, dtype=torch.float64)
    squeezed, cond = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    w1, w2 = block.aux[0].weight, block.aux[2].weight
    assert block.aux[0].bias is None and block.aux[2].bias is None
    for i in range(5):
        film = w2 @ torch.relu(w1 @ torch.cat([squeezed[i], cond[i]]))
        alpha, beta = film[:4], film[4:]
        torch.testing.assert_close(block(h, squeezed, cond)[i], alpha * h[i] + beta, atol=ATOL, rtol=0)


def test_daft_net_image_conditions_ehr_between_layers():
    net = DAFTNet("ts", "img", LSTMEncoder(3, 4), IdentityEncoder(6), "image", 2.0, (), 2, 0.0).double().eval()
    lengths = [3, 1, 5]
    blocks = {"ts": sequence_block(lengths, 3), "img": vector_block([True] * 3, 6)}
    out = net(**blocks)
    layers = net.ehr_encoder.layers
    for i, length in enumerate(lengths):
        states = run_rows(layers[:1], blocks["ts"]["x"][i, :length])
        v_img = blocks["img"]["x"][i]
        film = net.daft.aux(torch.cat([states.mean(0), v_img]))
        transformed = film[:4] * states + film[4:]
        v_ehr = run_rows(layers[1:], transformed)[-1]
        torch.testing.assert_close(out[i], net.head(v_ehr), atol=ATOL, rtol=0)


def test_daft_net_ehr_conditions_image():
    net = DAFTNet("ts", "img", LSTMEncoder(3, 4), IdentityEncoder(6), "ehr", 2.0, (), 1, 0.0).double().eval()
    blocks = {"ts": sequence_block([2, 4], 3), "img": vector_block([True, True], 6)}
    out = net(**blocks)
    for i, length in enumerate([2, 4]):
        v_ehr = run_rows(net.ehr_encoder.layers, blocks["ts"]["x"][i, :length])[-1]
        v_img = blocks["img"]["x"][i]
        film = net.daft.aux(torch.cat([v_img, v_ehr]))
        torch.testing.assert_close(out[i], net.head(film[:6] * v_img + film[6:]), atol=ATOL, rtol=0)


def test_mmtm_block_formula():
    block = MMTMBlock((4, 6), 2.0).double()
    assert block.squeeze.out_features == 5
    h_ehr, h_img = torch.randn(3, 7, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    s_ehr = torch.randn(3, 4, dtype=torch.float64)
    out_ehr, out_img = block([h_ehr, h_img], [s_ehr, h_img])
    for i in range(3):
        z = torch.relu(block.squeeze.weight @ torch.cat([s_ehr[i], h_img[i]]) + block.squeeze.bias)
        gate_ehr = 2 / (1 + torch.exp(-(block.excite[0].weight @ z + block.excite[0].bias)))
        gate_img = 2 / (1 + torch.exp(-(block.excite[1].weight @ z + block.excite[1].bias)))
        torch.testing.assert_close(out_ehr[i], gate_ehr * h_ehr[i], atol=ATOL, rtol=0)
        torch.testing.assert_close(out_img[i], gate_img * h_img[i], atol=ATOL, rtol=0)


@pytest.mark.parametrize("learn_missing", [False, True])
def test_mmtm_net_matches_transcription(learn_missing):
    net = MMTMNet("ts", "img", LSTMEncoder(3, 4), IdentityEncoder(6), 2.0, (), 2, 0.0, learn_missing=learn_missing).double().eval()
    if learn_missing:
        nn.init.normal_(net.missing.vector)
    lengths, present = [3, 1, 5], [True, not learn_missing, True]
    blocks = {"ts": sequence_block(lengths, 3), "img": vector_block(present, 6)}
    out = net(**blocks)
    layers = net.ehr_encoder.layers
    for i, length in enumerate(lengths):
        states = run_rows(layers[:1], blocks["ts"]["x"][i, :length])
        v_img = blocks["img"]["x"][i] if present[i] else net.missing.vector
        gated_states, gated_img = net.mmtm([states[None], v_img[None]], [states.mean(0)[None], v_img[None]])
        v_ehr = run_rows(layers[1:], gated_states[0])[-1]
        torch.testing.assert_close(out[i], net.head(torch.cat([v_ehr, gated_img[0]])), atol=ATOL, rtol=0)

