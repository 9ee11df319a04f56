"""CLMBREmbedder's bad inputs: each is a ValueError naming the file, row, column or field.

The catalogue of issue 10 for the CLMBR encoder: event frames with values that are not
numbers or times that are not finite (which gave all-NaN rows, read downstream as a missing
modality), and checkpoints whose files are corrupted or whose weights or age statistics
would make NaN embeddings. Every checkpoint here is a tiny one written by the test.
"""

import json

import msgpack
import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_float32_close
from safetensors.torch import load_file, save_file

from skfusion.encoders.clmbr import CLMBREmbedder
from skfusion.modules.clmbr import CLMBRModel, complete_config, init_clmbr_weights, save_femr_checkpoint

BIRTH = "SNOMED/184099003"
YEAR_SECONDS = 365.25 * 86400.0
DICTIONARY = {
    "vocab": [
        {"type": "code", "code_string": BIRTH, "weight": -0.5},
        {"type": "code", "code_string": "Dx/A", "weight": -0.4},
        {"type": "numeric", "code_string": "Lab/B", "val_start": float("-inf"), "val_end": 1.0, "weight": -0.2},
        {"type": "numeric", "code_string": "Lab/B", "val_start": 1.0, "val_end": float("inf"), "weight": -0.2},
    ],
    "is_hierarchical": False,
    "age_stats": {"mean": 40 * YEAR_SECONDS, "std": 20 * YEAR_SECONDS},
}
FIT = dict(hidden_dim=8, n_layers=1, n_heads=2, intermediate_dim=8, min_frequency=1, max_epochs=1, device="cpu")


def patient(offset=0.0):
    return pd.DataFrame(
        {
            "time": [-20000.0, 0.0, 1.0 + offset, 2.0 + offset],
            "code": [BIRTH, "Dx/A", "Lab/B", "Lab/B"],
            "numeric_value": [np.nan, np.nan, 0.5, 2.0],
        }
    )


def frame_with(column, value, row=2):
    """A patient whose event ``row`` has ``value`` in ``column`` (the column becomes object)."""
    frame = patient()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def float_times(time):
    """A patient whose event 2 is at ``time`` (a float column)."""
    return frame_with("time", time).astype({"time": float})


def two_rows(bad):
    return pd.DataFrame({"ehr": [patient(), bad]}, index=["p1", "p2"])


def checkpoint(path, dictionary=DICTIONARY, edit=None):
    """A tiny femr checkpoint folder; ``edit`` changes its state dict before it is written."""
    config = complete_config(
        {"vocab_size": 4, "hidden_size": 8, "intermediate_size": 8, "n_heads": 2, "n_layers": 1,
         "use_normed_ages": True},
        "test",
    )
    model = CLMBRModel(config, clmbr_vocab_size=4)
    init_clmbr_weights(model, torch.Generator().manual_seed(0))
    save_femr_checkpoint(path, model, dictionary)
    if edit is not None:
        state = load_file(str(path / "model.safetensors"))
        edit(state)
        save_file(state, str(path / "model.safetensors"))
    return path


# ------------------------------------------------------------------------------ event frames
BAD_FRAMES = [
    # Read by the shared event-frame reader (skfusion.encoders._events.as_event_frame).
    pytest.param(float_times(np.inf), r"event frame row 2 \(position\), column 'time': time inf is not finite",
                 id="time inf"),
    pytest.param(float_times(-np.inf), r"event frame row 2 \(position\), column 'time': time -inf is not finite",
                 id="time -inf"),
    # CLMBR's own check: an age in days must fit femr's age features.
    pytest.param(float_times(1e300), r"column 'time'.*1e\+300 days.*1000 years", id="1e300"),
    pytest.param(float_times(1e7), r"column 'time'.*1.002e\+07 days.*1000 years", id="1e7"),
    pytest.param(frame_with("time", "x"), r"event frame row 2 \(position\), column 'time': 'x' is not a number",
                 id="time str"),
    pytest.param(frame_with("time", "12"), r"event frame row 2 \(position\), column 'time': '12' is not a number",
                 id="time '12'"),
    pytest.param(
        pd.DataFrame({"time": ["2000-01-01", "soon"], "code": ["Dx/A", "Dx/A"]}),
        r"event frame row 1 \(position\), column 'time': 'soon' is not a time",
        id="time not a date",
    ),
    pytest.param(frame_with("numeric_value", "abc"), r"event frame row 2 \(position\), column 'numeric_value': 'abc' is not a number",
                 id="value str"),
    pytest.param(frame_with("numeric_value", np.inf).astype({"numeric_value": float}),
                 r"event frame row 2 \(position\), column 'numeric_value': value inf is not finite", id="value inf"),
    pytest.param(frame_with("numeric_value", -np.inf), r"event frame row 2 \(position\), column 'numeric_value': value -inf is not finite",
                 id="value -inf object"),
]


