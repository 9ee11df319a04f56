"""Embedding extraction sharded over a Dask cluster (``n_jobs`` under joblib's dask backend).

One two-process ``LocalCluster`` serves the whole module. Every row is computed by the same
code on the same CPU in both runs, with one torch thread (distributed's nanny starts
workers with ``OMP_NUM_THREADS=1``, and the single-process reference is pinned to one
thread too: a multi-threaded reduction adds in another order and changes the last bit).
``CTVolumeEmbedder`` encodes one volume per forward call here (``batch_size`` is its number
of slices), so each row is computed in the same batch in both runs and must agree exactly.
``ImageEmbedder`` packs images into batches that a chunk cuts elsewhere; CPU kernels round a
float32 row by its batch, so its outputs agree to float32 rounding. Work done on the workers
is observed through files that a backbone leaves in a log folder, named by the process that
made them.
"""

import os
import uuid
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # a Dask cluster
nib = pytest.importorskip("nibabel")
Image = pytest.importorskip("PIL.Image")
pytest.importorskip("pydicom")
from _batch_invariance import assert_float32_close  # noqa: E402
from test_ct import ChannelMeanLinear, write_series  # noqa: E402

from skfusion.encoders import CTVolumeEmbedder, ImageEmbedder  # noqa: E402
from skfusion.encoders._cache import EmbeddingCache, cache_key, content_hash  # noqa: E402
from skfusion._volumes import series_files  # noqa: E402

N_SLICES = 4  # slices per CT volume, and the batch size: one forward call per volume


class LoggedNet(ChannelMeanLinear):
    """ChannelMeanLinear leaving a file in ``log`` at each forward call and each unpickling.

    ``log`` is a plain attribute, outside the module's state dict and printed structure, so
    it does not enter the cache fingerprint: nets logging to different folders share entries.
    """

    def __init__(self, log, d=4):
        super().__init__(d)
        self.log = str(log)

    def forward(self, x):
        _leave(self.log, "forward")
        return super().forward(x)

    def __setstate__(self, state):
        super().__setstate__(state)
        _leave(self.log, "unpickled")


def _leave(folder, event):
    Path(folder, f"{event}-{os.getpid()}-{uuid.uuid4().hex}").touch()


def worker_events(folder, event):
    """How many ``event`` files processes other than this one left in ``folder``."""
    return sum(p.name.split("-")[1] != str(os.getpid()) for p in Path(folder).glob(f"{event}-*"))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def on_cluster(encoder, X):
    with joblib.parallel_backend("dask"):
        return encoder.transform(X)


@pytest.fixture(scope="module")
def ct_frame(tmp_path_factory):
    """Three DICOM series, a NIfTI file and three arrays (all 4 slices), with missing cells."""
    root = tmp_path_factory.mktemp("ct")
    rng = np.random.default_rng(0)
    cells = []
    for s in range(3):
        # A different intercept per series, so that no two volumes share a cache entry.
        def shift(k, ds, intercept=-1000 + 40 * s):
            ds.RescaleIntercept = intercept

        write_series(root / f"series{s}", n=N_SLICES, edit=shift)
        cells.append(str(root / f"series{s}"))
    nifti = rng.normal(-200, 300, (N_SLICES, 40, 36)).astype(np.float32)
    lps = np.diag([-1.0, -1.0, 2.5, 1.0])  # (x, y, z) storage in the axial DICOM layout
    nib.save(nib.Nifti1Image(nifti.transpose(2, 1, 0), lps), root / "volume.nii.gz")
    cells.append(root / "volume.nii.gz")
    cells += [rng.normal(0, 400, (N_SLICES, 32, 32)).astype(np.float32) for _ in range(3)]
    cells = cells[:2] + [None] + cells[2:5] + [None] + cells[5:]
    index = np.arange(len(cells)) * 10  # not 0..n-1: rows are put back by position, not label
    return pd.DataFrame({"id": np.arange(len(cells)), "ct": pd.Series(cells, index=index, dtype=object)})


