"""The survival head: losses, baseline estimation and survival functions.

Three parametrisations of the network output, chosen with ``loss=``:

- ``"cox"``: one log-hazard per sample, trained with the negative Cox partial
  log-likelihood with Efron's ties (:func:`cox_nll`; with unit weights, torchsurv's);
  after training, Breslow's estimator (:func:`breslow`, the estimate of scikit-survival's
  ``BreslowEstimator``) gives the cumulative baseline hazard :math:`H_0`, and
  :math:`H_i(t) = H_0(t) e^{\\eta_i}`.
- ``"weibull"``: a log scale per sample and one shape for all, the shape of the Weibull
  fitted without covariates, trained with the Weibull negative log-likelihood
  (:func:`weibull_nll`, torchsurv's per row);
  :math:`H_i(t) = (t / \\lambda_i)^{\\rho}` (a Weibull proportional-hazards model). Times are
  divided by their median internally so the network starts near the data's time scale.
- ``"discrete"``: ``n_durations`` logits of discrete-time hazards on a grid of event-time
  quantiles (Gensheimer & Narasimhan 2019, nnet-survival; Kvamme & Borgan 2021, logistic
  hazard). An event in bin :math:`j` contributes
  :math:`\\sum_{k<j} \\log(1-h_k) + \\log h_j`, a censoring in bin :math:`j` contributes
  :math:`\\sum_{k<j} \\log(1-h_k)` (the sample is known to be alive when bin :math:`j` starts).

Every model maps outputs to a risk score (higher = earlier event) and to cumulative hazards
on any time grid, computed for the whole batch at once. Every likelihood is weighted by the
rows' sample weights, the last column of the targets that ``prepare`` returns, and so are
the statistics ``prepare`` computes (quantiles, marginal fits) and Breslow's baseline.
"""

from functools import partial
from numbers import Integral

import numpy as np
import torch
from scipy.optimize import minimize
from sksurv.base import SurvivalAnalysisMixin
from sksurv.functions import StepFunction
from sksurv.util import check_y_survival
from torch.nn import functional as F

from ._engine import check_weights, divergence_error, unit_mean, weighted_mean
from ._compat import Interval, StrOptions
from ._data import _rows


# early_stopping="auto" holds out a validation split when it would hold at least this many events.
MIN_VALIDATION_EVENTS = 100


# Times above this are refused: float32 networks and torchsurv cannot represent them.
MAX_TIME = float(np.finfo(np.float32).max) / 16


def check_survival_target(y, n_samples):
    """Validate a structured survival ``y`` like scikit-survival and return ``(event, time)``.

    Raises
    ------
    ValueError
        For a non-structured array, fields in the wrong order or of the wrong type, NaN,
        inf, negative or out-of-range times, a length different from ``n_samples``, or when
        every sample is censored.
    """
    if y is None:
        raise ValueError("this survival estimator requires y to be passed, but the target y is None.")
    names = getattr(getattr(y, "dtype", None), "names", None)
    if names is None or len(names) != 2:
        raise ValueError(
            "y must be a structured array of (event: bool, time: float), as made by "
            f"sksurv.util.Surv.from_arrays; got {type(y).__name__} with dtype {getattr(y, 'dtype', None)}."
        )
    event_field, time_field = names
    event_kind, time_kind = y.dtype[event_field].kind, y.dtype[time_field].kind
    if event_kind == "f" and time_kind == "b":
        raise ValueError(
            f"y's fields are in (time, event) order ({time_field!r} is the boolean one): scikit-survival's "
            "order is (event, time); build y with sksurv.util.Surv.from_arrays(event, time)."
        )
    if event_kind != "b":
        raise ValueError(
            f"y's event field {event_field!r} must be boolean; got dtype {y.dtype[event_field]} "
            "(build y with sksurv.util.Surv.from_arrays(event, time))."
        )
    if time_kind not in "iuf":
        raise ValueError(f"y's time field {time_field!r} must be numeric; got dtype {y.dtype[time_field]}.")
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
    raw_time = np.asarray(y[time_field], dtype=float)
    for bad, what in (
        (~np.isfinite(raw_time), "non-finite times"),
        (raw_time < 0, "negative times"),
        (raw_time > MAX_TIME, f"times above {MAX_TIME:.1e} (rescale the time unit)"),
    ):
        if bad.any():
            raise ValueError(f"y field {time_field!r} has {what} in rows {_rows(bad)}.")
    event, time = check_y_survival(y, allow_time_zero=True)
    return event, time.astype(np.float64)