@pytest.mark.parametrize("bad, message", BAD_FRAMES)
def test_bad_event_frame_names_row_and_column_in_fit(bad, message):
    with pytest.raises(ValueError, match=r"row 'p2' of column 'ehr': " + message):
        CLMBREmbedder(**FIT, birth_code=None).fit(two_rows(bad))


@pytest.mark.parametrize("bad, message", BAD_FRAMES)
def test_bad_event_frame_names_row_and_column_with_a_checkpoint(tmp_path, bad, message):
    emb = CLMBREmbedder(pretrained=checkpoint(tmp_path / "ckpt"), birth_code=None).fit(two_rows(patient()))
    with pytest.raises(ValueError, match=r"row 'p2' of column 'ehr': " + message):
        emb.transform(two_rows(bad))


def test_age_beyond_the_float16_age_features_of_the_dictionary(tmp_path):
    # age_stats.std of one day: an age of 10 years is 3650 standard deviations out, and
    # femr's float16 square of it would be inf (NaN embedding).
    tight = {**DICTIONARY, "age_stats": {"mean": 0.0, "std": 86400.0}}
    emb = CLMBREmbedder(pretrained=checkpoint(tmp_path / "ckpt", dictionary=tight))
    late = patient().assign(time=[0.0, 3650.0, 3651.0, 3652.0])
    message = r"row 'p2' of column 'ehr': column 'time' gives an age of 3652 days, more than 256 "
    with pytest.raises(ValueError, match=message + r"standard deviations \(age_stats of .*dictionary.msgpack\)"):
        emb.fit_transform(pd.DataFrame({"ehr": [late]}, index=["p2"]))


@pytest.mark.float32_batch
def test_accepted_extremes_embed_finite(tmp_path):
    """Inputs at the edge of what is accepted give finite embeddings, fitted or loaded."""
    old = patient().assign(time=[-900 * 365.25, 0.0, 1.0, 2.0])  # 900 years old
    big = patient().assign(numeric_value=[np.nan, np.nan, -1e300, 1e300])
    X = pd.DataFrame({"ehr": [patient(), old, big] * 4})
    for emb in (CLMBREmbedder(**FIT, random_state=0), CLMBREmbedder(pretrained=checkpoint(tmp_path / "ckpt"))):
        # transform raises on an embedding that is not finite; each patient, four times in the
        # batch, embeds as itself wherever it stands: no extreme value spills into other rows.
        Z = emb.fit(X).transform(X).to_numpy()
        for repeat in Z.reshape(4, 3, -1)[1:]:
            assert_float32_close(repeat, Z[:3])


def test_diverging_pretraining_names_lr():
    X = pd.DataFrame({"ehr": [patient(offset=i) for i in range(16)]})
    with pytest.raises(ValueError, match=r"training diverged: .* Lower the learning rate \(lr=1000000000000.0\)"):
        CLMBREmbedder(**{**FIT, "max_epochs": 50}, lr=1e12, random_state=0).fit(X)


# -------------------------------------------------------------------------------- checkpoints
def _set(key, value):
    return lambda state: state[key].fill_(value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("transformer.layers.0.norm.weight", np.nan), r"\['transformer.layers.0.norm.weight'\] hold NaN"),
        (_set("transformer.embed.weight", np.inf), r"\['transformer.embed.weight'\] hold NaN or infinite"),
        (_set("task_model.final_layer.bias", -np.inf), r"\['task_model.final_layer.bias'\] hold NaN or infinite"),
    ],
)
def test_non_finite_weights_are_refused_at_load_naming_file_and_tensor(tmp_path, edit, message):
    ckpt = checkpoint(tmp_path / "ckpt", edit=edit)
    with pytest.raises(ValueError, match=r"model.safetensors: tensor\(s\) " + message):
        CLMBREmbedder(pretrained=ckpt).fit(two_rows(patient()))


def test_weights_that_overflow_float32_are_refused_at_transform(tmp_path):
    ckpt = checkpoint(tmp_path / "ckpt", edit=_set("transformer.layers.0.input_proj.weight", 1e20))
    emb = CLMBREmbedder(pretrained=ckpt)
    with pytest.raises(ValueError, match=r"embedding of 2 row\(s\) of column 'ehr' \(first: row 'p1' of column "
                                         r"'ehr'\) is not finite: its weights overflow float32"):
        emb.fit_transform(two_rows(patient()))


