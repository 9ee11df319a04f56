"""The survival head: losses, baseline estimation and survival functions.

Three parametrisations of the network output, chosen with ``loss=``:

- ``"cox"``: one log-hazard per sample, trained with torchsurv's negative Cox partial
  log-likelihood (Efron ties); after training, Breslow's estimator (:func:`breslow`, the
  estimate of scikit-survival's ``BreslowEstimator``) gives the cumulative baseline hazard
  :math:`H_0`, and :math:`H_i(t) = H_0(t) e^{\\eta_i}`.
- ``"weibull"``: a log scale per sample and one shape for all, the shape of the Weibull
  fitted without covariates, trained with torchsurv's Weibull negative log-likelihood;
  :math:`H_i(t) = (t / \\lambda_i)^{\\rho}` (a Weibull proportional-hazards model). Times are
  divided by their median internally so the network starts near the data's time scale.
- ``"discrete"``: ``n_durations`` logits of discrete-time hazards on a grid of event-time
  quantiles (Gensheimer & Narasimhan 2019, nnet-survival; Kvamme & Borgan 2021, logistic
  hazard). An event in bin :math:`j` contributes
  :math:`\\sum_{k<j} \\log(1-h_k) + \\log h_j`, a censoring in bin :math:`j` contributes
  :math:`\\sum_{k<j} \\log(1-h_k)` (the sample is known to be alive when bin :math:`j` starts).

Every model maps outputs to a risk score (higher = earlier event) and to cumulative hazards
on any time grid, computed for the whole batch at once.
"""

import warnings
from functools import partial
from numbers import Integral

import numpy as np
import torch
from scipy.optimize import minimize
from sksurv.base import SurvivalAnalysisMixin
from sksurv.functions import StepFunction
from sksurv.util import check_y_survival
from torch.nn import functional as F
from torchsurv.loss.cox import neg_partial_log_likelihood
from torchsurv.loss.weibull import neg_log_likelihood_weibull

from ._base import divergence_error
from ._compat import Interval, StrOptions
from ._data import _rows


# early_stopping="auto" holds out a validation split when it would hold at least this many events.
MIN_VALIDATION_EVENTS = 100


# Times above this are refused: float32 networks and torchsurv cannot represent them.
_MAX_TIME = float(np.finfo(np.float32).max) / 16


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
        (raw_time > _MAX_TIME, f"times above {_MAX_TIME:.1e} (rescale the time unit)"),
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
    # A fitted log hazard beyond this means the training diverged: Breslow's exp() overflows.
    max_output = 500.0

    def prepare(self, time, event):
        rank = np.unique(time, return_inverse=True)[1]
        return np.column_stack([rank, event, time])

    def loss(self, out, target):
        with warnings.catch_warnings():
            # torchsurv warns on every batch with tied times; Efron's method is the answer to it.
            warnings.filterwarnings("ignore", message="Ties in `time` detected")
            return neg_partial_log_likelihood(
                out[:, 0], target[:, 1].bool(), target[:, 0].to(out.dtype), ties_method="efron"
            )

    def finalize(self, out, target):
        self.cum_baseline_hazard_ = breslow(out[:, 0], target[:, 1], target[:, 0].astype(np.intp), target[:, 2])

    def risk(self, out):
        return out[:, 0]

    def cumulative_hazard(self, out, times):
        h0 = self.cum_baseline_hazard_
        # Breslow's H0 is 0 before the first observed time and constant after the last one.
        idx = np.searchsorted(h0.x, times, side="right") - 1
        base = np.where(idx >= 0, h0.y[np.clip(idx, 0, None)], 0.0)
        return np.exp(out[:, :1]) * base[None, :]