class CoxModel:
    """Cox proportional hazards: output = log relative hazard, Breslow baseline.

    The partial likelihood depends on the times only through their order and ties, so the
    loss reads dense time ranks: float32 cannot tell large times apart (two times of 1.7e9
    seconds 100 s apart are equal in float32), ranks can.
    """

    n_outputs = 1
    # The partial likelihood is the same when every log hazard moves by a constant: no bias.
    has_intercept = False
    # A fitted log hazard beyond this means the training diverged: Breslow's exp() overflows.
    max_output = 500.0

    def prepare(self, time, event, weight):
        rank = np.unique(time, return_inverse=True)[1]
        return np.column_stack([rank, event, time, weight])

    def loss(self, out, target):
        return cox_nll(out[:, 0], target[:, 1].bool(), target[:, 0], target[:, -1])

    def finalize(self, out, target):
        self.cum_baseline_hazard_ = breslow(
            out[:, 0], target[:, 1], target[:, 0].astype(np.intp), target[:, 2], target[:, -1]
        )

    def risk(self, out):
        return out[:, 0]

    def cumulative_hazard(self, out, times):
        h0 = self.cum_baseline_hazard_
        # Breslow's H0 is 0 before the first observed time and constant after the last one.
        idx = np.searchsorted(h0.x, times, side="right") - 1
        base = np.where(idx >= 0, h0.y[np.clip(idx, 0, None)], 0.0)
        return np.exp(out[:, :1]) * base[None, :]


def cox_nll(log_hz, event, time, weight):
    """Negative Cox partial log-likelihood, Efron's ties, with sample weights, per unit of event weight.

    At each distinct time, let the deaths be the events of positive weight there (``d`` of
    them, weights summing to ``W``), ``S`` the sum of their :math:`w_i e^{\\eta_i}` and ``R``
    that sum over the rows still at risk (time at least this one). The time adds

    .. math:: \\sum_{\\text{deaths}} w_i \\eta_i - \\frac{W}{d} \\sum_{r=0}^{d-1} \\log\\left(R - \\frac{r}{d} S\\right)

    to the log-likelihood: Efron's approximation (B. Efron, "The efficiency of Cox's
    likelihood function for censored data", Journal of the American Statistical
    Association, 1977) with case weights as in R's ``coxph`` and lifelines (T. Therneau and
    P. Grambsch, *Modeling Survival Data: Extending the Cox Model*, Springer, 2000). With
    unit weights it is torchsurv's Efron likelihood. At a time with one death it is
    Breslow's :math:`w_i (\\eta_i - \\log R)`, which an integer weight ``k`` gives as ``k``
    copies of the row would; Efron's approximation would treat those copies as ``k`` tied
    deaths (``docs/design.md``). A row of zero weight is no row at all, and weights ``c``
    times larger move the loss by :math:`\\log c` only. The loss is minus the sum over the
    times divided by the events' total weight (0 for a batch without a weighted event): a
    mean per event, as pycox's; torchsurv's mean divides by the number of distinct event
    times, which moves with the ties.

    Parameters
    ----------
    log_hz : torch.Tensor of shape (n,)
    event : torch.Tensor of bool, shape (n,)
    time : torch.Tensor of shape (n,)
        Times or their ranks: only their order and ties count.
    weight : torch.Tensor of shape (n,)
        Non-negative sample weights.

    Returns
    -------
    loss : torch.Tensor
        A scalar.
    """
    weight = weight.to(log_hz.dtype)
    times, at = torch.unique(time, return_inverse=True)
    deaths = event & (weight > 0)
    died = at[deaths]

    def per_time(index, values):
        return log_hz.new_zeros(len(times)).index_add(0, index, values)

    # exp() of log-hazards less their largest: float32's exp overflows from 89 on.
    shift = log_hz.detach().max()
    risk = weight * torch.exp(log_hz - shift)
    at_risk = per_time(at, risk).flip(0).cumsum(0).flip(0)
    tied_risk = per_time(died, risk[deaths])
    death_weight = per_time(died, weight[deaths])
    numerator = per_time(died, (weight * log_hz)[deaths])
    n_deaths = torch.bincount(died, minlength=len(times))
    # The r-th of d tied deaths sees the risk set less r/d of the tied risk; padding is log 1.
    r = torch.arange(int(n_deaths.max()), device=log_hz.device, dtype=log_hz.dtype)
    per_death = n_deaths.clamp(min=1)[:, None]
    terms = at_risk[:, None] - (r[None, :] / per_death) * tied_risk[:, None]
    terms = torch.where(r[None, :] < n_deaths[:, None], terms, torch.ones_like(terms))
    mean_log_risk = torch.log(terms).sum(dim=1) / per_death[:, 0] + shift
    log_likelihood = (numerator - death_weight * mean_log_risk).sum()
    return -log_likelihood / death_weight.sum().clamp_min(torch.finfo(log_hz.dtype).tiny)