@pytest.mark.parametrize(
    "age_stats, message",
    [
        ({"mean": 0.0, "std": 0.0}, r"age_stats.std is 0.0; ages are divided by it, so it must be positive"),
        ({"mean": 0.0, "std": -1.0}, r"age_stats.std is -1.0.*must be positive"),
        ({"mean": 0.0, "std": float("nan")}, r"age_stats.std is nan; it must be a finite number"),
        ({"mean": float("inf"), "std": 1.0}, r"age_stats.mean is inf; it must be a finite number"),
        ({"std": 1.0}, r"age_stats.mean is None"),
        ({"mean": "40", "std": 1.0}, r"age_stats.mean is '40'"),
        ([1, 2], r"age_stats.mean is None"),
    ],
)
def test_bad_age_stats_name_file_and_field(tmp_path, age_stats, message):
    ckpt = checkpoint(tmp_path / "ckpt", dictionary={**DICTIONARY, "age_stats": age_stats})
    with pytest.raises(ValueError, match=r"dictionary.msgpack: " + message):
        CLMBREmbedder(pretrained=ckpt).fit(two_rows(patient()))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vocab": {"a": 1}}, r"'vocab' is a dict, not a list"),
        ({"vocab": [DICTIONARY["vocab"][0], "Dx/A"]}, r"vocab entry 1 is not a map with a 'type'"),
        ({"vocab": [{"type": "code"}]}, r"vocab entry 0 of type 'code' lacks \['code_string'\]"),
        (
            {"vocab": [{"type": "numeric", "code_string": "Lab/B", "val_start": "low", "val_end": 1.0}]},
            r"vocab entry 0 has value bounds \['low', 1.0\] that are not numbers",
        ),
    ],
)
def test_bad_vocabulary_names_file_and_entry(tmp_path, change, message):
    ckpt = checkpoint(tmp_path / "ckpt", dictionary={**DICTIONARY, **change})
    with pytest.raises(ValueError, match=r"dictionary.msgpack: " + message):
        CLMBREmbedder(pretrained=ckpt).fit(two_rows(patient()))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_header(path):
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_truncate, r"model.safetensors: is not a readable safetensors file \(truncated or corrupted\?\)"),
        (_corrupt_header, r"model.safetensors: is not a readable safetensors file"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(500)), r"model.safetensors: is not a readable"),
        (lambda p: p.write_bytes(b""), r"model.safetensors: is not a readable"),
    ],
)
def test_corrupted_weights_file_is_named(tmp_path, damage, message):
    ckpt = checkpoint(tmp_path / "ckpt")
    damage(ckpt / "model.safetensors")
    with pytest.raises(ValueError, match=message):
        CLMBREmbedder(pretrained=ckpt).fit(two_rows(patient()))


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"architectures": ["FEMRModel"], ', r"config.json: is not a JSON file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", r"config.json: is not a JSON file"),
        (b"not json at all", r"config.json: is not a JSON file"),
        (b'["FEMRModel"]', r"config.json: holds a JSON list, not an object"),
        (json.dumps({"architectures": ["FEMRModel"], "transformer_config": 3}).encode(),
         r"config.json: has no 'transformer_config' object"),
    ],
)
def test_config_that_is_not_json_is_named(tmp_path, content, message):
    ckpt = checkpoint(tmp_path / "ckpt")
    (ckpt / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        CLMBREmbedder(pretrained=ckpt).fit(two_rows(patient()))


@pytest.mark.parametrize("seed", range(6))
def test_dictionary_of_random_bytes_is_named(tmp_path, seed):
    ckpt = checkpoint(tmp_path / "ckpt")
    (ckpt / "dictionary.msgpack").write_bytes(np.random.default_rng(seed).bytes(64))
    with pytest.raises(ValueError, match=r"dictionary.msgpack: (is not a msgpack file|holds a \w+, not femr's)"):
        CLMBREmbedder(pretrained=ckpt).fit(two_rows(patient()))


def test_dictionary_that_is_not_a_map_is_named(tmp_path):
    ckpt = checkpoint(tmp_path / "ckpt")
    (ckpt / "dictionary.msgpack").write_bytes(msgpack.packb([1, 2, 3]))
    with pytest.raises(ValueError, match=r"dictionary.msgpack: holds a list, not femr's dictionary"):
        CLMBREmbedder(pretrained=ckpt).fit(two_rows(patient()))
