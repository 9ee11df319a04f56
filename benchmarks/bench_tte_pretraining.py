"""Time-to-event pretraining of a CT encoder: linear probes on outcomes, against the baselines.

Data: :func:`skfusion.datasets.make_imaging_ehr_cohort`, CT-like volumes whose planted nodule
biomarkers drive the hazards of the future codes (and of held-out outcomes), with brighter
nuisance blobs that drive nothing. A pretraining cohort (volumes, events, index times) and
a held-out test cohort (volumes only at prediction).

For each outcome, a linear probe (standardised ridge Cox model, scikit-survival's
``CoxPHSurvivalAnalysis(alpha=1)``) is fitted on the pretraining cohort's embedding and
scored on the test cohort: Harrell's C and the cumulative/dynamic AUROC at fixed horizons,
with 95% bootstrap intervals (``skfusion.metrics.bootstrap_ci``). Embeddings:

- the untrained encoder (``TimeToEventPretraining(max_epochs=0)``: random weights);
- the TTE-pretrained encoder (same network, same seed);
- the same pair with a 3-D encoder on whole volumes, as in Huo et al. (min-max scaled, at the
  cohort's 8x32x32), once with the benchmark's ``PRETRAIN`` rate, epochs and batches and once at
  ``TimeToEventPretraining``'s defaults: MONAI's ResNet-10-3D at an eighth of its width
  (``volume_network("resnet10-3d", widen_factor=0.125)``, 227k parameters, ``d = 64``), the
  3-D twin of the default slice network (ResNet-10's layout at an eighth of ResNet-18's
  widths); the untrained one has the pretrained one's initial weights;
- the supervised encoders: the same untrained networks (2-D and 3-D) trained on the outcome
  itself with a linear Cox head (``UnimodalSurvival(image_encoder=untrained.image_encoder_,
  hidden_dims=())``); its own risk is scored (that head is its linear probe);
- ``CTVolumeEmbedder``'s training-free descriptor (77 features averaged over slices);
- the oracle: the true log-hazard ratio (held-out outcomes).

Outcomes: the held-out outcomes (never in the event frames, so not among the pretraining
tasks) and the time to a pretraining-task code driven by the biomarkers (``DX/00``, from
the test cohort's frames).

Cost: the pretraining fit (reading the events, preprocessing, training) per volume and
epoch, against a hand-written torch loop of the same network, loss, batches and Adam on
the preprocessed tensors.

Usage::

    PYTHONPATH=. python benchmarks/bench_tte_pretraining.py [--n-pretrain 800] [--out benchmarks/results/tte_pretraining.md]

``--n-pretrain`` pretrains on the first rows of the pretraining cohort only (a few hundred: issue
22's small cohorts); the test rows stay the same.
"""

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "tte_pretraining.md"
N_PRETRAIN, N_TEST = 800, 1000
DATA = {"signal": 1.5}
PRETRAIN = {"window": "pe", "lr": 3e-3, "max_epochs": 25, "batch_size": 16, "random_state": 0, "device": "cpu"}
# The 3-D encoder: Huo et al.'s min-max scaling, at the cohort's volume size (no resampling).
PRETRAIN_3D = {**PRETRAIN, "window": "minmax", "volume_size": (8, 32, 32)}
# The same at TimeToEventPretraining's defaults (its rate, epochs and batches).
DEFAULTS_3D = {k: PRETRAIN_3D[k] for k in ("window", "volume_size", "random_state", "device")}
VOLUME_NETWORK = ("resnet10-3d", {"widen_factor": 0.125})
HORIZONS = (365.0, 730.0)
TASK_OUTCOME = "DX/00"
TIMING_EPOCHS = 3
N_RESAMPLES = 300


def cohorts():
    from skfusion.datasets import make_imaging_ehr_cohort

    X, outcomes, truth = make_imaging_ehr_cohort(
        n_samples=N_PRETRAIN + N_TEST, random_state=0, return_truth=True, **DATA
    )
    targets = {f"{name} (held out)": y for name, y in outcomes.items()}
    targets[f"{TASK_OUTCOME} (a pretraining task)"] = _time_to_code(X, TASK_OUTCOME)
    risks = {f"{name} (held out)": truth.outcome_risk[:, j] for j, name in enumerate(outcomes)}
    return X, targets, risks


def _time_to_code(X, code):
    """Survival target from the index time to the first ``code`` after it, censored at the last event."""
    from sksurv.util import Surv

    event, time_ = [], []
    for frame, index in zip(X["ehr"], X["index_time"]):
        future = frame[frame["time"] > index]
        hits = future["time"][future["code"] == code]
        event.append(len(hits) > 0)
        time_.append((hits.iloc[0] if len(hits) else future["time"].iloc[-1]) - index)
    return Surv.from_arrays(event, time_)


