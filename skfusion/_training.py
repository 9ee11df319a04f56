"""How long to train, and from where: the mechanisms that make the defaults hold on small cohorts.

Three pieces, used by :meth:`skfusion._base.BaseFusion.fit`:

- **A linear start** (``linear_path=True``). Beside the fusion network sits a linear model
  on the pooled inputs (:class:`~skfusion.modules._blocks.WideAndDeep`): the vector blocks,
  the token means of the sequences and a presence flag per modality that some rows lack.
  Before the network trains, that linear model is fitted alone by L-BFGS on the task's own
  loss with an L2 penalty ``alpha`` chosen by internal cross-validation (:func:`fit_linear_start`);
  then the network's output is added to it and both train together. Epoch 0 of the
  validation curve is the penalized linear model alone (a ridge Cox model, a ridge logistic
  regression), so training moves away from it only as far as the held-out rows reward.
- **The number of epochs chosen on held-out rows** (:class:`EpochSelection`). The
  validation loss is recorded before the first epoch (the linear start) and after each
  epoch; the best epoch, 0 included, is kept. With enough held-out events (or rows of the
  rarest class) one validation split does it; below that, ``N_FOLDS`` internal folds
  (:func:`folds`) give one validation curve each, every row is held out once, and their
  mean picks the number of epochs for a refit on all rows (:func:`mean_curve_best`).
- **A budget that fits the cohort** (:func:`auto_max_epochs`), LSTM widths that fit it
  (:func:`auto_width`) and the :class:`~sklearn.exceptions.ConvergenceWarning` of a fit cut
  short (:func:`warn_if_cut_short`).

The pretraining transformers (``CLMBREmbedder``, ConVIRT, ALIGN, VICReg, ``MedCAMAdapter``)
choose their epoch on one validation split or not at all (:func:`held_out_split`,
:func:`record_epochs`).
"""

import copy
import warnings
from contextlib import contextmanager
from functools import cache
from math import ceil, sqrt
from numbers import Integral, Real

import numpy as np
import torch
from scipy.optimize import minimize
from skorch.callbacks import Callback
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import ThreadpoolController

from ._compat import Interval, StrOptions
from ._engine import ValidationSplit
from .modules._blocks import WideAndDeep, linear_inputs

# The L2 strengths (on the mean loss) tried for the linear start, strongest first, a decade apart.
ALPHAS = np.logspace(1, -4, 6)
# Internal folds that choose the number of epochs when one validation split would be too small.
N_FOLDS = 3
# The linear start is fitted on at most this many rows (a random subset beyond).
MAX_LINEAR_ROWS = 20_000
# max_epochs="auto": enough epochs for this many optimizer steps, within the bounds below.
AUTO_STEPS = 4000
AUTO_EPOCHS = (100, 1000)
# n_iter_no_change="auto": patience of at least this many optimizer steps (and 10 epochs).
AUTO_PATIENCE_STEPS = 500
# The widths of MedFuse's LSTMs (EHR encoder m = 256, fusion 512) were chosen on the 42,628
# training stays of its phenotyping task (Hayat et al., 2022): the reference of auto_width.
LSTM_WIDTH, FUSION_LSTM_WIDTH = 256, 512
LSTM_REFERENCE_ROWS = 42_628
# A fit without validation is still learning when its last n_iter_no_change epochs lowered
# the training loss by more than this share of its whole descent.
CONVERGENCE_TOL = 0.01
# early_stopping="auto" of a pretraining transformer holds rows out from this many on: the
# fusion estimators' threshold (100 held-out events, or rows of the rarest class), in rows.
MIN_VALIDATION_ROWS = 100
# The parameters of a pretraining transformer's epoch selection (held_out_split).
HELD_OUT_PARAMETERS = {
    "early_stopping": ["boolean", StrOptions({"auto"})],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
}