def breslow(log_hazard, event, rank, time, weight):
    """Breslow's cumulative baseline hazard on the unique times, as a StepFunction.

    :math:`H_0(t) = \\sum_{s \\le t} d_s / \\sum_{j: t_j \\ge s} w_j e^{\\eta_j}` (Breslow, "Discussion of
    Professor Cox's paper", Journal of the Royal Statistical Society B, 1972), with
    :math:`d_s` the weight of the deaths at :math:`s`, ``rank`` the dense rank of each row's
    ``time`` and ``weight`` the sample weights. With unit weights, the estimate of
    scikit-survival's ``BreslowEstimator``, by per-time sums (``bincount``) instead of its
    Python loop over the rows, which costs 0.6 s at 200,000 rows.
    """
    n_times = int(rank.max()) + 1
    times = np.empty(n_times)
    times[rank] = time
    deaths = np.bincount(rank, weights=event * weight, minlength=n_times)
    at_risk = np.bincount(rank, weights=weight * np.exp(log_hazard), minlength=n_times)[::-1].cumsum()[::-1]
    # After the last row of positive weight nobody is at risk and nobody dies: no step.
    steps = np.divide(deaths, at_risk, out=np.zeros(n_times), where=deaths > 0)
    return StepFunction(times, np.cumsum(steps))


def _weighted_quantile(values, weight, q):
    """The ``q`` quantiles of ``values`` under ``weight``: the first value whose cumulative weight reaches ``q``.

    NumPy's ``method="inverted_cdf"`` with weights (NumPy 2 only): rows of zero weight are
    skipped, integer weights give the quantiles of the rows repeated, and the scale of the
    weights does not matter.
    """
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weight[order])
    # A cumulative weight within round-off of the target reaches it: integer weights scaled
    # to mean 1 sum to 30.000000000000004 where the repeated rows count 30.
    reach = np.asarray(q) * cumulative[-1] * (1 - 1e-12)
    return values[order][np.searchsorted(cumulative, reach, side="left")]


