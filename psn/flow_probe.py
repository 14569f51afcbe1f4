"""A task built for the optical-flow baselines (STSTNet, OFF-ApexNet): can they learn what the
flow between onset and apex says, over the range real clips span?

direction
    Two classes told apart by the direction of one local movement: on a face-like texture, a
    patch (Gaussian weight of radius ``sigma`` px) moves up in class 0 and down in class 1 by
    ``shift`` px at its centre, between the onset frame and the apex frame, as a brow raise and
    a brow lowerer do. Both classes move the same patch by the same amount, so the strain (a
    magnitude) and any single frame say nothing of the class; only the flow's sign does.

Each clip has its own texture (shared by one clip of each class, so the texture says nothing
of the class), the patch's centre varies by up to ``JITTER`` px, every frame gets sensor noise
(std ``noise`` gray levels), and the apex frame is shifted as a whole by ``drift`` px in a
random direction (head drift between onset and apex). The two frames then go through what the
preprocessing does to a real clip: the apex registered on the onset (ECC, preprocessing.register),
TV-L1 flow and strain at 112 x 112 shrunk to 28 x 28, each channel divided by its peak
(preprocessing.flow). ``write_task`` writes a data folder with flow shards and fold lists;
``psn.probe_tasks.train_and_score`` trains a flow net on it.
"""
from __future__ import annotations

import itertools
import os

import cv2
import numpy as np

from preprocessing.flow import FLOW_SIZE, FlowParams, flow_maps, normalise_flow
from preprocessing.sampling import CROP

__all__ = ["GRID", "MODELS", "make_flow", "write_task", "grid_cells", "cell_name"]

SIZE = CROP
CENTRE = (40, 56)       # (row, col): where a brow would be in a 112 x 112 face crop
JITTER = 4              # px: the patch's centre varies per clip
# The range real clips span: a micro-expression moves skin by a fraction of a pixel to a few
# pixels at 112 x 112 (a brow at most ~2 px); a patch of radius 6 px is a brow's end, 24 px a
# whole cheek; noise 1 a good camera, 4 a dim room; drift 3 px a head that moved between
# onset and apex (registration is meant to take it out).
GRID = {"shift": (0.25, 0.5, 1.0, 2.0), "sigma": (6, 24), "noise": (1, 4), "drift": (0, 3)}
MODELS = ("ststnet", "off_apexnet")
TASK_VERSION = 1


def _texture(rng):
    """A face-like texture around mid-gray: smooth shading plus fine detail (skin, brows), so
    that TV-L1 has something to follow everywhere."""
    coarse = cv2.resize(rng.normal(0.0, 1.0, (8, 8)), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0.0, 1.0, (SIZE, SIZE)), (0, 0), 1.5)
    fine *= 8.0 / max(float(fine.std()), 1e-9)
    return 128.0 + 25.0 * coarse + fine


def _moved(img, centre, sigma, shift):
    """img with the patch around centre moved by `shift` px down (negative: up), weighted by a
    Gaussian of radius sigma: apex(p) = onset(p - d(p))."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    w = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2.0 * sigma ** 2))
    return cv2.remap(img.astype(np.float32), xx, (yy - shift * w).astype(np.float32),
                     cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _translated(img, dy, dx):
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img.astype(np.float32), M, (SIZE, SIZE), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def _registered(onset, apex):
    """The apex frame registered on the onset frame, as the preprocessing does."""
    from preprocessing.register import OnsetRegistration
    W = OnsetRegistration(onset).step(apex)
    return cv2.warpAffine(apex.astype(np.float32), W, (SIZE, SIZE),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def make_flow(n_clips, seed=0, shift=1.0, sigma=12, noise=2.0, drift=0, params=FlowParams()):
    """(flow float32 (K, 3, 28, 28) as the nets read it, labels int (K,)); classes alternate."""
    rng = np.random.default_rng(seed)
    flows = np.empty((n_clips, 3, FLOW_SIZE, FLOW_SIZE), np.float32)
    labels = np.arange(n_clips) % 2
    for k in range(n_clips):
        if k % 2 == 0:
            bg = _texture(rng)
        centre = tuple(c + int(rng.integers(-JITTER, JITTER + 1)) for c in CENTRE)
        apex = _moved(bg, centre, sigma, -shift if labels[k] == 0 else shift)
        if drift:
            angle = rng.uniform(0, 2 * np.pi)
            apex = _translated(apex, drift * np.sin(angle), drift * np.cos(angle))
        frames = [np.clip(np.rint(f + rng.normal(0.0, noise, f.shape)), 0, 255).astype(np.float32)
                  for f in (bg, apex)]
        onset, apex = frames[0], _registered(frames[0], frames[1])
        flows[k] = normalise_flow(flow_maps(onset / 255.0, apex / 255.0, params))
    return flows, labels


def write_task(out, n_clips=80, seed=0, n_groups=2, **cell):
    """A data folder holding the direction task (make_flow's options) as flow shards; fold k
    tests on group k. run_folds, inspect_net and probe_tasks.train_and_score read it."""
    from preprocessing.hdf5_shards import write_flow_shard
    from preprocessing.layout import DataFolder
    from preprocessing.manifest import write_manifest
    from psn.probe_tasks import write_fold_lists

    flows, labels = make_flow(n_clips, seed, **cell)
    out = os.path.abspath(out)
    folder = DataFolder(out)
    os.makedirs(folder.shard_dir, exist_ok=True)
    groups = np.arange(n_clips) // 2 % n_groups + 1
    what = ", ".join("%s %g" % kv for kv in sorted(cell.items()))
    rows = [{"index": i, "database": "probe_flow", "subject": "p%02d" % (i // 2),
             "clip": "direction_%03d" % i, "n_frames": 2, "label": int(labels[i]),
             "group": int(groups[i]), "included": 1,
             "notes": "synthetic flow direction task, seed %d, %s" % (seed, what)}
            for i in range(n_clips)]
    shards = {}
    for g in range(1, n_groups + 1):
        idx = np.nonzero(groups == g)[0]
        path = folder.path(folder.SHARDS, folder.flow_shard_name(g))
        write_flow_shard(path, [(int(i), int(labels[i]), flows[i]) for i in idx], group=g)
        shards[g] = path
    folds = write_fold_lists(folder, shards)
    write_manifest(folder.manifest, rows)
    folder.write_plan({"fold_scheme": "probe task flow direction", "seed": seed,
                       "n_folds": n_groups, "n_clips": n_clips, "folds": folds,
                       "groups": [{"group": g, "shard": folder.relative(shards[g]),
                                   "aug_shard": None, "n_clips": int((groups == g).sum()),
                                   "class_counts": np.bincount(labels[groups == g],
                                                               minlength=2).tolist()}
                                  for g in range(1, n_groups + 1)],
                       "flow": {"params": FlowParams().stamp(), "clips": n_clips,
                                "left_out": {}, "notes": {},
                                "shards": sorted(os.path.basename(p) for p in shards.values())}})
    return out


def grid_cells(grid=None):
    """Every cell of the grid (shift, sigma, noise, drift), in table order."""
    g = dict(GRID, **(grid or {}))
    keys = ("noise", "drift", "sigma", "shift")
    return [dict(zip(keys, v)) for v in itertools.product(*(g[k] for k in keys))]


def cell_name(cell, seed):
    return "flow_d%g_s%g_n%g_r%g_seed%d" % (cell["shift"], cell["sigma"], cell["noise"],
                                            cell["drift"], seed)