def _probe(Z_train, y_train, Z_test):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    return make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0)).fit(Z_train, y_train).predict(Z_test)


def _cells(y_train, y_test, risk):
    from skfusion.metrics import bootstrap_ci, concordance_index, cumulative_dynamic_auc_score

    results = [bootstrap_ci(concordance_index, y_test, risk, n_resamples=1000, random_state=0)]
    for horizon in HORIZONS:
        metric = lambda y, r, h=horizon: cumulative_dynamic_auc_score(y_train, y, r, [h])  # noqa: E731
        results.append(bootstrap_ci(metric, y_test, risk, n_resamples=N_RESAMPLES, random_state=0))
    return [f"{r.estimate:.3f} ({r.low:.3f}-{r.high:.3f})" for r in results]


def _supervised(encoder, train, y_train, test):
    """The risk of ``encoder`` trained on the outcome with a linear Cox head, with the pretraining's rate and batches."""
    from skfusion import UnimodalSurvival

    return (
        UnimodalSurvival(
            modality="ct",
            image_encoder=encoder.image_encoder_,
            hidden_dims=(),
            lr=PRETRAIN["lr"],
            max_epochs=PRETRAIN["max_epochs"],
            batch_size=PRETRAIN["batch_size"],
            random_state=0,
            device="cpu",
        )
        .fit(train[["ct"]], y_train)
        .predict(test[["ct"]])
    )


def quality(n_pretrain):
    from skfusion.encoders import CTVolumeEmbedder
    from skfusion.modules.volumes import volume_network
    from skfusion.ssl import TimeToEventPretraining

    X, targets, risks = cohorts()
    train, test = X.iloc[:n_pretrain], X.iloc[N_PRETRAIN:]
    untrained = TimeToEventPretraining(**{**PRETRAIN, "max_epochs": 0}).fit(train)
    start = time.perf_counter()
    pretrained = TimeToEventPretraining(**PRETRAIN).fit(train)
    fit_seconds = time.perf_counter() - start
    torch.manual_seed(0)
    network = volume_network(VOLUME_NETWORK[0], **VOLUME_NETWORK[1])  # copied by each fit: one initial state
    untrained_3d = TimeToEventPretraining(backbone=network, **{**PRETRAIN_3D, "max_epochs": 0}).fit(train)
    start = time.perf_counter()
    pretrained_3d = TimeToEventPretraining(backbone=network, **PRETRAIN_3D).fit(train)
    fit_seconds_3d = time.perf_counter() - start
    defaults_3d = TimeToEventPretraining(backbone=network, **DEFAULTS_3D).fit(train)
    descriptor = CTVolumeEmbedder(window=PRETRAIN["window"], device="cpu").fit(train[["ct"]])
    embeddings = {
        "untrained encoder": untrained,
        "TTE-pretrained encoder": pretrained,
        "untrained 3-D encoder": untrained_3d,
        "TTE-pretrained 3-D encoder": pretrained_3d,
        "TTE-pretrained 3-D encoder, defaults": defaults_3d,
        "CTVolumeEmbedder descriptor (training-free)": descriptor,
    }
    embedded = {
        name: (model.transform(train[["ct"]]).to_numpy(), model.transform(test[["ct"]]).to_numpy())
        for name, model in embeddings.items()
    }
    rows = []
    for outcome, y in targets.items():
        y_train, y_test = y[:n_pretrain], y[N_PRETRAIN:]
        for name, (Z_train, Z_test) in embedded.items():
            rows.append([outcome, name, *_cells(y_train, y_test, _probe(Z_train, y_train, Z_test))])
        for name, encoder in (("supervised encoder", untrained), ("supervised 3-D encoder", untrained_3d)):
            risk = _supervised(encoder, train, y_train, test)
            rows.append([outcome, f"{name} (trained on this outcome)", *_cells(y_train, y_test, risk)])
        if outcome in risks:
            rows.append([outcome, "oracle (true risk)", *_cells(y_train, y_test, risks[outcome][N_PRETRAIN:])])
    return rows, pretrained, (fit_seconds, fit_seconds_3d)


