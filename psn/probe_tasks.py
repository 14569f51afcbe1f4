"""Tasks built to show whether a stream of a net can learn what it is meant to learn.

A net that runs is not a net that learns. Each task here is solvable by one kind of
information only, so training a model on it says whether the model uses that information:

order
    Two classes with the same frames in a different order. Frames 0 and 15 show the
    background alone in every clip; frames 1-14 show a blob at place A in seven frames and at
    place B in the other seven: A first in class 0, B first in class 1. Every frame's content
    occurs equally often in both classes, so a net that looks at frames one at a time
    (psn_spatial) is at chance, 0.5; only the order tells the classes apart.
place
    Two classes told apart by where a blob sits: it appears after frame 0 and is gone in
    frame 15, as the order task's blobs and a micro-expression do (onset, apex, offset).
    Any stream that sees frame content solves it. (A blob present in all 16 frames would be
    invisible to the temporal stream by design: it subtracts the clip's mean frame, the
    identity, and keeps what moves.)

Every clip shows the same frames up to sensor noise (std ``noise`` gray levels, independent
per frame, as a camera gives: with no noise at all two equal frames differ by exactly 0 and
the TPU's tp is exactly 0) on a flat mid-gray background; options put a texture (an
"identity", shared by one clip of each class) behind each pair of clips and jitter the
blobs' place and strength per clip. The sparse input (what RPCA's E
would be) is the frame minus its clip's background, scaled to [0, 1] units like the
preprocessing's E.

``write_task(out, ...)`` writes a folder in the layout of `tools/preprocess.py run`
(manifest.csv, shards/, folds/foldKK/{train,test}.txt, folds.json), so every tool
(run_folds, inspect_net, report) runs on it. ``train_and_score`` trains one model on one fold
in this process with pycaffe and returns the held-out clip accuracy.
"""
from __future__ import annotations

import itertools
import json
import os

import numpy as np

from preprocessing.atomic import write_atomic
from preprocessing.folder_lock import FolderBusy, folder_lock
from preprocessing.sampling import CROP, N_SAMPLED
from psn.grid_ledger import CELL_RUNS, cell_runs
from psn.nets import DEMO_WIDTH

__all__ = ["TASKS", "make_clips", "write_task", "train_and_score"]

T = N_SAMPLED
SIZE = CROP
TASKS = ("order", "place")
# Blob places (row, col) in the 112 x 112 crop, well apart.
PLACE_A = (36, 36)
PLACE_B = (76, 76)
CONTRAST = 64.0     # the blob's peak, gray levels above the background
SIGMA = 7.0         # the blob's Gaussian radius, pixels


