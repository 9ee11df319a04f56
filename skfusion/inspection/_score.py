"""The score the attributions explain, and the checks of the model that computes it."""

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._base import BaseFusion
from .._classifier import ClassifierHeadMixin
from .._survival import SurvivalMixin


def check_model(estimator, target, where=None):
    """Refuse anything but a fitted skfusion Cox survival model or classifier, and a ``target`` it has not.

    ``where`` names the estimator in the messages (a Pipeline's step); None names its class.
    """
    what = type(estimator).__name__ if where is None else f"{where} ({type(estimator).__name__})"
    if not (isinstance(estimator, BaseFusion) and isinstance(estimator, (SurvivalMixin, ClassifierHeadMixin))):
        raise ValueError(
            f"{what} is not a skfusion fusion estimator: attributions explain the network of a fitted skfusion "
            "survival model or classifier (e.g. ConcatSurvival, CoAttentionClassifier), given alone or as the "
            "last step of a Pipeline."
        )
    check_is_fitted(estimator, "net_", msg=None if where is None else f"{what} is not fitted: fit the Pipeline first.")
    if isinstance(estimator, SurvivalMixin) and estimator.loss != "cox":
        raise ValueError(
            f"attributions are of the Cox risk (the log relative hazard); the model was fitted with "
            f"loss={estimator.loss!r}: refit with loss='cox'."
        )
    if isinstance(estimator, SurvivalMixin) and target is not None:
        raise ValueError(
            f"target={target!r} names a class, but {type(estimator).__name__} is a survival model: it explains "
            "its risk score (the log relative hazard), which has no classes; leave target=None."
        )


def modality_names(estimator):
    """The modalities a fitted model reads."""
    return [spec.name for spec in estimator.layout_]


def score_columns(estimator, dataset, target):
    """Per row of ``dataset``, the column of the network's output that is the row's score.

    Column 0 (the Cox risk) for a survival model; for a classifier, ``target``'s logit, or by
    default the logit of the class the model predicts for the row (fixed at the input, so
    that integrated gradients explain one logit along the whole path).
    """
    n = len(dataset)
    if isinstance(estimator, SurvivalMixin):
        return torch.zeros(n, dtype=torch.long)
    if target is None:
        if estimator.multilabel_:
            raise ValueError("a multi-label model has no single predicted class: name the label with target=.")
        return torch.from_numpy(estimator.net_.predict_outputs(dataset).argmax(axis=1))
    matches = np.flatnonzero(estimator.classes_ == target)
    if len(matches) == 0:
        raise ValueError(
            f"target={target!r} is not a class of the model; its classes are {estimator.classes_.tolist()}."
        )
    return torch.full((n,), int(matches[0]), dtype=torch.long)


def score(module, blocks, columns):
    """The per-row score: the network's output in each row's ``columns`` (the Cox risk or a class logit)."""
    out = module(**blocks)
    return out.gather(1, columns.to(out.device)[:, None])[:, 0]