@pytest.fixture(scope="module")
def image_frame(tmp_path_factory):
    """Five PNG files, two arrays and a missing cell."""
    root = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(1)
    cells = []
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48), dtype=np.uint8)).save(root / f"x{i}.png")
        cells.append(str(root / f"x{i}.png"))
    cells += [rng.random((50, 44)), None, rng.random((36, 36, 3))]
    return pd.DataFrame({"img": pd.Series(cells, dtype=object), "age": np.arange(len(cells), dtype=float)})


# --------------------------------------------------------------------------- same output


def assert_same_output(single, sharded, assert_values=np.testing.assert_array_equal):
    """Same columns, index, dtypes and missing rows; values (token arrays cell by cell) by ``assert_values``."""
    pd.testing.assert_index_equal(sharded.columns, single.columns)
    pd.testing.assert_index_equal(sharded.index, single.index)
    pd.testing.assert_series_equal(sharded.dtypes, single.dtypes)
    tokens = [c for c in single.columns if single[c].dtype == object]
    numbers = single.columns.difference(tokens, sort=False)
    assert_values(sharded[numbers].to_numpy(), single[numbers].to_numpy())
    for column in tokens:
        for a, b in zip(single[column], sharded[column]):
            assert (a is None) == (b is None)
            if a is not None:
                assert_values(b, a)
                assert a.dtype == b.dtype


@pytest.mark.float32_batch
@pytest.mark.parametrize("backbone", [None, "module"])
def test_image_embedder_on_the_cluster_matches_one_process(client, image_frame, backbone):
    params = {} if backbone is None else {"backbone": ChannelMeanLinear(d=6), "resize": 32, "image_size": 28}
    encoder = ImageEmbedder(device="cpu", **params).fit(image_frame)
    single = encoder.transform(image_frame)
    sharded = on_cluster(encoder, image_frame)
    # One batch of seven images against chunks of four and three.
    assert_same_output(single, sharded, assert_float32_close)
    present, block = image_frame["img"].notna(), sharded.drop(columns="age").notna()
    assert block.all(axis=1).equals(present) and block.any(axis=1).equals(present)


@pytest.mark.parametrize(("backbone", "pool"), [(None, "mean"), ("module", "mean"), ("module", None)])
def test_ct_embedder_on_the_cluster_matches_one_process(client, ct_frame, backbone, pool):
    params = {} if backbone is None else {"backbone": ChannelMeanLinear(), "image_size": 24}
    encoder = CTVolumeEmbedder(device="cpu", batch_size=N_SLICES, pool=pool, **params).fit(ct_frame)
    single = encoder.transform(ct_frame)
    sharded = on_cluster(encoder, ct_frame)
    assert_same_output(single, sharded)
    assert list(sharded.index) == list(ct_frame.index)
    present, block = ct_frame["ct"].notna(), sharded.drop(columns="id").notna()
    assert block.all(axis=1).equals(present) and block.any(axis=1).equals(present)


def test_n_jobs_runs_chunks_on_the_workers_with_one_copy_of_the_backbone_each(client, ct_frame, tmp_path):
    encoder = CTVolumeEmbedder(backbone=LoggedNet(tmp_path), device="cpu", batch_size=N_SLICES).fit(ct_frame)
    single = encoder.transform(ct_frame)
    assert worker_events(tmp_path, "forward") == 0
    sharded = on_cluster(encoder.set_params(n_jobs=2), ct_frame)
    assert_same_output(single, sharded)
    # Two chunks, each unpickled once on its worker with the fitted backbone (the copy of
    # the constructor's module is not sent besides it), and every volume encoded there.
    assert worker_events(tmp_path, "unpickled") == 2
    assert worker_events(tmp_path, "forward") == ct_frame["ct"].notna().sum()


def test_n_jobs_one_stays_in_this_process(client, ct_frame, tmp_path):
    encoder = CTVolumeEmbedder(backbone=LoggedNet(tmp_path), device="cpu", n_jobs=1).fit(ct_frame)
    on_cluster(encoder, ct_frame)
    assert worker_events(tmp_path, "unpickled") == worker_events(tmp_path, "forward") == 0


# --------------------------------------------------------------------------- shared cache