def _background(rng):
    """A smooth random texture around mid-gray: one per clip, like a face's identity."""
    coarse = rng.normal(0.0, 1.0, (8, 8))
    import cv2
    tex = cv2.resize(coarse, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return 128.0 + 25.0 * tex + rng.uniform(-15, 15)


def _moved(center, rng, jitter):
    return tuple(c + (int(rng.integers(-jitter, jitter + 1)) if jitter else 0) for c in center)


def _blob(center, amplitude, sigma):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cy, cx = center
    return amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def _sequence(task, label, rng):
    """Per frame, which blob is shown: None, 'A' or 'B'."""
    if task == "order":
        first, second = ("A", "B") if label == 0 else ("B", "A")
        return [None] + [first] * 7 + [second] * 7 + [None]
    if task == "place":
        return [None] + ["A" if label == 0 else "B"] * (T - 2) + [None]
    raise ValueError("unknown task %r (one of %s)" % (task, ", ".join(TASKS)))


def make_clips(task, n_clips, seed=0, noise=2.0, identities=False, jitter=0,
               contrast=CONTRAST, sigma=SIGMA, frame_jitter=0):
    """(raw uint8 (K,16,3,112,112), sparse float32 (K,16,1,112,112), labels int (K,)).

    Classes alternate, so any even split is balanced. By default every clip shows the same
    frames up to sensor noise, as the task demands (the same content in every class);
    identities=True puts a texture behind each pair of clips, and jitter > 0 moves the blobs
    and varies their strength per clip: variation a net can memorise on 40 training clips.
    contrast (gray levels) and sigma (pixels) size the blob; frame_jitter > 0 moves it by up
    to that many pixels in every frame, independently (tremor, tracking error): content that
    changes between frames of one place.
    """
    rng = np.random.default_rng(seed)
    raw = np.empty((n_clips, T, 3, SIZE, SIZE), np.uint8)
    sparse = np.empty((n_clips, T, 1, SIZE, SIZE), np.float32)
    labels = np.arange(n_clips) % 2
    for k in range(n_clips):
        if k % 2 == 0:
            # Clips 2i (class 0) and 2i+1 (class 1) share a background, so the background
            # ("who") says nothing of the class and cannot be memorised instead of the task.
            bg = _background(rng) if identities else np.full((SIZE, SIZE), 128.0)
        amplitude = contrast * (rng.uniform(50, 80) / 64.0 if jitter else 1.0)
        places = {"A": _moved(PLACE_A, rng, jitter), "B": _moved(PLACE_B, rng, jitter)}
        blobs = {w: _blob(c, amplitude, sigma) for w, c in places.items()}
        for t, which in enumerate(_sequence(task, labels[k], rng)):
            if which and frame_jitter:
                content = _blob(_moved(places[which], rng, frame_jitter), amplitude, sigma)
            else:
                content = blobs[which] if which else 0.0
            frame = bg + content + rng.normal(0.0, noise, (SIZE, SIZE)) if noise else bg + content
            frame = np.clip(np.rint(frame), 0, 255)
            raw[k, t] = frame.astype(np.uint8)[None]
            sparse[k, t, 0] = (frame - bg) / 255.0
    return raw, sparse, labels


def write_task(out, task, n_clips=80, seed=0, noise=2.0, n_groups=2, identities=False,
               jitter=0, contrast=CONTRAST, sigma=SIGMA, frame_jitter=0):
    """A preprocessing-layout folder holding the task (make_clips' options); fold k tests on
    group k."""
    from preprocessing.hdf5_shards import write_array_shard
    from preprocessing.layout import DataFolder
    from preprocessing.manifest import write_manifest

    raw, sparse, labels = make_clips(task, n_clips, seed, noise, identities, jitter,
                                     contrast, sigma, frame_jitter)
    out = os.path.abspath(out)
    folder = DataFolder(out)
    os.makedirs(folder.shard_dir, exist_ok=True)
    groups = np.arange(n_clips) // 2 % n_groups + 1     # pairs of classes per group: balanced
    rows, shards = [], {}
    for i in range(n_clips):
        rows.append({"index": i, "database": "probe_" + task, "subject": "p%02d" % (i // 2),
                     "clip": "%s_%03d" % (task, i), "n_frames": T, "label": int(labels[i]),
                     "group": int(groups[i]), "included": 1,
                     "notes": "synthetic %s task, seed %d, noise %g, identities %s, jitter %d, "
                              "contrast %g, sigma %g, frame jitter %d"
                              % (task, seed, noise, identities, jitter, contrast, sigma,
                                 frame_jitter)})
    for g in range(1, n_groups + 1):
        idx = np.nonzero(groups == g)[0]
        path = folder.shard(g)
        write_array_shard(path, raw[idx], sparse[idx], labels[idx], idx)
        shards[g] = path
    folds = write_fold_lists(folder, shards)
    n_classes = int(labels.max()) + 1
    group_entries = [{"group": g, "shard": folder.relative(shards[g]), "aug_shard": None,
                      "n_clips": int((groups == g).sum()),
                      "class_counts": np.bincount(labels[groups == g], minlength=n_classes).tolist()}
                     for g in range(1, n_groups + 1)]
    write_manifest(folder.manifest, rows)
    folder.write_plan({"fold_scheme": "probe task %s" % task, "seed": seed, "n_folds": n_groups,
                       "n_clips": n_clips, "groups": group_entries, "folds": folds})
    return out


def write_fold_lists(folder, shards):
    """A probe folder's fold lists, fold k testing on group k and training on the others
    (shards: {group: shard path}); returns folds.json's fold entries."""
    folds = []
    for g in sorted(shards):
        others = [h for h in sorted(shards) if h != g]
        folder.write_fold_list(g, "train", [shards[h] for h in others])
        folder.write_fold_list(g, "test", [shards[g]])
        folds.append({"fold": g, "test_group": g, "train_groups": others})
    return folds


def _seed_c_rand(seed):
    import ctypes
    ctypes.CDLL(None).srand(ctypes.c_uint(int(seed)))


def train_and_score(data_dir, model, workdir, iters=600, seed=1, width=DEMO_WIDTH,
                    solver_overrides=None, fold=1, trace=None, trace_every=10, **net_overrides):
    """Train `model` (a name of psn.nets.MODELS) on one fold in this process; returns
    dict(accuracy=held-out clip accuracy, loss=last training loss). The frame nets train with
    SGD (the demo's schedule at `iters`); the flow nets (psn.flow_probe's folders) with their
    own optimiser (psn.nets.OWN_SCHEDULES) for `iters` iterations. trace(net, iteration), if
    given, is called every trace_every iterations (the same training: only the stepping is
    split)."""
    import caffe
    import h5py
    from google.protobuf import text_format

    from psn import nets
    from psn.predictions import clip_probabilities

    from dataclasses import replace
    from preprocessing.layout import DataFolder
    from psn import tp_gain

    os.makedirs(workdir, exist_ok=True)
    lists = DataFolder(data_dir).caffe_lists(fold, workdir)
    tv, dp, solver = nets.build(model, width=width, train_source=lists["train"][0],
                                test_source=lists["test"][0], **net_overrides)
    tp_gain.set_from_data(tv, replace(nets.MODELS[model], width=width, **net_overrides),
                          lists["train"][1])
    for path, msg in (("train_val.prototxt", tv), ("deploy.prototxt", dp)):
        write_atomic(os.path.join(workdir, path), text_format.MessageToString(msg))
    flow = nets.reads_flow(nets.MODELS[model])
    if flow:
        settings = nets.read_schedule(os.path.join(nets.SCHEDULE_DIR, "%s.json" % nets.own_schedule(
            model, "paper")))
        settings.update(max_iter=iters, display=0, test_interval=10 ** 9,
                        test_initialization=False, snapshot=0, random_seed=seed)
    else:
        settings = dict(base_lr=0.01, lr_policy="step", gamma=0.1, stepsize=int(iters * 2 / 3),
                        max_iter=iters, momentum=0.9, weight_decay=0.0005, clip_gradients=10.0,
                        display=0, test_interval=10 ** 9, test_initialization=False,
                        snapshot=0, random_seed=seed)
    settings.update(solver_overrides or {})
    solver.ClearField("test_iter")
    solver.test_iter.append(1)
    for key, value in settings.items():
        setattr(solver, key, value)
    if flow:
        solver.type = settings["type"]
    solver.net = os.path.join(workdir, "train_val.prototxt")
    solver.snapshot_prefix = os.path.join(workdir, "snap")
    solver.solver_mode = solver.CPU
    solver_path = os.path.join(workdir, "solver.prototxt")
    write_atomic(solver_path, text_format.MessageToString(solver))
    caffe.set_mode_cpu()
    # Caffe's HDF5Data shuffles with std::random_shuffle, which draws from the C library's
    # rand(), not from the solver's random_seed: in a process that trains several nets one
    # after another the batch order would depend on what ran before. Seeding rand() makes a
    # run depend on its own seed alone (a separate `caffe train` process, as run_folds
    # starts, always begins from rand()'s default state).
    _seed_c_rand(seed)
    s = caffe.get_solver(solver_path)
    if trace is None:
        s.step(iters)
    else:
        for done in range(0, iters, trace_every):
            n = min(trace_every, iters - done)
            s.step(n)
            trace(s.net, done + n)
    loss = float(s.net.blobs["loss"].data)
    weights = os.path.join(workdir, "final.caffemodel")
    s.net.save(weights)
    net = caffe.Net(os.path.join(workdir, "deploy.prototxt"), weights, caffe.TEST)
    correct = total = 0
    for shard in lists["test"][1]:
        with h5py.File(shard, "r") as h:
            prob = clip_probabilities(net, **{k: h[k] for k in ("raw", "sparse", "cont", "flow")
                                              if k in h})
            labels = h["clip_label"][:]
        correct += int((prob.argmax(axis=1) == labels).sum())
        total += len(labels)
    return {"accuracy": correct / total, "loss": loss}


# ------------------------------------------------------------------ robustness grid

# The range real clips span (docs/temporal_stream.md, "Robustness grid"): a blob of 4 px is a
# brow's corner at 112 x 112, 24 px a whole cheek or a head shift; 16 gray levels a faint
# micro-expression, 128 a blink on dark eyes; noise 1 a good camera, 4 a dim room; a
# per-frame jitter of 3 px tracking error or tremor.
GRID = {"contrast": (16, 32, 64, 128), "sigma": (4, 8, 16, 24), "noise": (1, 4),
        "frame_jitter": (0, 3)}
GRID_MODELS = {"order": ("psn_temporal", "alexnet_rnn", "psn_spatial"),
               "place": ("psn_temporal", "alexnet_rnn", "psn_spatial")}


def grid_cells(grid=None):
    """Every cell of the grid as a dict (contrast, sigma, noise, frame_jitter), in table order."""
    g = dict(GRID, **(grid or {}))
    keys = ("noise", "frame_jitter", "sigma", "contrast")
    return [dict(zip(keys, v)) for v in itertools.product(*(g[k] for k in keys))]


def cell_name(task, cell, seed):
    return "%s_c%g_s%g_n%g_j%d_seed%d" % (task, cell["contrast"], cell["sigma"], cell["noise"],
                                         cell["frame_jitter"], seed)


# Bump when a task's clips change (the place task's blank end frames: 2).
TASK_VERSION = {"order": 1, "place": 2}


def run_key(task, model, iters, n_clips, net_overrides=None, width=DEMO_WIDTH):
    """What a grid result depends on: the task and its version, the clips, the iterations
    and the model's whole resolved NetConfig (defaults included), as a short hash."""
    import dataclasses
    import hashlib

    from psn.nets import FLOW_ONLY_FIELDS, MODELS, reads_flow
    cfg = dataclasses.replace(MODELS[model], width=width, **(net_overrides or {}))
    fields = dataclasses.asdict(cfg)
    if not reads_flow(cfg):
        # Fields that shape only the optical-flow nets: left out of a PSN-family net's key, so
        # results made before those nets existed still count.
        for name in FLOW_ONLY_FIELDS:
            fields.pop(name)
    text = json.dumps([task, TASK_VERSION[task], int(iters), int(n_clips), fields],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_missing(cell_dir, models, valid, make_data, train_one, keep_data=False):
    """The runs of `models` kept in CELL_DIR/results.json, training each model without one.

    A grid's cell (this module's and psn.flow_probe's): valid(run) says whether a stored run
    was made with today's settings (its key; one that was not is trained again, never reused),
    make_data(folder) writes the cell's clips and returns their folder, train_one(model, data,
    folder) trains one model and returns its result dict (its time is added as `seconds`).
    Each result is kept as soon as it is known (a later model may be interrupted; the rerun
    trains only what is missing); runs of other models are left as they are. The clips (about
    280 MB a cell of 200) are removed afterwards unless keep_data.

    One process trains in a cell at a time (its folder's lock): two grids over the same cells
    (the same command twice, or another --models beside it) each read results.json, trained
    for minutes and wrote back their own list, so the later one dropped the other's run, and
    the first to end removed the clips the other was still scoring. A process that finds the
    cell held says so on stderr and waits for it, then trains only what the holder left."""
    import contextlib
    import math
    import shutil
    import sys
    import time

    done = os.path.join(cell_dir, CELL_RUNS)
    with contextlib.ExitStack() as held:
        try:
            # A second's grace: grid_ledger.seed holds a cell for moments.
            held.enter_context(folder_lock(cell_dir, "training in", wait=1.0))
        except FolderBusy:
            print("%s: another process is training in this cell; waiting for it to end"
                  % cell_dir, file=sys.stderr, flush=True)
            held.enter_context(folder_lock(cell_dir, "training in", wait=math.inf))
        have = [r for r in cell_runs(cell_dir) if r["model"] not in models or valid(r)]
        todo = [m for m in models if not any(r["model"] == m for r in have)]
        if todo:
            data = make_data(os.path.join(cell_dir, "data"))
            try:
                for model in todo:
                    t0 = time.time()
                    r = train_one(model, data, os.path.join(cell_dir, model))
                    r["seconds"] = round(time.time() - t0, 1)
                    have.append(r)
                    write_atomic(done, json.dumps(have, indent=1) + "\n")
                    shutil.rmtree(os.path.join(cell_dir, model), ignore_errors=True)
            finally:
                if not keep_data:
                    shutil.rmtree(data, ignore_errors=True)
    return [r for r in have if r["model"] in models]


def run_cell(task, cell, seed, models, workdir, iters=300, n_clips=80, net_overrides=None,
             keep_data=False):
    """Train each model on one cell of the grid (data seed = training seed); returns a list of
    result dicts, kept in WORKDIR/<cell>/results.json with the run_key they were made with
    (train_missing: a rerun trains only the models without a result of the same key)."""
    keys = {m: run_key(task, m, iters, n_clips, net_overrides) for m in models}

    def make_data(folder):
        return write_task(folder, task, n_clips=n_clips, seed=seed, noise=cell["noise"],
                          contrast=cell["contrast"], sigma=cell["sigma"],
                          frame_jitter=cell["frame_jitter"])

    def train_one(model, data, folder):
        r = train_and_score(data, model, folder, iters=iters, seed=seed,
                            **(net_overrides or {}))
        r.update(task=task, model=model, seed=seed, iters=iters, n_clips=n_clips,
                 key=keys[model], **cell)
        return r

    # The key holds every setting (net, schedule, task, size).
    return train_missing(os.path.join(workdir, cell_name(task, cell, seed)), models,
                         lambda r: r.get("key") == keys[r["model"]], make_data, train_one,
                         keep_data)


def accuracy_table(results, rows, column, where):
    """Markdown of held-out accuracies: rows [(key, heading, values)] nested in that order,
    column (key, heading format, values); only the results matching `where` ({key: value}).
    Each cell the mean over the results that fall in it (the seeds), the lowest in brackets
    when they differ; – where none does."""
    key, fmt, values = column
    lines = ["| " + " | ".join(h for _, h, _ in rows) + " | "
             + " | ".join(fmt % v for v in values) + " |",
             "|" + "---|" * (len(rows) + len(values))]
    mine = [r for r in results if all(r.get(k) == v for k, v in where.items())]
    for at in itertools.product(*(vals for _, _, vals in rows)):
        here = [r for r in mine if all(r[k] == v for (k, _, _), v in zip(rows, at))]
        cells = []
        for v in values:
            accs = [r["accuracy"] for r in here if r[key] == v]
            if not accs:
                cells.append("–")
            elif min(accs) == max(accs):
                cells.append("%.2f" % accs[0])
            else:
                cells.append("%.2f (%.2f)" % (sum(accs) / len(accs), min(accs)))
        lines.append("| " + " | ".join("%g" % v for v in at) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_table(results, model, task, grid=None):
    """Markdown: rows (noise, jitter, sigma), columns contrast; each cell the mean held-out
    accuracy over the seeds, with the lowest seed's in brackets when they differ."""
    g = dict(GRID, **(grid or {}))
    return accuracy_table(results, [("noise", "noise", g["noise"]),
                                    ("frame_jitter", "jitter", g["frame_jitter"]),
                                    ("sigma", "σ (px)", g["sigma"])],
                          ("contrast", "c %g", g["contrast"]), {"model": model, "task": task})
