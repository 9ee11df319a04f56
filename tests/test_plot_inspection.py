"""The attribution figures of skfusion.plot."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from skfusion.plot import plot_saliency_overlay, plot_slice_importance


def test_slice_importance_heatmap_blanks_padding():
    ax = plot_slice_importance([[0.1, 0.7, 0.2], [0.5, 0.5]], labels=["a", "b"])
    data = ax.images[0].get_array()
    assert data.shape == (2, 3)
    assert data.mask[1, 2] and not data.mask[0].any()
    np.testing.assert_allclose(data[0], [0.1, 0.7, 0.2])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_saliency_overlay_shows_the_channel_max_of_the_magnitude():
    image = np.stack([np.eye(4), 3 * np.eye(4), 2 * np.eye(4)], axis=-1)  # (H, W, C), as image columns hold them
    saliency = np.zeros((4, 4, 3))
    saliency[0, 1, 0], saliency[0, 1, 1] = 2.0, -5.0
    ax = plot_saliency_overlay(image, saliency)
    np.testing.assert_allclose(ax.images[0].get_array(), 2 * np.eye(4))
    assert ax.images[1].get_array()[0, 1] == 5.0


@pytest.mark.parametrize(
    "args, match",
    [
        (([],), "importance is empty"),
        (([[0.1], [[1.0, 2.0]]],), r"importance\[1\] must be a non-empty, finite 1-D array"),
        (([[np.nan]],), r"importance\[0\] must be a non-empty, finite"),
    ],
)
def test_slice_importance_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        plot_slice_importance(*args)
    with pytest.raises(ValueError, match="labels has 1 entries for 2 rows"):
        plot_slice_importance([[1.0], [2.0]], labels=["x"])


def test_saliency_overlay_bad_input():
    with pytest.raises(ValueError, match=r"same \(H, W\) or \(H, W, C\) shape; got \(4, 4\) and \(4, 4, 1\)"):
        plot_saliency_overlay(np.ones((4, 4)), np.ones((4, 4, 1)))
    with pytest.raises(ValueError, match=r"shape \(3, 4, 4\) is channels-first .* np.moveaxis\(image, 0, -1\)"):
        plot_saliency_overlay(np.ones((3, 4, 4)), np.ones((3, 4, 4)))
    with pytest.raises(ValueError, match="finite values only"):
        plot_saliency_overlay(np.ones((4, 4)), np.full((4, 4), np.inf))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]; got 2"):
        plot_saliency_overlay(np.ones((4, 4)), np.ones((4, 4)), alpha=2)