class WeibullModel:
    """Weibull proportional hazards: output = log scale in units of the median training time.

    The shape :math:`\\rho` is common to all rows: that of the Weibull fitted without
    covariates (maximum likelihood, ``offset_[1]``), so the network predicts one number per
    row, as the Cox model does; a shape per row made the risk ranking noisy on small cohorts
    (``docs/design.md``). The log scale is soft-bounded, ``b * tanh(z / b)``, to within
    ``_LOG_SCALE_BOUND`` of the median time, so that no input can drive the likelihood to
    overflow, whatever the scale of the features. Times of zero (an event on the day of
    inclusion) are moved to half the smallest positive time, where the Weibull density is
    finite. The output is an offset from the marginal fit's log scale, so training starts
    from the marginal model.
    """

    n_outputs = 1
    max_output = np.inf  # soft-bounded: any finite output is a valid Weibull
    has_intercept = True

    def prepare(self, time, event, weight):
        positive = (time > 0) & (weight > 0)
        self.time_scale_ = float(_weighted_quantile(time[positive], weight[positive], 0.5)) if positive.any() else 1.0
        scaled = time / self.time_scale_
        floor = scaled[positive].min() / 2 if positive.any() else 1.0
        scaled = np.maximum(scaled, floor)
        bounds = np.array([_LOG_SCALE_BOUND, _LOG_SHAPE_BOUND])
        self.offset_ = bounds * np.arctanh(_marginal_weibull(scaled, event, weight, 0.95 * bounds) / bounds)
        return np.column_stack([scaled, event, weight])

    def _params(self, out):
        """``(log scale, log shape)`` per row, for a torch or numpy ``out`` of shape (n, 1)."""
        log_scale = out[:, :1]
        if isinstance(out, torch.Tensor):
            both = torch.cat([log_scale, torch.zeros_like(log_scale)], dim=1)
        else:
            both = np.hstack([log_scale, np.zeros_like(log_scale)])
        # The shape column is the marginal fit's (a zero offset) for every row.
        return _bounded(_shifted(both, self.offset_))

    def loss(self, out, target):
        nll = weibull_nll(self._params(out), target[:, 1].to(out.dtype), target[:, 0].to(out.dtype))
        return weighted_mean(nll, target[:, -1])

    def finalize(self, out, target):
        pass

    def risk(self, out):
        # With one shape, minus the log scale orders the rows as any risk summary does.
        return -self._params(out)[:, 0]

    def cumulative_hazard(self, out, times):
        params = self._params(out)
        t = np.asarray(times, dtype=np.float64)[None, :] / self.time_scale_
        with np.errstate(divide="ignore"):
            log_t = np.log(t)
        return np.exp(np.exp(params[:, 1:2]) * (log_t - params[:, 0:1]))


# Soft bounds of the Weibull outputs: exp(+-12) spans any follow-up around the median time.
_LOG_SCALE_BOUND, _LOG_SHAPE_BOUND = 12.0, 2.0


def _shifted(out, offset):
    """``out + offset`` for a torch or numpy ``out``: the network predicts departures from the marginal fit."""
    if isinstance(out, torch.Tensor):
        return out + torch.as_tensor(offset, dtype=out.dtype, device=out.device)
    return out + offset


# torchsurv's cap of the Weibull cumulative hazard in its likelihood.
_MAX_WEIBULL_HAZARD = 1e10


def weibull_nll(log_params, event, time):
    """Per-row negative log-likelihood of a Weibull ``(log scale, log shape)``: :math:`H(t) - \\delta \\log h(t)`.

    torchsurv's ``neg_log_likelihood_weibull`` before its reduction (it has no per-row one,
    which a weighted mean needs), with its cap of the cumulative hazard.
    """
    log_scale, log_shape = log_params.unbind(1)
    log_time = torch.log(time) - log_scale
    log_hazard = log_shape - log_scale + torch.expm1(log_shape) * log_time
    cumulative = torch.exp(torch.exp(log_shape) * log_time).clamp(max=_MAX_WEIBULL_HAZARD)
    return cumulative - event * log_hazard


def _marginal_weibull(time, event, weight, bounds):
    """``(log scale, log shape)`` of the Weibull fitted without covariates (weighted maximum likelihood)."""
    log_time = np.log(time)

    def nll(params):
        log_scale, log_shape = params
        z = np.exp(log_shape) * (log_time - log_scale)
        log_hazard = log_shape - log_scale + (np.exp(log_shape) - 1) * (log_time - log_scale)
        return (weight * (np.exp(z) - event * log_hazard)).sum()

    fitted = minimize(nll, x0=np.zeros(2), method="L-BFGS-B", bounds=list(zip(-bounds, bounds)))
    return fitted.x


def _bounded(out):
    """``(log scale, log shape)`` soft-bounded with ``b * tanh(z / b)``, for a torch or numpy ``out``."""
    torch_out = isinstance(out, torch.Tensor)
    tanh = torch.tanh if torch_out else np.tanh
    bounds = (_LOG_SCALE_BOUND, _LOG_SHAPE_BOUND)
    columns = [bound * tanh(out[:, k] / bound) for k, bound in enumerate(bounds)]
    return torch.stack(columns, dim=1) if torch_out else np.stack(columns, axis=1)