def auto_max_epochs(n_steps_per_epoch):
    """``max_epochs="auto"``: the epochs for ``AUTO_STEPS`` optimizer steps, within ``AUTO_EPOCHS``.

    A 200-row cohort in batches of 32 takes 7 steps an epoch, a 20,000-row one in batches
    of 256 takes 79: a fixed number of epochs would give the small cohort a tenth of the
    updates. The bound is a ceiling: the validation curve (:class:`EpochSelection`) stops
    training long before it when the model has stopped improving.
    """
    return int(np.clip(ceil(AUTO_STEPS / max(n_steps_per_epoch, 1)), *AUTO_EPOCHS))


def auto_patience(n_steps_per_epoch):
    """``n_iter_no_change="auto"``: the epochs of ``AUTO_PATIENCE_STEPS`` optimizer steps, at least 10.

    On a few hundred rows an epoch is a handful of steps, and a network beside the linear
    start may need hundreds of steps before the held-out loss shows what it has found
    (``docs/design.md``): ten epochs of 5 steps would stop it first. From about 13,000 rows
    (50 batches of 256) on, it is scikit-learn's 10 epochs.
    """
    return max(10, ceil(AUTO_PATIENCE_STEPS / max(n_steps_per_epoch, 1)))


def auto_width(reference, n_samples, floor):
    """An ``"auto"`` LSTM width: ``reference`` units scaled to ``n_samples`` training rows.

    An LSTM layer of width :math:`h` holds about :math:`4 h^2` weights, so the width that
    keeps the weights per training row of MedFuse's configuration (``reference`` units on
    ``LSTM_REFERENCE_ROWS`` stays) is :math:`h = reference \\sqrt{n / 42{,}628}`; it is kept
    within ``[min(floor, reference), reference]``: no narrower than the layer's input
    (``floor``), no wider than MedFuse's. 200 rows of 12 variables get 18 units instead of
    256 (a training step of the two-layer encoder on 32 rows of 24 steps: 4.7 ms instead of
    76 ms on one CPU thread); MedFuse's width is reached from 42,628 rows on.
    """
    width = round(reference * sqrt(n_samples / LSTM_REFERENCE_ROWS))
    return int(min(reference, max(width, floor, 1)))


def linear_modalities(layout, blocks):
    """``(names, indicators, width)`` of the linear start: which blocks it reads and its input width.

    It reads the vector and sequence modalities (a sequence by its token mean) and a
    presence flag for each modality that some training rows lack; images only through that
    flag.
    """
    names = [spec.name for spec in layout if spec.kind in ("vector", "sequence")]
    indicators = [spec.name for spec in layout if not bool(blocks[spec.name]["present"].all())]
    width = sum(spec.dim for spec in layout if spec.name in names) + len(indicators)
    return names, indicators, width


def pooled_inputs(dataset, names, indicators, chunk=8192):
    """:func:`~skfusion.modules._blocks.linear_inputs` of every row of ``dataset``, as one float32 tensor."""
    parts = []
    for start in range(0, len(dataset), chunk):
        positions = torch.arange(start, min(len(dataset), start + chunk), device=dataset.device)
        blocks, _ = dataset.batch(positions, names=names)
        rows = dataset.rows(positions)
        for name in indicators:
            blocks.setdefault(name, {"present": dataset.blocks[name]["present"][rows]})
        parts.append(linear_inputs(blocks, names, indicators).float())
    return torch.cat(parts)


@cache
def _threadpools():
    """threadpoolctl's controller of the loaded thread pools, found once: each search reads the
    process's shared libraries (4 ms, a sixth of a small cohort's L-BFGS fit)."""
    return ThreadpoolController()


