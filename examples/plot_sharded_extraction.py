"""
Embedding extraction over a Dask cluster
========================================

Encoding thousands of CT volumes with a 2-D foundation model is the slow step of an
imaging pipeline. :class:`~skfusion.encoders.CTVolumeEmbedder` and
:class:`~skfusion.encoders.ImageEmbedder` take ``n_jobs`` and follow the active joblib
backend: inside ``with joblib.parallel_backend("dask"):`` the rows are cut into one chunk
per Dask worker, every worker receives the fitted embedder once with its chunk, and the
chunks come back in row order. The result is the single-process one, the cache folder is
shared by the workers, and a bad file fails with the same error as without Dask.

This example runs a two-process ``LocalCluster`` on this machine; on a real cluster, pass
the scheduler's address to ``distributed.Client`` and put the images and ``cache_dir`` on
a filesystem every worker sees.

Dask starts its worker processes by importing this script again, so the code that does
the work sits under ``if __name__ == "__main__":``, as in any script that starts worker
processes.
"""

# %%
# A cohort of NIfTI volumes and a small backbone
# ----------------------------------------------
# Twenty volumes of six axial slices in Hounsfield units, written as NIfTI files, and one
# patient without a scan. ``TinyCNN`` stands in for a real slice encoder (a
# MedImageInsight module, a torchvision network with local weights): any ``nn.Module``
# mapping ``(B, 3, H, W)`` batches to ``(B, d)`` embeddings will do.
import shutil
import tempfile
from pathlib import Path

import distributed
import joblib
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from torch import nn

from skfusion.encoders import CTVolumeEmbedder


class TinyCNN(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, d, 3, stride=2), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x):
        return self.layers(x).flatten(1)


def write_cohort(folder, n_patients=20, n_slices=6, size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    body = yy**2 + xx**2 < (0.4 * size) ** 2
    paths = []
    for i in range(n_patients):
        volume = np.full((n_slices, size, size), -1000.0, dtype=np.float32)
        volume[:, body] = rng.uniform(-100, 60) + rng.normal(0, 20, (n_slices, int(body.sum())))
        # (z, y, x) volume stored as (x, y, z) with LPS axes, the layout the reader expects.
        image = nib.Nifti1Image(volume.transpose(2, 1, 0), np.diag([-1.0, -1.0, 2.5, 1.0]))
        nib.save(image, folder / f"patient_{i:02d}.nii.gz")
        paths.append(str(folder / f"patient_{i:02d}.nii.gz"))
    return pd.DataFrame({"patient": np.arange(n_patients + 1), "ct": paths[:7] + [None] + paths[7:]})


if __name__ == "__main__":
    # The workers run one torch thread each (Dask's default); so does this process, so
    # that both runs add up float32 sums in the same order and agree to the last bit.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    backbone = TinyCNN()
    workdir = Path(tempfile.mkdtemp(prefix="skfusion-dask-"))
    X = write_cohort(workdir)
    single = CTVolumeEmbedder(backbone=backbone, image_size=32, device="cpu").fit_transform(X)
    print("one process:", single.shape)

# %%
# The same extraction on the cluster
# ----------------------------------
# ``n_jobs=None`` (the default) follows the backend: under the dask backend there is one
# chunk per worker thread, here two. The output is the single-process frame: the same
# values, rows, columns and NaN row for the patient without a scan.
if __name__ == "__main__":
    # The dashboard on a free port: the default, 8787, may be another cluster's.
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    embedder = CTVolumeEmbedder(backbone=backbone, image_size=32, device="cpu", cache_dir=workdir / "cache")
    embedder.fit(X)
    with joblib.parallel_backend("dask"):
        sharded = embedder.transform(X)
    print("two workers:", sharded.shape)
    pd.testing.assert_frame_equal(single, sharded, check_exact=True)
    print("identical to one process:", True)
    print("missing scan gives a NaN row:", bool(sharded.iloc[7, 1:].isna().all()))

# %%
# A shared cache resumes an interrupted job
# -----------------------------------------
# Every worker writes finished volumes to ``cache_dir`` (each entry written to a
# temporary file and renamed into place, so no worker ever reads half an entry). Removing
# half of the entries plays the part of a job killed half-way: the rerun reads the
# ten entries left and computes only the ten missing volumes.
if __name__ == "__main__":
    entries = sorted((workdir / "cache").glob("*.emb"))
    for entry in entries[::2]:
        entry.unlink()
    kept = {entry: entry.stat().st_mtime_ns for entry in entries[1::2]}
    with joblib.parallel_backend("dask"):
        resumed = embedder.transform(X)
    pd.testing.assert_frame_equal(single, resumed, check_exact=True)
    untouched = sum(entry.stat().st_mtime_ns == mtime for entry, mtime in kept.items())
    print(f"{len(entries)} entries: {len(entries) - len(kept)} computed again, {untouched} read back")
    print("entries after the rerun:", len(list((workdir / "cache").glob("*.emb"))))

# %%
# A bad file is named, as without Dask
# ------------------------------------
# A worker that meets an unreadable file raises the embedder's own ``ValueError``, which
# reaches this process unchanged.
if __name__ == "__main__":
    (workdir / "broken.nii").write_bytes(b"not a NIfTI file")
    bad = X.assign(ct=X["ct"].where(X.index != 15, str(workdir / "broken.nii")))
    try:
        with joblib.parallel_backend("dask"):
            embedder.transform(bad)
    except ValueError as exc:
        print(f"{type(exc).__name__}: {exc}")

    client.close()
    cluster.close()
    shutil.rmtree(workdir)