def test_shared_cache_resumes_an_interrupted_job_and_then_computes_nothing(client, ct_frame, tmp_path):
    log, cache = tmp_path / "log", tmp_path / "cache"
    log.mkdir()

    def encoder(cache_dir):
        net = LoggedNet(log)
        return CTVolumeEmbedder(backbone=net, device="cpu", batch_size=N_SLICES, cache_dir=cache_dir)

    reference = encoder(None).fit(ct_frame).transform(ct_frame)
    # A job killed after the first four rows (three volumes) left their entries behind.
    encoder(cache).fit(ct_frame).transform(ct_frame.iloc[:4])
    assert len(list(cache.glob("*.emb"))) == 3
    resumed = on_cluster(encoder(cache).fit(ct_frame), ct_frame)
    n_volumes = ct_frame["ct"].notna().sum()
    assert worker_events(log, "forward") == n_volumes - 3
    assert_same_output(reference, resumed)
    entries = {p: p.stat().st_mtime_ns for p in cache.glob("*.emb")}
    assert len(entries) == n_volumes

    again = on_cluster(encoder(cache).fit(ct_frame), ct_frame)
    assert worker_events(log, "forward") == n_volumes - 3
    assert_same_output(reference, again)
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.emb")} == entries


def test_workers_writing_the_same_entries_leave_them_valid(client, ct_frame, tmp_path):
    volumes = ct_frame["ct"].dropna().tolist()
    # The second chunk repeats the first one: both workers write every key at the same time.
    X = pd.DataFrame({"ct": pd.Series(volumes + volumes, dtype=object)})
    encoder = CTVolumeEmbedder(device="cpu", cache_dir=tmp_path).fit(X)
    sharded = on_cluster(encoder, X)
    assert_same_output(CTVolumeEmbedder(device="cpu").fit(X).transform(X), sharded)
    cache = EmbeddingCache(tmp_path)
    for volume in volumes:
        assert cache.get(cache_key(content_hash(volume, series_files), encoder.fingerprint_)) is not None
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".emb"] * len(volumes)


# --------------------------------------------------------------------------- errors


def with_cell(X, column, position, cell):
    cells = X[column].tolist()
    cells[position] = cell
    return X.assign(**{column: pd.Series(cells, index=X.index, dtype=object)})


def assert_same_error(encoder, X, match):
    """The worker's error is the single-process one: a ValueError with the same message."""
    with pytest.raises(ValueError, match=match) as single:
        encoder.transform(X)
    with pytest.raises(ValueError) as sharded:
        on_cluster(encoder, X)
    assert sharded.type is ValueError
    assert str(sharded.value) == str(single.value)


def test_bad_image_file_on_a_worker_is_the_named_value_error(client, image_frame, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    X = with_cell(image_frame, "img", 5, str(tmp_path / "notes.txt"))  # in the second chunk
    encoder = ImageEmbedder(device="cpu", resize=32, image_size=28).fit(image_frame)
    assert_same_error(encoder, X, "notes.txt.*not a readable image")


def test_bad_cells_on_a_worker_are_the_named_value_errors(client, ct_frame, tmp_path):
    encoder = CTVolumeEmbedder(device="cpu").fit(ct_frame)
    (tmp_path / "broken.nii").write_bytes(b"garbage")
    # Row 7 is non-missing cell 5, in the second chunk.
    broken = with_cell(ct_frame, "ct", 7, tmp_path / "broken.nii")
    assert_same_error(encoder, broken, "broken.nii.*not a readable NIfTI")
    flat = with_cell(ct_frame, "ct", 7, np.zeros((4, 4)))
    assert_same_error(encoder, flat, "column 'ct', non-missing cell 5: .*3-D")


@pytest.mark.parametrize("encoder", [CTVolumeEmbedder, ImageEmbedder])
@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", [2]])
def test_bad_n_jobs_is_refused(encoder, n_jobs):
    cell = np.zeros((2, 8, 8)) if encoder is CTVolumeEmbedder else np.zeros((8, 8))
    X = pd.DataFrame({encoder()._column: pd.Series([cell], dtype=object)})
    with pytest.raises(ValueError, match="'n_jobs' parameter"):
        encoder(n_jobs=n_jobs).fit(X)