# n_durations="auto": 5 bins below this many training events, 10 from it on (docs/design.md).
AUTO_BINS_EVENTS = 1000
AUTO_BINS = (5, 10)


class DiscreteTimeModel:
    """Discrete-time logistic hazards on ``n_durations`` bins at event-time quantiles.

    The network's outputs are offsets from the life-table hazards of the training rows
    (``offset_``: the maximum-likelihood hazards without covariates), so training starts
    from the Kaplan-Meier-like marginal model instead of a hazard of 1/2 in every bin.
    ``n_durations="auto"`` is resolved from the number of training events in ``prepare``.
    """

    max_output = np.inf  # any finite logit is a valid hazard
    has_intercept = True

    def __init__(self, n_durations):
        self.n_durations = n_durations

    @property
    def n_outputs(self):
        return self.n_durations

    def prepare(self, time, event, weight):
        deaths = event & (weight > 0)
        if self.n_durations == "auto":
            self.n_durations = AUTO_BINS[0] if weight[deaths].sum() < AUTO_BINS_EVENTS else AUTO_BINS[1]
        quantiles = np.linspace(0.0, 1.0, self.n_durations + 1)[1:]
        cuts = np.unique(_weighted_quantile(time[deaths], weight[deaths], quantiles))
        cuts[-1] = max(cuts[-1], time[weight > 0].max())
        # Pad with the last cut when ties leave fewer distinct quantiles than bins.
        self.cuts_ = np.concatenate([cuts, np.full(self.n_durations - len(cuts), cuts[-1])])
        bins = self.bin_index(time)
        self.offset_ = _life_table_logits(bins, event, weight, self.n_durations)
        return np.column_stack([bins, event, weight]).astype(np.float64)

    def bin_index(self, time):
        """Bin of each time: bin j holds (cut[j-1], cut[j]]."""
        return np.minimum(np.searchsorted(self.cuts_, time, side="left"), self.n_durations - 1)

    def loss(self, out, target):
        return discrete_time_nll(
            _shifted(out, self.offset_), target[:, 0].long(), target[:, 1].to(out.dtype), target[:, -1]
        )

    def finalize(self, out, target):
        pass

    def _cumulative(self, out):
        # -log S at the end of each bin: sum over bins k <= j of -log(1 - h_k) = softplus(z_k).
        return np.cumsum(np.logaddexp(0.0, _shifted(out, self.offset_)), axis=1)

    def risk(self, out):
        survival = survival_from_hazard(self._cumulative(out))
        widths = np.diff(self.cuts_, prepend=0.0)
        return -(survival * widths[None, :]).sum(axis=1)

    def cumulative_hazard(self, out, times):
        n_passed = np.searchsorted(self.cuts_, times, side="right")
        cumulative = np.concatenate([np.zeros((len(out), 1)), self._cumulative(out)], axis=1)
        return cumulative[:, n_passed]


def _life_table_logits(bins, event, weight, n_bins):
    """Logits of the (weighted) maximum-likelihood hazards without covariates, for :func:`discrete_time_nll`.

    In bin j, the events there and the rows that leave in a later bin are at risk (a row
    censored in bin j contributes survival through the earlier bins only).
    """
    deaths = np.bincount(bins[event], weights=weight[event], minlength=n_bins)
    leaving = np.bincount(bins, weights=weight, minlength=n_bins)
    later = leaving[::-1].cumsum()[::-1] - leaving
    at_risk = deaths + later
    hazard = np.clip(np.divide(deaths, at_risk, out=np.zeros(n_bins), where=at_risk > 0), 1e-4, 1 - 1e-4)
    return np.log(hazard) - np.log1p(-hazard)


def discrete_time_nll(logits, bin_index, event, weight):
    """Negative log-likelihood of discrete-time hazards (see module docstring), the mean under ``weight``."""
    bins = torch.arange(logits.shape[1], device=logits.device)
    before = (bins[None, :] < bin_index[:, None]).to(logits.dtype)
    survived = (F.softplus(logits) * before).sum(dim=1)
    at_event = F.softplus(-logits.gather(1, bin_index[:, None]).squeeze(1)) * event
    return weighted_mean(survived + at_event, weight)


