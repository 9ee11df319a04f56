"""The classification head: binary, multi-class and multi-label targets.

Binary and multi-class targets get one logit per class and the cross-entropy loss;
multi-label indicator targets (the 25 phenotypes of MedFuse, the 14 radiology findings of
MedMod) get one logit per label and the binary cross-entropy, as in scikit-learn's
``MLPClassifier``: ``classes_`` is then ``arange(n_labels)`` and ``predict_proba`` returns
the per-label probabilities. Both losses are means under the sample weights (times the
class weights of ``class_weight``), the last column of the encoded targets.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d
from torch.nn import functional as F

from ._engine import check_weights, unit_mean, weighted_mean
from ._compat import StrOptions

# early_stopping="auto" holds out a validation split when it would hold at least this many
# rows of the rarest class (or positives of the rarest label).
MIN_VALIDATION_POSITIVES = 100


def cross_entropy(out, target):
    """The cross-entropy of class logits ``out``, the mean under the weights (``target``: class code, weight)."""
    return weighted_mean(F.cross_entropy(out, target[:, 0].long(), reduction="none"), target[:, -1])


def binary_cross_entropy(out, target):
    """The per-label binary cross-entropy of logits ``out``, the mean over labels and, under the weights, rows.

    ``target``: the label-indicator columns, then the weight.
    """
    labels = target[:, :-1].to(out.dtype)
    per_row = F.binary_cross_entropy_with_logits(out, labels, reduction="none").mean(dim=1)
    return weighted_mean(per_row, target[:, -1])


class ClassifierHeadMixin(ClassifierMixin):
    """The classification task of a fusion estimator, following scikit-learn's conventions."""

    _task_parameter_constraints = {"class_weight": [dict, StrOptions({"balanced"}), None]}

    def _encode_target(self, y, n_samples, sample_weight):
        if getattr(getattr(y, "dtype", None), "names", None):
            raise ValueError(
                f"y is a structured array with fields {list(y.dtype.names)}, a survival target: "
                f"{type(self).__name__} is a classifier; use its survival twin "
                f"({type(self).__name__.replace('Classifier', 'Survival')}), or pass class labels."
            )
        check_classification_targets(y)
        y = np.asarray(y)
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
        self.multilabel_ = type_of_target(y) == "multilabel-indicator"
        weight = check_weights(sample_weight, n_samples)
        # The private pre-training stage has no class_weight: it is given the weights with them.
        class_weight = getattr(self, "class_weight", None)
        if self.multilabel_:
            if class_weight is not None:
                raise ValueError(
                    f"class_weight={class_weight!r} applies to binary and multi-class targets (as in scikit-learn's "
                    "LogisticRegression); y is a label-indicator matrix: weigh its rows with sample_weight."
                )
            self.classes_ = np.arange(y.shape[1])
            return torch.from_numpy(np.column_stack([y.astype(np.float64), unit_mean(weight)]))
        y = column_or_1d(y, warn=True)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}): a classifier needs at least two classes.")
        if class_weight is not None:
            weight = weight * self._class_weights(class_weight, codes, weight)[codes]
        unweighted = np.bincount(codes, weights=weight, minlength=len(self.classes_)) == 0
        if unweighted.any():
            raise ValueError(
                "sample_weight (times class_weight) is zero on every row of class(es) "
                f"{self.classes_[unweighted].tolist()}: a class without weight cannot be learned; remove its rows "
                "or give them a weight."
            )
        return torch.from_numpy(np.column_stack([codes, unit_mean(weight)]))

    def _class_weights(self, class_weight, codes, weight):
        """The weight of each class of ``classes_`` from ``class_weight`` (``"balanced"`` or a dict).

        ``"balanced"`` is scikit-learn's ``n_samples / (n_classes * count)``, with the counts
        under the sample weights (as in ``LogisticRegression``). A dict may leave classes out
        (weight 1) but names no other class.
        """
        if class_weight == "balanced":
            counts = np.bincount(codes, weights=weight, minlength=len(self.classes_))
            return np.divide(counts.sum(), len(counts) * counts, out=np.zeros(len(counts)), where=counts > 0)
        classes = self.classes_.tolist()
        unknown = [key for key in class_weight if key not in classes]
        if unknown:
            raise ValueError(f"class_weight names class(es) {unknown} that y does not have; its classes are {classes}.")
        values = [class_weight.get(label, 1.0) for label in classes]
        bad = [(label, v) for label, v in zip(classes, values) if not (isinstance(v, Real) and 0 <= v < np.inf)]
        if bad:
            raise ValueError(f"class_weight must map classes to non-negative finite numbers; got {dict(bad)}.")
        return np.asarray(values, dtype=np.float64)

    def _n_outputs(self):
        return len(self.classes_)

    _batch_strata = None

    def _loss_function(self):
        return binary_cross_entropy if self.multilabel_ else cross_entropy

    @staticmethod
    def _codes(targets):
        """The class code of each row of single-label ``targets``."""
        return targets[:, 0].numpy().astype(np.intp)

    def _split_strata(self, targets):
        if self.multilabel_:
            return None
        codes = self._codes(targets)
        counts = np.bincount(codes)
        return codes if counts[counts > 0].min() >= 2 else None

    def _fold_strata(self, targets):
        """The class labels (None for multi-label targets): every internal fold holds every class."""
        return None if self.multilabel_ else self._codes(targets)

    def _auto_early_stopping(self, targets):
        # Only when the validation split holds enough rows of the rarest class (or label).
        counts = targets[:, :-1].sum(dim=0) if self.multilabel_ else np.bincount(self._codes(targets))
        positives = counts[counts > 0].min()
        return float(positives) * self.validation_fraction >= MIN_VALIDATION_POSITIVES

    def _finish_fit(self, dataset, targets):
        pass

    def predict_proba(self, X):
        """Predict class (or per-label) probabilities.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to one for binary and multi-class targets; independent per-label
            probabilities for multi-label targets.
        """
        logits = torch.from_numpy(self._predict_outputs(X))
        proba = torch.sigmoid(logits) if self.multilabel_ else torch.softmax(logits, dim=1)
        return proba.numpy()

    def predict(self, X):
        """Predict class labels (or a label-indicator matrix for multi-label targets).

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        proba = self.predict_proba(X)
        if self.multilabel_:
            return (proba > 0.5).astype(int)
        return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True  # a label-indicator y gets one sigmoid output per label
        return tags
