"""The resumable, content-addressed embedding cache shared by the image encoders."""

import functools
import hashlib
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from skfusion.encoders import _cache
from skfusion.encoders._cache import EmbeddingCache, callable_fingerprint, content_hash
from skfusion.encoders.ct import CTVolumeEmbedder
from skfusion.encoders.image import ImageEmbedder


class CallLog:
    """Shared by every copy of a backbone (fit deep-copies the module it is given)."""

    def __init__(self, fail_at=None):
        self.calls, self.slices, self.fail_at = 0, 0, fail_at

    def __deepcopy__(self, memo):
        return self


class CountingNet(nn.Module):
    """Channel means through a fixed linear map; counts its forward calls, may fail on one."""

    def __init__(self, log, seed=0):
        super().__init__()
        self.log = log
        self.linear = nn.Linear(3, 5)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.linear.weight.copy_(torch.randn(5, 3, generator=g))
            self.linear.bias.zero_()

    def forward(self, x):
        self.log.calls += 1
        self.log.slices += len(x)
        if self.log.calls == self.log.fail_at:
            raise RuntimeError("killed")
        return self.linear(x.mean((2, 3)))


def volumes(n=6, n_slices=4, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"ct": [rng.normal(0, 400, (n_slices, 6, 6)).astype(np.float32) for _ in range(n)]})


def embed(X, cache_dir, log=None, **params):
    log = log or CallLog()
    # One volume (4 slices) per forward call, so calls count volumes, and each volume is
    # encoded in a batch of its own in every run: whatever is cached, outputs agree exactly.
    enc = CTVolumeEmbedder(backbone=CountingNet(log), batch_size=4, cache_dir=cache_dir, **params)
    out = enc.fit(X)
    log.calls = log.slices = 0  # fit probes the backbone once
    return out.transform(X), log


def test_interrupted_run_resumes_with_only_the_remaining_volumes(tmp_path):
    X = volumes(n=6)
    reference, _ = embed(X, None)
    failing = CallLog(fail_at=4)
    enc = CTVolumeEmbedder(backbone=CountingNet(failing), batch_size=4, cache_dir=tmp_path).fit(X)
    failing.calls = 0
    with pytest.raises(RuntimeError, match="killed"):
        enc.transform(X)
    assert len(list(tmp_path.glob("*.emb"))) == 3
    resumed, log = embed(X, tmp_path)
    assert log.calls == 3
    np.testing.assert_array_equal(resumed.to_numpy(), reference.to_numpy())
    again, log = embed(X, tmp_path)
    assert log.calls == 0
    np.testing.assert_array_equal(again.to_numpy(), reference.to_numpy())


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_entry_is_ignored_and_recomputed(tmp_path, damage):
    X = volumes(n=3)
    reference, _ = embed(X, tmp_path)
    entry = sorted(tmp_path.glob("*.emb"))[1]
    blob = entry.read_bytes()
    entry.write_bytes(
        {
            "truncate": blob[: len(blob) // 2],
            "flip": blob[:-3] + bytes([blob[-3] ^ 0xFF]) + blob[-2:],
            "empty": b"",
            "garbage": b"\x93NUMPY" + blob[6:],
        }[damage]
    )
    out, log = embed(X, tmp_path)
    assert log.calls == 1
    np.testing.assert_array_equal(out.to_numpy(), reference.to_numpy())
    assert entry.read_bytes() == blob


def test_entry_copied_over_another_keys_file_is_recomputed(tmp_path):
    X = volumes(n=2)
    reference, _ = embed(X, tmp_path)
    first, second = sorted(tmp_path.glob("*.emb"))
    kept = second.read_bytes()
    second.write_bytes(first.read_bytes())  # valid entry, checksum intact, wrong key
    out, log = embed(X, tmp_path)
    assert log.calls == 1
    np.testing.assert_array_equal(out.to_numpy(), reference.to_numpy())
    assert second.read_bytes() == kept


def forge(entry, payload):
    """Overwrite ``entry`` with a well-formed entry of its own key: right magic and checksum."""
    body = entry.stem.encode() + b"\n" + payload
    entry.write_bytes(_cache._MAGIC + hashlib.sha256(body).digest() + body)


def npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "payload",
    [
        npy(np.array([{"tokens": 1}, None], dtype=object), allow_pickle=True),
        pickle.dumps(np.ones((4, 5), np.float32)),
        npy(np.ones((4, 5), np.int64)),
        npy(np.ones((4, 5), bool)),
        npy(np.ones(5, np.float32)),
        npy(np.ones((2, 4, 5), np.float32)),
        npy(np.ones((0, 5), np.float32)),
        npy(np.full((4, 5), np.nan, np.float32)),
        npy(np.zeros(3, dtype=[("a", "f4"), ("b", "f4")])),
        b"",
    ],
    ids=["object", "pickle", "int", "bool", "1-d", "3-d", "no-slice", "nan", "structured", "empty"],
)
def test_forged_entry_with_a_valid_checksum_is_recomputed(tmp_path, payload):
    X = volumes(n=2)
    reference, _ = embed(X, tmp_path)
    entry = sorted(tmp_path.glob("*.emb"))[0]
    forge(entry, payload)
    assert EmbeddingCache(tmp_path).get(entry.stem) is None
    out, log = embed(X, tmp_path)
    assert log.calls == 1
    np.testing.assert_array_equal(out.to_numpy(), reference.to_numpy())