def event_indicator(target):
    """The event column of encoded survival targets, as booleans."""
    return target[:, 1].bool()


def make_survival_model(loss, n_durations):
    """The survival model object behind ``loss=`` (``"cox"``, ``"weibull"``, ``"discrete"``)."""
    if loss == "cox":
        return CoxModel()
    if loss == "weibull":
        return WeibullModel()
    return DiscreteTimeModel(n_durations)


# Elements of the cumulative-hazard grid computed at once (rows x times): 32 MB of float64.
_GRID_BLOCK = 1 << 22


class RowFunction(StepFunction):
    """One row's :class:`~sksurv.functions.StepFunction` on ``times``, its values computed when read.

    It holds the row's network outputs, not its values on the grid: ``n`` functions on a
    grid of ``T`` training times cost ``n`` output rows, not an ``(n, T)`` array. ``values``
    maps ``(1, n_outputs)`` outputs and the times to ``(1, T)`` values (picklable: a bound
    method or a partial).
    """

    def __init__(self, times, outputs, values):
        self.outputs = outputs
        self.values = values
        super().__init__(times, times)

    @property
    def y(self):
        return self.values(self.outputs[None, :], self.x)[0]

    @y.setter
    def y(self, _):
        # StepFunction.__init__ assigns y; here the values always come from the outputs.
        pass


# A cumulative hazard beyond this has a survival below float64's smallest normal number.
_MAX_HAZARD = -np.log(np.finfo(np.float64).tiny)


def survival_from_hazard(hazard):
    """``exp(-hazard)``, in place; 0 where it is below float64's smallest normal number (2.2e-308).

    NumPy's ``exp`` takes a slow path wherever its result underflows (5 times slower for a
    result of 0, 30 times for a subnormal one), as the high-risk rows of a grid do at late
    times. Those entries are set to 0 around it (an absolute difference below 2.3e-308).
    """
    beyond = hazard > _MAX_HAZARD
    underflows = beyond.any()
    if underflows:
        hazard[beyond] = 0.0
    np.exp(np.negative(hazard, out=hazard), out=hazard)
    if underflows:
        hazard[beyond] = 0.0
    return hazard


def survival_values(survival_model, outputs, times):
    """``S(t) = exp(-H(t))`` of ``survival_model``'s cumulative hazards."""
    return survival_from_hazard(survival_model.cumulative_hazard(outputs, times))