def _fit_penalized(z, targets, loss, linear, alpha, gtol=1e-7, intercept=True):
    """Minimise ``loss(linear(z)) + alpha / 2 * ||W||^2`` over ``linear``'s weights (and bias, with
    ``intercept``), in place.

    SciPy's L-BFGS-B on the flattened weights, the loss and its gradient from torch (torch's
    own L-BFGS would load torch's compiler stack, seconds, at its first use). The mean loss
    has small gradients: ``gtol`` below SciPy's default 1e-5 reaches the optimum; the
    held-out comparisons of the penalties need no more than the default.
    """
    params = [linear.weight, linear.bias] if intercept else [linear.weight]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def assign(flat):
        values = torch.from_numpy(flat).to(device=z.device, dtype=z.dtype).split(sizes)
        with torch.no_grad():
            for param, value, shape in zip(params, values, shapes):
                param.copy_(value.view(shape))

    def objective(flat):
        assign(flat)
        with torch.enable_grad():
            for param in params:
                param.grad = None
            value = loss(linear(z), targets) + 0.5 * alpha * linear.weight.pow(2).sum()
            value.backward()
        gradient = torch.cat([param.grad.reshape(-1) for param in params])
        return value.item(), gradient.double().cpu().numpy()

    start = torch.cat([param.detach().reshape(-1) for param in params]).double().cpu().numpy()
    # L-BFGS-B's own vector operations are tiny: BLAS threads waking for each cost 7 ms an
    # iteration on 2 busy cores (SciPy 1.17, OpenBLAS), 70x the 0.1 ms of one thread.
    with _threadpools().limit(limits=1, user_api="blas"):
        fitted = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": gtol})
    assign(fitted.x)
    return linear


def _zero_linear(width, n_outputs, like):
    linear = torch.nn.Linear(width, n_outputs, device=like.device, dtype=like.dtype)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    return linear


def fit_linear_start(z, targets, loss, n_outputs, splits, fallback_alpha, rows=None, intercept=True):
    """The penalized linear model of the linear start: ``(linear layer, alpha)``.

    ``alpha`` is the strength of ``ALPHAS`` with the lowest loss on the held-out rows of
    ``splits`` (pairs of row positions), the path fitted from the strongest penalty down,
    each split's fit warm-started from its previous one; without ``splits`` (too few rows to
    hold any out) it is ``fallback_alpha``. The path stops at the first strength whose
    held-out loss is above the best so far: past its minimum, a weaker penalty only fits
    noise, and its fits are the slowest (nearly separable classes, hundreds of L-BFGS
    iterations). The returned layer is fitted at that strength on the rows ``rows`` of ``z``
    (all of them when None), from the mean of the splits' solutions there (the penalized
    loss is strictly convex: where it starts changes the steps, not the optimum). ``loss``
    reads the rows' weights from the last column of ``targets`` (see
    :class:`~skfusion._base.BaseFusion`). Without ``intercept`` the bias stays at zero: a loss
    that a constant added to every output leaves unchanged (Cox's partial likelihood) has no
    gradient along it but round-off, which L-BFGS's steps along that flat direction amplify
    into an arbitrary shift of every output, different on another CPU.
    """
    alpha, start = fallback_alpha, _zero_linear(z.shape[1], n_outputs, z)
    if splits:
        held_out = np.full(len(ALPHAS), np.nan)
        solutions = []
        fits = [_zero_linear(z.shape[1], n_outputs, z) for _ in splits]
        for k, strength in enumerate(ALPHAS):
            held_out[k] = 0.0
            for (train, valid), linear in zip(splits, fits):
                _fit_penalized(z[train], targets[train], loss, linear, strength, gtol=1e-5, intercept=intercept)
                with torch.no_grad():
                    # A split's loss is a weighted mean: times the split's weight, the splits add up.
                    held_out[k] += float(loss(linear(z[valid]), targets[valid])) * float(targets[valid, -1].sum())
            solutions.append([[p.detach().clone() for p in linear.parameters()] for linear in fits])
            if k and held_out[k] > np.nanmin(held_out[:k]):
                break
        finite = np.isfinite(held_out)
        if finite.any():
            best = int(np.flatnonzero(finite)[np.argmin(held_out[finite])])
            alpha = float(ALPHAS[best])
            with torch.no_grad():
                for param, values in zip(start.parameters(), zip(*solutions[best])):
                    param.copy_(torch.stack(values).mean(dim=0))
    if rows is not None:
        z, targets = z[rows], targets[rows]
    return _fit_penalized(z, targets, loss, start, alpha, intercept=intercept), alpha


