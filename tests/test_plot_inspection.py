"""The attribution figures of skfusion.plot."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from skfusion.plot import plot_saliency_overlay, plot_slice_importance, plot_slice_saliency


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


def test_slice_saliency_windows_each_slice_under_one_colour_scale():
    volume = np.stack([np.full((4, 5), hu) for hu in (-1000.0, 40.0, 500.0)])  # (z, y, x) in HU
    saliency = np.zeros((3, 4, 5))
    saliency[0, 1, 2], saliency[2, 3, 4] = -2.0, 0.5
    _, row = plt.subplots(1, 2)
    axes = plot_slice_saliency(volume, saliency, [2, 0], window="mace", ax=row)
    assert axes == list(row) and [ax.get_title() for ax in axes] == ["z = 2", "z = 0"]
    np.testing.assert_allclose(axes[0].images[0].get_array(), 1.0)  # 500 HU: above the window [-125, 225]
    np.testing.assert_allclose(axes[1].images[0].get_array(), 0.0)
    assert axes[1].images[1].get_array()[1, 2] == 2.0
    assert [ax.images[1].get_clim() for ax in axes] == [(0.0, 2.0)] * 2
    assert len(plot_slice_saliency(volume, saliency, 1)) == 1


def test_slice_saliency_bad_input():
    volume, saliency = np.zeros((3, 4, 4)), np.zeros((3, 4, 4))
    with pytest.raises(ValueError, match=r"volume must be a 3-D \(z, y, x\) array in HU; got shape \(4, 4\)"):
        plot_slice_saliency(volume[0], saliency[0], [0])
    with pytest.raises(ValueError, match=r"saliency has shape \(3, 4, 5\); it must have the volume's, \(3, 4, 4\)"):
        plot_slice_saliency(volume, np.zeros((3, 4, 5)), [0])
    with pytest.raises(ValueError, match="finite values only"):
        plot_slice_saliency(volume, np.full((3, 4, 4), np.nan), [0])
    for slices, match in [([0, 3], r"slices\[1\]=3 is not an axial index"), ([-1], r"slices\[0\]=-1"),
                          ([1.0], r"slices\[0\]=1.0"), ([True], r"slices\[0\]=True"), ([], "slices is empty")]:
        with pytest.raises(ValueError, match=match):
            plot_slice_saliency(volume, saliency, slices)
    with pytest.raises(ValueError, match=r"window=\(5, 1\)"):
        plot_slice_saliency(volume, saliency, [0], window=(5, 1))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        plot_slice_saliency(volume, saliency, [0], alpha=-1)
    with pytest.raises(ValueError, match="ax holds 1 Axes for 2 slices"):
        plot_slice_saliency(volume, saliency, [0, 1], ax=[plt.subplots()[1]])
