"""The survival head: losses, baseline estimation and survival functions.

Three parametrisations of the network output, chosen with ``loss=``:

- ``"cox"``: one log-hazard per sample, trained with torchsurv's negative Cox partial
  log-likelihood (Efron ties); after training, Breslow's estimator (scikit-survival's
  :class:`~sksurv.linear_model.coxph.BreslowEstimator`) gives the cumulative baseline hazard
  :math:`H_0`, and :math:`H_i(t) = H_0(t) e^{\\eta_i}`.
- ``"weibull"``: log scale and log shape per sample, trained with torchsurv's Weibull
  negative log-likelihood; :math:`H_i(t) = (t / \\lambda_i)^{\\rho_i}`. Times are divided by
  their median internally so the network starts near the data's time scale.
- ``"discrete"``: ``n_durations`` logits of discrete-time hazards on a grid of event-time
  quantiles (Gensheimer & Narasimhan 2019, nnet-survival; Kvamme & Borgan 2021, logistic
  hazard). An event in bin :math:`j` contributes
  :math:`\\sum_{k<j} \\log(1-h_k) + \\log h_j`, a censoring in bin :math:`j` contributes
  :math:`\\sum_{k<j} \\log(1-h_k)` (the sample is known to be alive when bin :math:`j` starts).

Every model maps outputs to a risk score (higher = earlier event) and to cumulative hazards
on any time grid, computed for the whole batch at once.
"""

import warnings
from numbers import Integral

import numpy as np
import torch
from scipy.special import digamma
from sksurv.base import SurvivalAnalysisMixin
from sksurv.functions import StepFunction
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.util import check_y_survival
from torch.nn import functional as F
from torchsurv.loss.cox import neg_partial_log_likelihood
from torchsurv.loss.weibull import neg_log_likelihood_weibull

from ._compat import Interval, StrOptions

_EULER_GAMMA = -digamma(1.0)


def check_survival_target(y, n_samples):
    """Validate a structured survival ``y`` like scikit-survival and return ``(event, time)``.

    Raises
    ------
    ValueError
        For a non-structured array, non-boolean events, NaN/inf or negative times, a length
        different from ``n_samples``, or when every sample is censored.
    """
    names = getattr(getattr(y, "dtype", None), "names", None)
    if names is None or len(names) != 2:
        raise ValueError(
            "y must be a structured array of (event: bool, time: float), as made by "
            f"sksurv.util.Surv.from_arrays; got {type(y).__name__} with dtype {getattr(y, 'dtype', None)}."
        )
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
    raw_time = np.asarray(y[names[1]], dtype=float)
    if not np.isfinite(raw_time).all():
        raise ValueError(f"y has non-finite times in rows {np.flatnonzero(~np.isfinite(raw_time))[:8].tolist()}.")
    if (raw_time < 0).any():
        raise ValueError(f"y has negative times in rows {np.flatnonzero(raw_time < 0)[:8].tolist()}.")
    event, time = check_y_survival(y, allow_time_zero=True)
    return event, time.astype(np.float64)


class CoxModel:
    """Cox proportional hazards: output = log relative hazard, Breslow baseline."""

    n_outputs = 1

    def prepare(self, time, event):
        return np.column_stack([time, event])

    def loss(self, out, target):
        with warnings.catch_warnings():
            # torchsurv warns on every batch with tied times; Efron's method is the answer to it.
            warnings.filterwarnings("ignore", message="Ties in `time` detected")
            return neg_partial_log_likelihood(
                out[:, 0], target[:, 1].bool(), target[:, 0].to(out.dtype), ties_method="efron"
            )

    def finalize(self, out, target):
        self.baseline_ = BreslowEstimator().fit(out[:, 0], target[:, 1].astype(bool), target[:, 0])

    def risk(self, out):
        return out[:, 0]

    def cumulative_hazard(self, out, times):
        h0 = self.baseline_.cum_baseline_hazard_
        # Breslow's H0 is 0 before the first observed time and constant after the last one.
        idx = np.searchsorted(h0.x, times, side="right") - 1
        base = np.where(idx >= 0, h0.y[np.clip(idx, 0, None)], 0.0)
        return np.exp(out[:, :1]) * base[None, :]