def hand_loop_seconds(tte, train):
    """The same network, loss, batches and Adam as ``tte``'s fit, on the preprocessed tensors."""
    from skfusion.modules.tte import (
        PiecewiseExponentialHead,
        TimeToEventNetwork,
        VolumeEncoder,
        default_slice_backbone,
        piecewise_exponential_nll,
    )

    futures, censoring, _ = tte._follow_up(train, list(range(len(train))))
    time_, event = tte._targets(futures, np.array(censoring))
    volumes = tte._preprocess(list(train["ct"]), [str(i) for i in range(len(train))])
    x, mask = tte._padded(volumes)
    time_t, event_t = torch.from_numpy(time_).float(), torch.from_numpy(event)
    boundaries = torch.as_tensor(tte.piece_boundaries_, dtype=torch.float32)
    start = time.perf_counter()
    torch.manual_seed(0)
    encoder = VolumeEncoder(default_slice_backbone(), 64, tte.mean, tte.std, tte.attention_dim)
    head = PiecewiseExponentialHead(64, tte.n_pieces_, len(tte.tasks_), tte.rank, tte._log_rates(time_, event))
    net = TimeToEventNetwork("ct", encoder, head)
    optimiser = torch.optim.Adam(net.parameters(), lr=tte.lr)
    generator = torch.Generator().manual_seed(0)
    n = len(x)
    for _ in range(TIMING_EPOCHS):
        net.train()
        for rows in torch.randperm(n, generator=generator).tensor_split(-(-n // tte.batch_size)):
            depth = int(mask[rows].sum(dim=1).max())
            block = {"x": x[rows, :depth], "mask": mask[rows, :depth]}
            optimiser.zero_grad()
            loss = piecewise_exponential_nll(net(ct=block), time_t[rows], event_t[rows], boundaries)
            loss.backward()
            optimiser.step()
    return time.perf_counter() - start


def cost(train):
    from skfusion.ssl import TimeToEventPretraining

    TimeToEventPretraining(**{**PRETRAIN, "max_epochs": 1}).fit(train.iloc[:32])  # warm-up (imports, kernels)
    start = time.perf_counter()
    tte = TimeToEventPretraining(**{**PRETRAIN, "max_epochs": TIMING_EPOCHS}).fit(train)
    ours = time.perf_counter() - start
    hand = hand_loop_seconds(tte, train)
    return ours, hand


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pretrain", type=int, default=N_PRETRAIN, help="pretraining rows (at most the cohort's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not 0 < args.n_pretrain <= N_PRETRAIN:
        parser.error(f"--n-pretrain must be within [1, {N_PRETRAIN}]")
    n = args.n_pretrain
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows, pretrained, (fit_seconds, fit_seconds_3d) = quality(n)
    X, _, _ = cohorts()
    ours, hand = cost(X.iloc[:n])
    per_volume_ms = 1000 * ours / (n * TIMING_EPOCHS)
    horizons = [f"AUROC at {int(h)} days" for h in HORIZONS]
    options = ", ".join(f"{k}={v!r}" for k, v in VOLUME_NETWORK[1].items())
    network_3d = f"volume_network({VOLUME_NETWORK[0]!r}, {options})"
    changed_3d = ", ".join(f"{k}={v!r}" for k, v in PRETRAIN_3D.items() if PRETRAIN.get(k) != v)
    text = f"""# Time-to-event pretraining of a CT encoder

`{shlex.join(["PYTHONPATH=.", "python", *sys.argv])}` ({platform.processor() or platform.machine()}, 1 torch thread,
torch {torch.__version__}; whole run {(time.perf_counter() - started) / 60:.1f} min).

Cohort: `make_imaging_ehr_cohort(signal={DATA["signal"]})`, {N_PRETRAIN} pretraining rows (volumes
8x32x32, events, index times; the first {n} of them used) and {N_TEST} test rows (volumes only). Pretraining:
`TimeToEventPretraining({", ".join(f"{k}={v!r}" for k, v in PRETRAIN.items())})`:
{len(pretrained.tasks_)} tasks, {pretrained.n_pieces_} pieces (boundaries
{", ".join(f"{b:.0f}" for b in pretrained.piece_boundaries_[1:-1])} days), fit in {fit_seconds:.0f} s. The 3-D
encoder: `TimeToEventPretraining(backbone={network_3d}, {changed_3d})`
(otherwise the same parameters; MONAI's ResNet-10-3D at an eighth of its width, the 3-D twin of the
default slice network), fit in {fit_seconds_3d:.0f} s; its untrained twin has its initial weights; "defaults" is the same
encoder pretrained at `TimeToEventPretraining`'s own rate, epochs and batches. The
supervised encoders are the same untrained networks (2-D and 3-D) trained on the outcome with a linear
Cox head for the same epochs, rate and batch size. Probes: standardised ridge Cox (alpha = 1) fitted on
the pretraining rows. 95% percentile bootstrap intervals on the test rows (Harrell's C: 1000
resamples; AUROC: {N_RESAMPLES}).

{_table(["outcome", "embedding", "Harrell's C", *horizons], rows)}

## Cost

| | seconds ({TIMING_EPOCHS} epochs, {n} volumes) | ms per volume and epoch |
|---|---|---|
| `TimeToEventPretraining.fit` (events, preprocessing, skorch training) | {ours:.1f} | {per_volume_ms:.2f} |
| hand-written torch loop (same network, loss, batches, Adam; tensors ready) | {hand:.1f} | {1000 * hand / (n * TIMING_EPOCHS):.2f} |
| ratio | {ours / hand:.2f} | |
"""
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
