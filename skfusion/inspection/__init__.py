"""Attributions of a fitted fusion model: which tokens, slices and pixels drive its score."""

from ._attribution import gradient_saliency, integrated_gradients, token_importance

__all__ = ["gradient_saliency", "integrated_gradients", "token_importance"]
