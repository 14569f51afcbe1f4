"""preprocessing.flow: onset-to-apex TV-L1 flow and strain, its cache, and the flow shards
`preprocess.py run --flow` writes beside the others."""
import json
import os

import cv2
import h5py
import numpy as np
import pytest

from pipeline_helpers import AUGMENT, OPTIONS, copy_run
from preprocessing import flow as flowmod
from preprocessing.errors import InputError
from preprocessing.flow import (FLOW_SIZE, FlowParams, flow_frame_indices, flow_maps,
                                normalise_flow, optical_strain)
from preprocessing.hdf5_shards import shard_problem
from preprocessing.layout import DataFolder
from preprocessing.pipeline import run


def _texture(seed=0, size=112):
    a = np.random.RandomState(seed).rand(size, size).astype(np.float32)
    a = cv2.GaussianBlur(a, (0, 0), 2.0)
    return (a - a.min()) / (a.max() - a.min())


def test_apex_index_rules():
    assert flow_frame_indices(30, 10, 20, 39) == (0, 10, [])
    _, i, notes = flow_frame_indices(30, 10, None, 39)          # SMIC: no apex
    assert i == 14 and "no apex" in notes[0]
    _, i, notes = flow_frame_indices(30, 10, 10, 39)            # apex = onset: zero flow
    assert i == 14 and "onset" in notes[0]
    _, i, notes = flow_frame_indices(30, 10, 50, 39)            # outside: clamped
    assert i == 29 and "clamped" in notes[0]
    _, i, notes = flow_frame_indices(30, 10, 2, 39)             # before the onset: clamped, then middle
    assert i == 14 and len(notes) == 2
    assert flow_frame_indices(2, 0, 0, 1)[1] == 1               # two frames: the other one


def test_strain_of_a_linear_field():
    # u = a x, v = b y: e_xx = a, e_yy = b, e_xy = 0; a shear u = c y gives e_xy = c / 2.
    y, x = np.mgrid[0:20, 0:20].astype(np.float64)
    assert np.allclose(optical_strain(0.1 * x, -0.2 * y), np.hypot(0.1, 0.2), atol=1e-6)
    assert np.allclose(optical_strain(0.3 * y, 0 * y), np.sqrt(2 * 0.15 ** 2), atol=1e-6)
    assert np.allclose(optical_strain(np.ones_like(x) * 4, np.ones_like(x)), 0)   # a translation


def test_tvl1_recovers_a_shift_in_the_small_grid():
    a = _texture()
    b = np.roll(a, 4, axis=1)            # 4 px right at 112 = 1 px at 28
    maps = flow_maps(a, b)
    assert maps.shape == (3, FLOW_SIZE, FLOW_SIZE) and maps.dtype == np.float32
    inner = maps[:, 4:-4, 4:-4]
    assert abs(np.median(inner[0]) - 1.0) < 0.1
    assert abs(np.median(inner[1])) < 0.1
    assert np.median(inner[2]) < 0.1     # a translation has no strain
    still = flow_maps(a, a)
    assert np.abs(still[:2]).max() < 0.05


def test_normalise_keeps_zero_and_sign():
    m = np.zeros((3, 4, 4), np.float32)
    m[0, 0, 0], m[0, 1, 1], m[2, 2, 2] = -2.0, 1.0, 0.5
    n = normalise_flow(m)
    assert n[0, 0, 0] == -1.0 and n[0, 1, 1] == 0.5 and n[2, 2, 2] == 1.0
    assert not n[1].any() and np.isfinite(n).all()


def test_missing_contrib_is_refused_before_any_clip(roots, tmp_path, monkeypatch):
    monkeypatch.setattr(flowmod, "tvl1_available", lambda: False)
    with pytest.raises(InputError, match="opencv-contrib-python-headless"):
        run(roots[0], str(tmp_path / "out"), n_folds=2, options=OPTIONS, augment=AUGMENT,
            workers=1, progress=False, log=lambda *_: None, flow=FlowParams())
    assert not os.path.exists(tmp_path / "out" / "cache")


def test_flow_shards_beside_the_others(roots, first, tmp_path):
    out = copy_run(first, tmp_path)
    lines = []
    summary = run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
                  progress=False, log=lines.append, flow=FlowParams())
    assert summary["computed"] == 0          # the clip chain's caches are reused
    folder = DataFolder(out)
    plan = folder.read_plan()
    groups = [e["group"] for e in plan["groups"]]
    paths = [folder.path("shards", folder.flow_shard_name(g)) for g in groups]
    n = 0
    for g, path in zip(groups, paths):
        assert shard_problem(path) is None
        with h5py.File(path, "r") as f:
            assert f["flow"].shape[1:] == (3, FLOW_SIZE, FLOW_SIZE)
            assert f["label"].shape == (f["flow"].shape[0], 1)
            assert np.abs(f["flow"][()]).max() <= 1.0
            with h5py.File(folder.shard(g), "r") as p:   # the same clips as the PSN shard
                assert sorted(f["clip_index"][()]) == sorted(p["clip_index"][()])
            n += f["flow"].shape[0]
    assert n == summary["included"] == plan["flow"]["clips"]
    assert plan["flow"]["params"]["version"] == flowmod.FLOW_VERSION
    assert any("optical flow" in line for line in lines)
    assert folder.flow_shard_of(folder.shard(groups[0], aug=True)) == paths[0]

    # A rerun reuses every flow cache file and rewrites no shard.
    stamps = [os.stat(p).st_mtime_ns for p in paths]
    lines.clear()
    run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=lines.append, flow=FlowParams())
    assert any("0 to compute" in line for line in lines)
    assert stamps == [os.stat(p).st_mtime_ns for p in paths]

    # An edited flow shard is found and written again.
    with h5py.File(paths[0], "r+") as f:
        f["flow"][0, 0, 0, 0] += 0.5
    assert "checksum" in shard_problem(paths[0])
    run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=lambda *_: None, flow=FlowParams())
    assert shard_problem(paths[0]) is None

    # Without --flow the flow shards go, and folds.json says there is no flow.
    run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=lambda *_: None)
    assert not any(os.path.exists(p) for p in paths)
    assert DataFolder(out).read_plan()["flow"] is None


def test_flow_cache_follows_the_apex(roots, first, tmp_path):
    """A flow cache file is reused only for the same apex: a sheet's apex edit recomputes."""
    from dataclasses import replace
    from preprocessing.clip_cache import cache_path
    from preprocessing.flow import flow_cache_path, flow_stamp, process_flow, read_flow_cache
    from preprocessing.loaders import load_databases
    clips, _ = load_databases(roots[0])
    clip = next(c for c in clips if c.clip == "EP02_01f")
    cache = cache_path(str(tmp_path / "cache"), clip)
    got = process_flow(clip, cache, OPTIONS)
    assert got["included"] and got["computed"]
    path = flow_cache_path(cache)
    assert read_flow_cache(path, flow_stamp(clip, OPTIONS), clip)["info"]["digest"] == \
        got["info"]["digest"]
    moved = replace(clip, apex=clip.apex + 2)
    assert read_flow_cache(path, flow_stamp(moved, OPTIONS), moved) is None
    no_apex = replace(clip, apex=None)
    res = process_flow(no_apex, cache, OPTIONS)
    assert res["included"] and any("no apex" in n for n in res["info"]["notes"])
    with open(path, "wb") as f:      # a damaged cache file is recomputed, not trusted
        f.write(b"broken")
    assert read_flow_cache(path, flow_stamp(no_apex, OPTIONS), no_apex) is None
    json.dumps(res["info"])          # what folds.json records is JSON