def breslow(log_hazard, event, rank, time):
    """Breslow's cumulative baseline hazard on the unique times, as a StepFunction.

    :math:`H_0(t) = \\sum_{s \\le t} d_s / \\sum_{j: t_j \\ge s} e^{\\eta_j}` (Breslow, "Discussion of
    Professor Cox's paper", Journal of the Royal Statistical Society B, 1972), with ``rank``
    the dense rank of each row's ``time``. The same estimate as scikit-survival's
    ``BreslowEstimator``, by per-time sums (``bincount``) instead of its Python loop over the
    rows, which costs 0.6 s at 200,000 rows.
    """
    n_times = int(rank.max()) + 1
    times = np.empty(n_times)
    times[rank] = time
    deaths = np.bincount(rank, weights=event, minlength=n_times)
    at_risk = np.bincount(rank, weights=np.exp(log_hazard), minlength=n_times)[::-1].cumsum()[::-1]
    return StepFunction(times, np.cumsum(deaths / at_risk))


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

    def prepare(self, time, event):
        positive = time[time > 0]
        self.time_scale_ = float(np.median(positive)) if len(positive) else 1.0
        scaled = time / self.time_scale_
        floor = scaled[scaled > 0].min() / 2 if len(positive) else 1.0
        scaled = np.maximum(scaled, floor)
        bounds = np.array([_LOG_SCALE_BOUND, _LOG_SHAPE_BOUND])
        self.offset_ = bounds * np.arctanh(_marginal_weibull(scaled, event, 0.95 * bounds) / bounds)
        return np.column_stack([scaled, event])

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
        return neg_log_likelihood_weibull(self._params(out), target[:, 1].bool(), target[:, 0].to(out.dtype))

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


def _marginal_weibull(time, event, bounds):
    """``(log scale, log shape)`` of the Weibull fitted without covariates (maximum likelihood)."""
    log_time = np.log(time)

    def nll(params):
        log_scale, log_shape = params
        z = np.exp(log_shape) * (log_time - log_scale)
        return -(event * (log_shape - log_scale + (np.exp(log_shape) - 1) * (log_time - log_scale))).sum() + np.exp(
            z
        ).sum()

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

    def __init__(self, n_durations):
        self.n_durations = n_durations

    @property
    def n_outputs(self):
        return self.n_durations

    def prepare(self, time, event):
        if self.n_durations == "auto":
            self.n_durations = AUTO_BINS[0] if event.sum() < AUTO_BINS_EVENTS else AUTO_BINS[1]
        quantiles = np.linspace(0.0, 1.0, self.n_durations + 1)[1:]
        cuts = np.unique(np.quantile(time[event], quantiles))
        cuts[-1] = max(cuts[-1], time.max())
        # Pad with the last cut when ties leave fewer distinct quantiles than bins.
        self.cuts_ = np.concatenate([cuts, np.full(self.n_durations - len(cuts), cuts[-1])])
        bins = self.bin_index(time)
        self.offset_ = _life_table_logits(bins, event, self.n_durations)
        return np.column_stack([bins, event]).astype(np.float64)

    def bin_index(self, time):
        """Bin of each time: bin j holds (cut[j-1], cut[j]]."""
        return np.minimum(np.searchsorted(self.cuts_, time, side="left"), self.n_durations - 1)

    def loss(self, out, target):
        return discrete_time_nll(_shifted(out, self.offset_), target[:, 0].long(), target[:, 1].to(out.dtype))

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


def _life_table_logits(bins, event, n_bins):
    """Logits of the maximum-likelihood hazards without covariates, for :func:`discrete_time_nll`.

    In bin j, the events there and the rows that leave in a later bin are at risk (a row
    censored in bin j contributes survival through the earlier bins only).
    """
    deaths = np.bincount(bins[event], minlength=n_bins)
    leaving = np.bincount(bins, minlength=n_bins)
    later = leaving[::-1].cumsum()[::-1] - leaving
    hazard = np.clip(deaths / np.maximum(deaths + later, 1), 1e-4, 1 - 1e-4)
    return np.log(hazard) - np.log1p(-hazard)


def discrete_time_nll(logits, bin_index, event):
    """Mean negative log-likelihood of discrete-time hazards (see module docstring)."""
    bins = torch.arange(logits.shape[1], device=logits.device)
    before = (bins[None, :] < bin_index[:, None]).to(logits.dtype)
    survived = (F.softplus(logits) * before).sum(dim=1)
    at_event = F.softplus(-logits.gather(1, bin_index[:, None]).squeeze(1)) * event
    return (survived + at_event).mean()


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

    def _encode_target(self, y, n_samples):
        event, time = check_survival_target(y, n_samples)
        self.survival_model_ = make_survival_model(self.loss, self.n_durations)
        self.unique_times_ = np.unique(time)
        return torch.from_numpy(self.survival_model_.prepare(time, event))

    def _n_outputs(self):
        return self.survival_model_.n_outputs

    def _loss_function(self):
        return self.survival_model_.loss

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
