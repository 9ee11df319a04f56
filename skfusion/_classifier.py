"""The classification head: binary, multi-class and multi-label targets.

Binary and multi-class targets get one logit per class and the cross-entropy loss;
multi-label indicator targets (the 25 phenotypes of MedFuse, the 14 radiology findings of
MedMod) get one logit per label and the binary cross-entropy, as in scikit-learn's
``MLPClassifier``: ``classes_`` is then ``arange(n_labels)`` and ``predict_proba`` returns
the per-label probabilities.
"""

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d
from torch.nn import functional as F

# early_stopping="auto" holds out a validation split when it would hold at least this many
# rows of the rarest class (or positives of the rarest label).
MIN_VALIDATION_POSITIVES = 100


class ClassifierHeadMixin(ClassifierMixin):
    """The classification task of a fusion estimator, following scikit-learn's conventions."""

    _task_parameter_constraints = {}

    def _encode_target(self, y, n_samples):
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
        if self.multilabel_:
            self.classes_ = np.arange(y.shape[1])
            return torch.from_numpy(y.astype(np.float32))
        y = column_or_1d(y, warn=True)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}): a classifier needs at least two classes.")
        return torch.from_numpy(codes.astype(np.int64))

    def _n_outputs(self):
        return len(self.classes_)

    _batch_strata = None

    def _loss_function(self):
        return F.binary_cross_entropy_with_logits if self.multilabel_ else F.cross_entropy

    def _split_strata(self, targets):
        if self.multilabel_:
            return None
        counts = np.bincount(targets.numpy())
        return targets.numpy() if counts[counts > 0].min() >= 2 else None

    def _fold_strata(self, targets):
        """The class labels (None for multi-label targets): every internal fold holds every class."""
        return None if self.multilabel_ else targets.numpy()

    def _auto_early_stopping(self, targets):
        # Only when the validation split holds enough rows of the rarest class (or label).
        counts = targets.sum(dim=0) if self.multilabel_ else torch.bincount(targets)
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