def folds(n_samples, strata, seed, n_folds=N_FOLDS):
    """``n_folds`` (train, valid) position pairs stratified by ``strata``; None when a stratum is too small.

    Every row is held out once. Stratification needs ``n_folds`` rows of every stratum (a
    survival cohort with 2 events cannot be cut in 3 folds that each hold one).
    """
    if n_samples < 2 * n_folds:
        return None
    if strata is None:
        splitter, labels = KFold(n_folds, shuffle=True, random_state=seed), None
    else:
        labels = np.asarray(strata)
        if np.unique(labels, return_counts=True)[1].min() < n_folds:
            return None
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((n_samples, 1)), labels))


def subsample(n_samples, seed, limit=MAX_LINEAR_ROWS):
    """Positions of at most ``limit`` rows (all of them, in order, when there are fewer)."""
    if n_samples <= limit:
        return np.arange(n_samples)
    return np.sort(np.random.RandomState(seed).choice(n_samples, limit, replace=False))


class EpochSelection(Callback):
    """Record the loss on held-out rows from epoch 0 on; stop after ``patience`` epochs without a better trained epoch.

    ``losses_[e]`` is the loss of the model after ``e`` epochs on ``valid`` (a
    :class:`~skfusion._data.ModalityDataset`), computed over all its rows at once
    (``FusionNet.dataset_loss``: a Cox partial likelihood over one risk set, not batches of
    it) and recorded as skorch's ``valid_loss``. ``losses_[0]`` is that of the start: the
    linear start alone for a :class:`~skfusion.modules._blocks.WideAndDeep` network (its
    fusion network left out), else the untrained network. ``best_epoch_`` is the first epoch
    of the lowest. With ``restore``, the weights of that epoch are loaded when training ends;
    epoch 0 of a wide and deep network is its linear start alone.
    """

    def __init__(self, valid, patience, restore=True):
        self.valid = valid
        self.patience = patience
        self.restore = restore

    def __getstate__(self):
        # A fitted model keeps its callbacks: not the held-out rows' tensors.
        return {**self.__dict__, "valid": None}

    def initialize(self):
        self.losses_ = []
        self.best_epoch_ = 0
        self.stopped_ = False
        self._best_state = None
        return self

    def on_epoch_begin(self, net, **kwargs):
        if not self.losses_:
            with linear_only(net.module_):
                self._record(net, net.dataset_loss(self.valid))

    def on_epoch_end(self, net, **kwargs):
        loss = net.dataset_loss(self.valid)
        net.history.record("valid_loss", loss)
        self._record(net, loss)
        # Patience counts from the best trained epoch: the start is another model (for a wide
        # and deep network, the linear part alone), which training may need many epochs to beat.
        trained = self.losses_[1:]
        if len(trained) - 1 - int(np.argmin(trained)) >= self.patience:
            self.stopped_ = True
            raise KeyboardInterrupt  # skorch's way to end training early

    def _record(self, net, loss):
        self.losses_.append(float(loss))
        if len(self.losses_) == 1 or loss < self.losses_[self.best_epoch_]:
            self.best_epoch_ = len(self.losses_) - 1
            if self.restore:
                self._best_state = copy.deepcopy(net.module_.state_dict())

    def on_train_end(self, net, **kwargs):
        if self.restore and self._best_state is not None:
            net.module_.load_state_dict(self._best_state)
            if self.best_epoch_ == 0 and wide_and_deep(net.module_) is not None:
                wide_and_deep(net.module_).use_deep = False
            self._best_state = None


def wide_and_deep(module):
    """``module`` as a :class:`~skfusion.modules._blocks.WideAndDeep` (unwrapped from DDP), or None."""
    module = getattr(module, "module", module)  # DistributedDataParallel keeps the network in .module
    return module if isinstance(module, WideAndDeep) else None


