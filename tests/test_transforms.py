"""Affine geometry: the pixel-centre convention, inversion, flips and agreement between warp and points."""

from __future__ import annotations

import numpy as np
import pytest

from cattlepose.data.transforms import apply_affine, box_to_center_scale, get_affine, invert_affine, warp


def test_whole_image_at_its_own_size_is_the_identity():
    center, size = box_to_center_scale(np.array([0, 0, 64, 48]), 64 / 48, 1.0)
    assert np.allclose(center, [31.5, 23.5]) and np.allclose(size, [64, 48])
    trans = get_affine(center, size, 0.0, (64, 48))
    assert np.allclose(trans, [[1, 0, 0], [0, 1, 0]])
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert np.array_equal(warp(img, trans, (64, 48)), img)


def test_box_grows_to_the_aspect_ratio_then_by_padding():
    center, size = box_to_center_scale(np.array([10, 20, 40, 10]), 1.0, 1.25)
    assert np.allclose(center, [29.5, 24.5])
    assert np.allclose(size, [50, 50])
    _, size = box_to_center_scale(np.array([0, 0, 10, 40]), 0.5, 1.0)
    assert np.allclose(size, [20, 40])


def test_flip_mirrors_about_the_pixel_centre_axis():
    center, size = np.array([31.5, 31.5]), np.array([64.0, 64.0])
    plain = get_affine(center, size, 0.0, (64, 64))
    flipped = get_affine(center, size, 0.0, (64, 64), flip=True)
    pts = np.array([[0.0, 5.0], [63.0, 9.0], [10.25, 40.5]])
    a, b = apply_affine(pts, plain), apply_affine(pts, flipped)
    assert np.allclose(b[:, 0], 63 - a[:, 0]) and np.allclose(b[:, 1], a[:, 1])
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert np.array_equal(warp(img, flipped, (64, 64)), img[:, ::-1])


@pytest.mark.parametrize("flip", [False, True])
def test_invert_round_trip(flip):
    rng = np.random.default_rng(2)
    for _ in range(20):
        trans = get_affine(rng.uniform(0, 300, 2), rng.uniform(20, 300, 2), rng.uniform(-45, 45), (96, 128), flip)
        pts = rng.uniform(-50, 350, (30, 2))
        back = apply_affine(apply_affine(pts, trans), invert_affine(trans))
        assert np.abs(back - pts).max() < 1e-9


def test_rotation_is_counter_clockwise_on_screen():
    # a point to the right of the centre moves up (smaller y) after a 90 degree turn
    trans = get_affine(np.array([50.0, 50.0]), np.array([100.0, 100.0]), 90.0, (100, 100))
    p = apply_affine(np.array([[60.0, 50.0]]), trans)[0]
    assert np.allclose(p, [49.5, 39.5])


def test_warp_moves_pixels_where_points_go():
    # a single bright pixel lands exactly where apply_affine sends its centre (integer targets)
    img = np.zeros((80, 120, 3), np.uint8)
    img[30, 70] = 255
    trans = get_affine(np.array([59.5, 39.5]), np.array([80.0, 120.0]), 90.0, (80, 120))  # unit scale
    out = warp(img, trans, (80, 120))
    x, y = apply_affine(np.array([[70.0, 30.0]]), trans)[0]
    assert (round(x), round(y)) == tuple(np.argwhere(out[..., 0] == out[..., 0].max())[0][::-1])
    assert abs(x - round(x)) < 1e-9 and abs(y - round(y)) < 1e-9


def test_invert_affine_of_a_stack_equals_each():
    rng = np.random.default_rng(3)
    stack = rng.normal(size=(5, 2, 3)) + np.array([[2.0, 0, 0], [0, 2.0, 0]])
    each = np.stack([invert_affine(t) for t in stack])
    assert np.allclose(invert_affine(stack), each, atol=1e-12)
    composed = invert_affine(stack)[:, :, :2] @ stack[:, :, :2]
    assert np.allclose(composed, np.eye(2), atol=1e-12)


def test_warp_into_a_given_array():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    trans = get_affine(np.array([20.0, 15.0]), np.array([30.0, 30.0]), 10.0, (16, 12))
    batch = np.zeros((2, 12, 16, 3), np.uint8)
    out = warp(image, trans, (16, 12), out=batch[1])
    assert np.shares_memory(out, batch) and np.array_equal(batch[1], warp(image, trans, (16, 12)))
    assert not batch[0].any()
