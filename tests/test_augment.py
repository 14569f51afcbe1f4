"""preprocessing.augment: flips and rotations, the same for every frame and both streams."""
import cv2
import numpy as np
import pytest

from preprocessing.augment import DEFAULT_VARIANTS, apply_variant, augment, parse_variant


def clip(seed=0, F=16, size=112):
    """Frames with structure that is not symmetric, and E = gray(raw) so streams can be compared."""
    raw = np.empty((F, size, size, 3), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(F):
        img = np.zeros((size, size, 3), np.float32)
        img[..., 0] = 128 + 100 * np.sin(xx / 9.0 + i * 0.2)
        img[..., 1] = 128 + 100 * np.cos(yy / 7.0 - i * 0.1)
        img[..., 2] = np.where(xx < 30 + i, 220, 40)
        raw[i] = np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in raw]).astype(np.float32) / 255
    return raw, gray


def test_parse_variant():
    assert parse_variant("flip") == (True, 0.0)
    assert parse_variant("rot-5") == (False, -5.0)
    assert parse_variant("rot+10") == (False, 10.0)
    assert parse_variant("flip_rot+7.5") == (True, 7.5)
    for bad in ("rot5", "rotate+5", "flip_rot", "", "vflip"):
        with pytest.raises(ValueError, match="unknown augmentation"):
            parse_variant(bad)


def test_flip_is_the_same_for_all_frames_and_both_streams():
    raw, sp = clip()
    r, s = apply_variant(raw, sp, "flip")
    assert np.array_equal(r, raw[:, :, ::-1, :]) and np.array_equal(s, sp[:, :, ::-1])
    r2, s2 = apply_variant(r, s, "flip")
    assert np.array_equal(r2, raw) and np.array_equal(s2, sp)


@pytest.mark.parametrize("name", ["rot+10", "rot-5", "flip_rot+5"])
def test_rotation_is_the_same_for_all_frames_and_both_streams(name):
    raw, sp = clip()
    r, s = apply_variant(raw, sp, name)
    assert r.shape == raw.shape and r.dtype == np.uint8
    assert s.shape == sp.shape and s.dtype == np.float32
    # E was gray(raw)/255 before; after the same transform it still is (inside the frame,
    # away from the borders that the two streams fill differently).
    g = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in r]).astype(np.float32) / 255
    inner = (slice(None), slice(20, 92), slice(20, 92))
    assert np.abs(g[inner] - s[inner]).max() < 3 / 255
    # Every frame was moved by the same transform: a dot at a different place in each
    # frame lands where the mirror image (column j -> 111 - j) and the rotation by `angle`
    # (counter-clockwise on screen, about the centre 55.5, 55.5) put it, worked out here.
    flip, angle = parse_variant(name)
    rad = np.deg2rad(angle)
    dots = [(30.0, 40.0), (70.0, 52.0), (56.0, 80.0)]
    sp = np.zeros((3, 112, 112), np.float32)
    for i, (x, y) in enumerate(dots):
        sp[i, int(y) - 2:int(y) + 2, int(x) - 2:int(x) + 2] = 1.0   # centred at x - 0.5
    _, s = apply_variant(np.zeros((3, 112, 112, 3), np.uint8), sp, name)
    for i, (x, y) in enumerate(dots):
        x, y = x - 0.5, y - 0.5
        if flip:
            x = 111 - x
        dx, dy = x - 55.5, y - 55.5
        want = (55.5 + np.cos(rad) * dx + np.sin(rad) * dy, 55.5 - np.sin(rad) * dx + np.cos(rad) * dy)
        ys, xs = np.mgrid[0:112, 0:112]
        got = ((s[i] * xs).sum() / s[i].sum(), (s[i] * ys).sum() / s[i].sum())
        assert np.allclose(got, want, atol=0.05), (name, i, got, want)


def test_rotation_direction_and_borders():
    raw = np.zeros((2, 112, 112, 3), np.uint8)
    sp = np.zeros((2, 112, 112), np.float32)
    raw[:, 54:58, 90:94] = 255                          # a dot right of the centre
    sp[:, 54:58, 90:94] = 1.0
    raw[:, :, :, 1] = 50                                # a flat green everywhere
    r, s = apply_variant(raw, sp, "rot+10")
    ys, xs = np.nonzero(s[0] > 0.5)
    assert ys.mean() < 55.5                             # counter-clockwise: the dot went up
    assert s[0, 0, 0] == 0.0                            # E is 0 where nothing was
    assert r[0, 0, 0, 1] == 50                          # raw repeats its edge there


def test_augment_yields_named_variants_without_touching_the_input():
    raw, sp = clip()
    raw0, sp0 = raw.copy(), sp.copy()
    got = list(augment(raw, sp))
    assert [n for n, _, _ in got] == list(DEFAULT_VARIANTS)
    assert DEFAULT_VARIANTS == ("flip", "rot-10", "rot-5", "rot+5", "rot+10")
    for name, r, s in got:
        assert r.shape == raw.shape and s.shape == sp.shape
        assert not np.array_equal(r, raw)
    assert np.array_equal(raw, raw0) and np.array_equal(sp, sp0)


def test_augment_checks_inputs():
    raw, sp = clip(F=4)
    with pytest.raises(ValueError, match="unknown augmentation"):
        list(augment(raw, sp, ("flip", "zoom")))
    with pytest.raises(ValueError, match="raw must be uint8"):
        list(augment(raw.astype(np.float32), sp))
    with pytest.raises(ValueError, match="sparse must be"):
        list(augment(raw, sp[:3]))