class WeibullModel:
    """Weibull AFT: outputs = (log scale, log shape) in units of the median training time."""

    n_outputs = 2

    def prepare(self, time, event):
        self.time_scale_ = float(np.median(time[time > 0])) if (time > 0).any() else 1.0
        return np.column_stack([time / self.time_scale_, event])

    def loss(self, out, target):
        return neg_log_likelihood_weibull(out, target[:, 1].bool(), target[:, 0].to(out.dtype))

    def finalize(self, out, target):
        pass

    def risk(self, out):
        # Minus the expected log event time: E[log T] = log(lambda) - gamma / rho.
        return _EULER_GAMMA * np.exp(-out[:, 1]) - out[:, 0]

    def cumulative_hazard(self, out, times):
        t = np.asarray(times, dtype=np.float64)[None, :] / self.time_scale_
        with np.errstate(divide="ignore"):
            log_t = np.log(t)
        return np.exp(np.exp(out[:, 1:2]) * (log_t - out[:, 0:1]))


class DiscreteTimeModel:
    """Discrete-time logistic hazards on ``n_durations`` bins at event-time quantiles."""

    def __init__(self, n_durations):
        self.n_durations = n_durations

    @property
    def n_outputs(self):
        return self.n_durations

    def prepare(self, time, event):
        quantiles = np.linspace(0.0, 1.0, self.n_durations + 1)[1:]
        cuts = np.unique(np.quantile(time[event], quantiles))
        cuts[-1] = max(cuts[-1], time.max())
        # Pad with the last cut when ties leave fewer distinct quantiles than bins.
        self.cuts_ = np.concatenate([cuts, np.full(self.n_durations - len(cuts), cuts[-1])])
        return np.column_stack([self.bin_index(time), event]).astype(np.float64)

    def bin_index(self, time):
        """Bin of each time: bin j holds (cut[j-1], cut[j]]."""
        return np.minimum(np.searchsorted(self.cuts_, time, side="left"), self.n_durations - 1)

    def loss(self, out, target):
        return discrete_time_nll(out, target[:, 0].long(), target[:, 1].to(out.dtype))

    def finalize(self, out, target):
        pass

    def _cumulative(self, out):
        # -log S at the end of each bin: sum over bins k <= j of -log(1 - h_k) = softplus(z_k).
        return np.cumsum(np.logaddexp(0.0, out), axis=1)

    def risk(self, out):
        survival = np.exp(-self._cumulative(out))
        widths = np.diff(self.cuts_, prepend=0.0)
        return -(survival * widths[None, :]).sum(axis=1)

    def cumulative_hazard(self, out, times):
        n_passed = np.searchsorted(self.cuts_, times, side="right")
        cumulative = np.concatenate([np.zeros((len(out), 1)), self._cumulative(out)], axis=1)
        return cumulative[:, n_passed]


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


def step_functions(values, times):
    """One :class:`~sksurv.functions.StepFunction` per row of ``values`` on ``times``."""
    return np.array([StepFunction(times, row) for row in values], dtype=object)


class SurvivalMixin(SurvivalAnalysisMixin):
    """The survival task of a fusion estimator, following scikit-survival's contract.

    ``predict`` is a risk score (higher = earlier event), ``score`` is Harrell's C-index,
    ``predict_survival_function`` and ``predict_cumulative_hazard_function`` return
    StepFunctions or an ``(n_samples, len(unique_times_))`` array.
    """

    _task_parameter_constraints = {
        "loss": [StrOptions({"cox", "weibull", "discrete"})],
        "n_durations": [Interval(Integral, 2, None, closed="left")],
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
        self.survival_model_.finalize(self.net_.predict_outputs(dataset), targets.numpy())

    def predict(self, X):
        """Predict risk scores (higher means an earlier event).

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        risk : ndarray of shape (n_samples,)
        """
        return self.survival_model_.risk(self._predict_outputs(X))

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
        hazard = self.survival_model_.cumulative_hazard(self._predict_outputs(X), self.unique_times_)
        return hazard if return_array else step_functions(hazard, self.unique_times_)

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
            ``(n_samples, len(unique_times_))`` float array.
        """
        survival = np.exp(-self.predict_cumulative_hazard_function(X, return_array=True))
        return survival if return_array else step_functions(survival, self.unique_times_)

    def _split_strata(self, targets):
        return targets[:, 1].numpy().astype(bool)