class SurvivalMixin(SurvivalAnalysisMixin):
    """The survival task of a fusion estimator, following scikit-survival's contract.

    ``predict`` is a risk score (higher = earlier event), ``score`` is Harrell's C-index,
    ``predict_survival_function`` and ``predict_cumulative_hazard_function`` return
    StepFunctions or an ``(n_samples, len(unique_times_))`` array.
    """

    _task_parameter_constraints = {
        "loss": [StrOptions({"cox", "weibull", "discrete"})],
        "n_durations": [Interval(Integral, 2, None, closed="left"), StrOptions({"auto"})],
    }

    def _encode_target(self, y, n_samples, sample_weight):
        event, time = check_survival_target(y, n_samples)
        weight = check_weights(sample_weight, n_samples)
        if not weight[event].any():
            raise ValueError(
                "sample_weight is zero on every event: the likelihood has no event to fit; give some events a weight."
            )
        self.survival_model_ = make_survival_model(self.loss, self.n_durations)
        self.unique_times_ = np.unique(time)
        return torch.from_numpy(self.survival_model_.prepare(time, event, unit_mean(weight)))

    def _n_outputs(self):
        return self.survival_model_.n_outputs

    def _loss_function(self):
        return self.survival_model_.loss

    def _linear_intercept(self):
        return self.survival_model_.has_intercept

    # Every training batch gets events: a Cox partial likelihood of an all-censored batch
    # has no terms, which would silently contribute a zero loss.
    _batch_strata = staticmethod(event_indicator)

    def _finish_fit(self, dataset, targets):
        # The baseline hazard (Breslow) or nothing, from the fitted network's training outputs.
        outputs = self.net_.predict_outputs(dataset)
        if not np.isfinite(outputs).all() or np.abs(outputs).max() > self.survival_model_.max_output:
            raise divergence_error(f"the training rows' network outputs reach {np.abs(outputs).max():.3g}", self.lr)
        self.survival_model_.finalize(outputs, targets.numpy())

    def predict(self, X):
        """Predict risk scores (higher means an earlier event).

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        risk : ndarray of shape (n_samples,)
        """
        outputs = self._predict_outputs(X)
        return self.survival_model_.risk(outputs)

    def _functions(self, X, survival, return_array):
        """Survival (``survival=True``) or cumulative hazard functions of ``X`` on ``unique_times_``.

        With ``return_array``, the grid is written a block of rows at a time into one
        preallocated array, so the peak memory is the output plus one block, whatever the
        number of rows; otherwise one :class:`RowFunction` per row.
        """
        outputs = self._predict_outputs(X)
        model = self.survival_model_
        times = self.unique_times_
        if not return_array:
            values = partial(survival_values, model) if survival else model.cumulative_hazard
            functions = np.empty(len(outputs), dtype=object)
            functions[:] = [RowFunction(times, row, values) for row in outputs]
            return functions
        grid = np.empty((len(outputs), len(times)))
        # At most a tenth of the rows a block, so that the block's temporaries stay within a
        # fifth of the output at any size; exp(-H) is taken in place, in the grid.
        step = max(1, min(_GRID_BLOCK // max(len(times), 1), -(-len(outputs) // 10)))
        for start in range(0, len(outputs), step):
            block = grid[start : start + step]
            block[...] = model.cumulative_hazard(outputs[start : start + step], times)
            if survival:
                survival_from_hazard(block)
        return grid

    def predict_cumulative_hazard_function(self, X, return_array=False):
        """Predict cumulative hazard functions.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        return_array : bool, default=False
            Return an array evaluated at ``unique_times_`` instead of StepFunctions.

        Returns
        -------
        cum_hazard : ndarray
            ``(n_samples,)`` of :class:`~sksurv.functions.StepFunction`, or an
            ``(n_samples, len(unique_times_))`` float array.
        """
        return self._functions(X, survival=False, return_array=return_array)

    def predict_survival_function(self, X, return_array=False):
        """Predict survival functions.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        return_array : bool, default=False
            Return an array evaluated at ``unique_times_`` instead of StepFunctions.

        Returns
        -------
        survival : ndarray
            ``(n_samples,)`` of :class:`~sksurv.functions.StepFunction`, or an
            ``(n_samples, len(unique_times_))`` float array. As a DataFrame indexed by time,
            one column per row (pycox's ``predict_surv_df``):
            ``pd.DataFrame(model.predict_survival_function(X, return_array=True).T, index=model.unique_times_)``.
        """
        return self._functions(X, survival=True, return_array=return_array)

    def _split_strata(self, targets):
        event = targets[:, 1].numpy().astype(bool)
        if event.sum() < 2:
            raise ValueError(
                f"early_stopping needs a validation split holding events, and y has {int(event.sum())} event(s): "
                "pass early_stopping=False."
            )
        return event

    def _fold_strata(self, targets):
        """The event indicator: internal folds and the linear start's folds each hold events."""
        return targets[:, 1].numpy().astype(bool)

    def _auto_early_stopping(self, targets):
        # Only when the validation split holds enough events for its loss to rank epochs.
        return int(targets[:, 1].sum()) * self.validation_fraction >= MIN_VALIDATION_EVENTS

    def predict_median(self, X):
        """Predict median survival times: the first time of ``unique_times_`` where ``S(t) <= 0.5``.

        scikit-survival and pycox define no median; this is lifelines' convention
        (``median_survival_times``, ``qth_survival_time``): ``inf`` for a row whose survival
        function stays above 0.5 over ``unique_times_``, the median lying beyond the follow-up
        seen in fit.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        median : ndarray of shape (n_samples,)
        """
        reached = self.predict_survival_function(X, return_array=True) <= 0.5
        return np.where(reached.any(axis=1), self.unique_times_[reached.argmax(axis=1)], np.inf)