def test_a_forged_entry_of_the_right_form_is_served(tmp_path):
    # Control for the test above: the same forging path with a proper payload is a hit.
    X = volumes(n=1)
    embed(X, tmp_path)
    entry = next(tmp_path.glob("*.emb"))
    forge(entry, npy(np.full((4, 5), 7.0, np.float64)))
    out, log = embed(X, tmp_path)
    assert log.calls == 0
    np.testing.assert_array_equal(out.to_numpy(), np.full((1, 5), 7.0))


def test_version_1_entries_are_recomputed(tmp_path):
    X = volumes(n=1)
    reference, _ = embed(X, tmp_path)
    entry = next(tmp_path.glob("*.emb"))
    payload = npy(reference.to_numpy().astype(np.float32) + 1)
    entry.write_bytes(b"SKFUSION-EMB1\n" + hashlib.sha256(payload).digest() + payload)
    out, log = embed(X, tmp_path)
    assert log.calls == 1
    np.testing.assert_array_equal(out.to_numpy(), reference.to_numpy())


def test_temporary_file_of_a_killed_writer_is_removed_once_stale(tmp_path):
    # A real writer process is killed (SIGKILL) between writing its temporary file and
    # moving it into place: the leftover is what a killed extraction leaves.
    code = (
        "import importlib.util as u, os, signal, sys\n"
        "import numpy as np\n"
        f"spec = u.spec_from_file_location('c', {_cache.__file__!r})\n"
        "c = u.module_from_spec(spec); spec.loader.exec_module(c)\n"
        "c.os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)\n"
        "c.EmbeddingCache(sys.argv[1]).put('k', np.ones((2, 3), np.float32))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    (left,) = tmp_path.glob(".tmp-*.emb")
    EmbeddingCache(tmp_path)
    assert left.exists()  # fresh: it may belong to a live writer
    old = time.time() - _cache.STALE_TMP_SECONDS - 60
    os.utime(left, (old, old))
    fresh = tmp_path / ".tmp-live.emb"
    fresh.write_bytes(b"being written")
    other = tmp_path / ".tmp-notes.txt"
    other.write_bytes(b"not ours")
    os.utime(other, (old, old))
    X = volumes(n=1)
    embed(X, tmp_path)  # fit and transform open the cache
    assert not left.exists() and fresh.exists() and other.exists()
    assert len(list(tmp_path.glob("[!.]*.emb"))) == 1


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cache.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put("k", np.ones((2, 3), np.float32))
    assert list(tmp_path.iterdir()) == []
    assert cache.get("k") is None


def test_concurrent_writers_leave_a_valid_entry(tmp_path):
    cache = EmbeddingCache(tmp_path)
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    threads = [threading.Thread(target=cache.put, args=("k", value)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(cache.get("k"), value)
    assert [p.name for p in tmp_path.iterdir()] == ["k.emb"]


def test_key_follows_content_and_output_changing_parameters(tmp_path):
    X = volumes(n=2)
    embed(X, tmp_path)
    # Same content in new objects, and pool (the cache keeps per-slice tokens): reused.
    assert embed(X.copy(deep=True), tmp_path)[1].calls == 0
    assert embed(X, tmp_path, pool=None)[1].calls == 0
    # Anything that changes slice embeddings: recomputed.
    assert embed(X, tmp_path, window="mace")[1].calls == 2
    assert embed(X, tmp_path, slices=(0, 2))[1].slices == 4
    assert embed(X, tmp_path, image_size=4)[1].calls == 2
    assert embed(X, tmp_path, mean=(0.5,), std=(0.5,))[1].calls == 2
    changed = X.copy(deep=True)
    changed.loc[1, "ct"] = changed.loc[1, "ct"] + 1
    assert embed(changed, tmp_path)[1].calls == 1


def test_heart_selector_and_its_version_are_part_of_the_key(tmp_path, monkeypatch):
    import skfusion.encoders.ct as ct

    X = volumes(n=1)
    key = lambda **p: CTVolumeEmbedder(cache_dir=tmp_path, **p).fit(X).fingerprint_  # noqa: E731
    heart = key(slices="heart")
    assert heart not in (key(), key(slices=(0, 4)))
    monkeypatch.setattr(ct, "HEART_SLICES_VERSION", ct.HEART_SLICES_VERSION + 1)
    assert key(slices="heart") != heart


def test_other_weights_are_another_key(tmp_path):
    X = volumes(n=2)
    a = CTVolumeEmbedder(backbone=CountingNet(CallLog(), seed=0), cache_dir=tmp_path).fit(X)
    b = CTVolumeEmbedder(backbone=CountingNet(CallLog(), seed=1), cache_dir=tmp_path).fit(X)
    c = CTVolumeEmbedder(backbone=CountingNet(CallLog(), seed=0), cache_dir=tmp_path).fit(X)
    assert a.fingerprint_ == c.fingerprint_ != b.fingerprint_
    descriptor = CTVolumeEmbedder(cache_dir=tmp_path).fit(X).fingerprint_
    assert descriptor not in (a.fingerprint_, b.fingerprint_)
    # The descriptor ignores the backbone normalisation, so its key does too.
    assert CTVolumeEmbedder(cache_dir=tmp_path, mean=(0.5,), std=(0.5,)).fit(X).fingerprint_ == descriptor
    assert CTVolumeEmbedder().fit(X).fingerprint_ is None


def test_cache_dir_set_after_fit_asks_for_a_refit(tmp_path):
    X = volumes(n=1)
    enc = CTVolumeEmbedder().fit(X).set_params(cache_dir=tmp_path)
    with pytest.raises(ValueError, match="cache_dir was set after fit"):
        enc.transform(X)


def test_file_content_not_path_is_hashed(tmp_path):
    (tmp_path / "a.nii").write_bytes(b"same bytes")
    (tmp_path / "b.nii").write_bytes(b"same bytes")
    (tmp_path / "c.nii").write_bytes(b"other bytes")
    hashes = [content_hash(tmp_path / n, None) for n in ("a.nii", "b.nii", "c.nii")]
    assert hashes[0] == hashes[1] != hashes[2]
    assert content_hash(np.zeros((2, 2), np.float32), None) != content_hash(np.zeros((4,), np.float32), None)


def select_middle(volume, keep=2):
    start = (len(volume) - keep) // 2
    return np.arange(start, start + keep)


def test_callable_fingerprints_are_deterministic_and_discriminating():
    fp = functools.partial(callable_fingerprint, param="slices")
    assert fp(select_middle) == fp(select_middle)
    assert fp(functools.partial(select_middle, keep=2)) != fp(functools.partial(select_middle, keep=3))
    assert fp(lambda v: v.mean((1, 2)) > 0) != fp(lambda v: v.mean((1, 2)) > 1)
    threshold = 3
    first = lambda v: v.mean((1, 2)) > threshold  # noqa: E731
    threshold = 4
    second = lambda v: v.mean((1, 2)) > threshold  # noqa: E731
    assert fp(first) == fp(second)  # same closure cell, value read at call time


def test_callable_fingerprint_is_stable_across_processes():
    # _cache.py is loaded on its own (no torch, no package import) to keep this fast.
    code = (
        "import importlib.util as u\n"
        f"spec = u.spec_from_file_location('c', {_cache.__file__!r})\n"
        "c = u.module_from_spec(spec); spec.loader.exec_module(c)\n"
        "callable_fingerprint = c.callable_fingerprint\n"
        "def pick(v):\n    return [i for i in range(len(v)) if str(i) in {'1', '2', '3', 'x'}]\n"
        "print(callable_fingerprint(pick, 'slices'))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_unidentifiable_callable_is_refused_only_with_a_cache(tmp_path):
    lock = threading.Lock()

    def selector(volume):
        with lock:
            return np.arange(len(volume))

    X = volumes(n=1)
    with pytest.raises(ValueError, match="slices=.*cannot be identified for the cache"):
        CTVolumeEmbedder(slices=selector, cache_dir=tmp_path).fit(X)
    assert CTVolumeEmbedder(slices=selector).fit_transform(X).shape == (1, 77)


def test_callable_slices_are_cached(tmp_path):
    X = volumes(n=2)
    first, _ = embed(X, tmp_path, slices=select_middle)
    second, log = embed(X, tmp_path, slices=select_middle)
    assert log.calls == 0
    np.testing.assert_array_equal(first.to_numpy(), second.to_numpy())


def test_image_embedder_shares_the_cache(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"img": [rng.random((20, 24)).astype(np.float32) for _ in range(3)]})
    log = CallLog()
    enc = ImageEmbedder(
        backbone=CountingNet(log), resize=16, image_size=12, batch_size=1, cache_dir=tmp_path
    ).fit(X)
    first = enc.transform(X)
    log.calls = 0
    second = enc.transform(X)
    assert log.calls == 0 and len(list(tmp_path.glob("*.emb"))) == 3
    np.testing.assert_array_equal(first.to_numpy(), second.to_numpy())


def test_progress_bar_follows_verbose(tmp_path, capsys):
    pytest.importorskip("tqdm")
    X = volumes(n=2)
    CTVolumeEmbedder(verbose=0).fit_transform(X)
    assert capsys.readouterr().err == ""
    CTVolumeEmbedder(verbose=1, cache_dir=tmp_path).fit_transform(X)
    assert "2/2" in capsys.readouterr().err