@contextmanager
def linear_only(module):
    """Inside the block, a :class:`~skfusion.modules._blocks.WideAndDeep` ``module`` is its linear part alone."""
    module = wide_and_deep(module)
    if module is None:
        yield
        return
    module.use_deep = False
    try:
        yield
    finally:
        module.use_deep = True


def mean_curve_best(curves):
    """The epoch with the lowest mean validation loss over ``curves``, on the epochs every curve reached.

    Each curve ran at least ``patience`` epochs past its own best, so the common epochs
    hold the best of the shortest.
    """
    length = min(len(curve) for curve in curves)
    mean = np.mean([curve[:length] for curve in curves], axis=0)
    return int(np.argmin(mean))


def warn_if_cut_short(estimator, train_losses, selection, max_epochs, patience):
    """A ConvergenceWarning when training stopped at ``max_epochs`` while still improving.

    With a validation curve (``selection``: the :class:`EpochSelection` callbacks of the
    runs), a run is cut short when it reached ``max_epochs`` before ``patience`` epochs
    without a new best. Without one, when the training loss (``train_losses``, one per
    epoch) of the last ``patience`` epochs (all of them after the first, in a shorter run)
    fell by more than ``CONVERGENCE_TOL`` of its whole descent (scikit-learn's
    ``MLPClassifier`` warns the same way on its training loss).
    """
    if selection:
        cut = [s for s in selection if not s.stopped_ and len(s.losses_) - 1 >= max_epochs]
        if not cut:
            return
        what = "the validation loss was still falling"
    else:
        losses = np.asarray(train_losses, dtype=float)
        if len(losses) < max(max_epochs, 2):
            return
        window = min(patience, len(losses) - 1)
        descent = losses[0] - losses.min()
        recent = losses[-window - 1] - losses[-window:].min()
        if not (descent > 0 and recent > CONVERGENCE_TOL * descent):
            return
        what = f"the training loss fell by {recent / descent:.1%} of its descent in the last {window} epoch(s)"
    auto = any("auto" in getattr(c, "options", ()) for c in estimator._parameter_constraints.get("max_epochs", []))
    warnings.warn(
        f"{type(estimator).__name__}: training stopped at max_epochs={max_epochs} while {what}; "
        "the model may be under-trained: raise max_epochs" + (" (or leave it at 'auto')." if auto else "."),
        ConvergenceWarning,
        stacklevel=3,
    )


def held_out_split(estimator, dataset, seed, minimum):
    """``(train, selection)``: the rows a pretraining transformer trains on and its :class:`EpochSelection`.

    The transformer's ``early_stopping`` says whether ``validation_fraction`` of the rows of
    ``dataset`` are held out (a :class:`~skfusion._engine.ValidationSplit` seeded by
    ``seed``); ``"auto"`` holds them out when they would be at least ``minimum``. The
    selection, patient for ``n_iter_no_change`` epochs, records their loss and restores the
    best epoch; it is None, and ``train`` all of ``dataset``, when no rows are held out.
    """
    held_out = len(dataset) * estimator.validation_fraction
    if not (held_out >= minimum if estimator.early_stopping == "auto" else estimator.early_stopping):
        return dataset, None
    train, valid = ValidationSplit(estimator.validation_fraction, seed)(dataset)
    return train, EpochSelection(valid, estimator.n_iter_no_change)


def record_epochs(estimator, net, selection):
    """Set ``n_iter_`` and ``best_epoch_`` of a pretraining run, and warn when ``selection`` shows it cut short.

    Without held-out rows (``selection`` None) nothing warns: the self-supervised losses
    (next-code, contrastive) of a small model fall for hundreds of epochs, so a warning on
    the training loss would come with every default fit.
    """
    estimator.n_iter_ = len(net.history)
    estimator.best_epoch_ = estimator.n_iter_ if selection is None else selection.best_epoch_
    if selection is not None:
        warn_if_cut_short(estimator, [], [selection], estimator.max_epochs, estimator.n_iter_no_change)
