"""HDF5 shards in the layout Caffe's stock HDF5Data layer reads (one file per fold group).

Datasets of a shard holding K clips (row k = one clip, or one augmented copy of a clip):
    raw        uint8   (K, 16, 3, 112, 112)  RGB, channels first (SAMM: gray repeated x3)
    sparse     float32 (K, 16, 1, 112, 112)  RPCA E at the same 16 frames
    label      float32 (K, 16)               clip class repeated per frame
    cont       float32 (K, 16)               0 at t = 0, 1 after (Caffe's recurrent layers)
    clip_label int32   (K,)                  clip class
    clip_index int32   (K,)                  row of the clip in manifest.csv
HDF5Data converts every dataset to float when it loads a file, so uint8 raw arrives as
0..255 floats and int32 columns as exact floats. Datasets are chunked one clip per chunk and
stored plain by default: HDF5Data reads a whole shard on the training thread whenever it moves
to the next file, and gunzipping it made 84 of the 102 ms of a training iteration on an H200
(plain: 31 ms; measured with tools/gpu_check.sh). `compression="gzip"` (level 1, with HDF5's
byte shuffle, both built into libhdf5, so Caffe reads them) saves 31-40 % of the disk.

A shard is written to a temporary file beside its final name and renamed into place, so a
shard path never holds half a file. A shard holds its own data: one that reads any from
another file (an HDF5 external link, a virtual dataset, raw data stored in an external file)
is refused by every check here, since that file is never checked and Caffe would follow it.
Its `key` attribute fingerprints what went in (clip contents, order, labels, augmentation); a
rerun with the same key leaves the file alone. Its `content_sha256` attribute is a checksum of
every dataset as written (frames, labels, indices), so an edit of any of them is found by
`shard_problem` (its checksum version 1 covered the frames only: such shards are written
again, under the same key).
"""
from __future__ import annotations

import hashlib
import json
import os

import h5py
import numpy as np

from preprocessing.atomic import atomic_path
from preprocessing.augment import apply_variant
from preprocessing.sampling import CROP, N_SAMPLED

__all__ = ["LAYOUT_VERSION", "CHECKSUM_VERSION", "DATASETS", "CROP", "COMPRESSIONS", "DEFAULT_COMPRESSION",
           "STORED_FRACTION", "shard_key", "stored_key", "foreign_data", "frame_columns",
           "write_shard", "write_array_shard", "write_frame_shard", "read_shard", "load_clip_arrays",
           "FLOW_DATASETS", "flow_shard_key", "write_flow_shard"]

LAYOUT_VERSION = 1
# What content_sha256 covers: 1 the frames only, 2 every dataset. A version-1 shard is written
# again by the next preprocessing run under the same key, so runs made on it stay valid.
CHECKSUM_VERSION = 2
DATASETS = ("raw", "sparse", "label", "cont", "clip_label", "clip_index")
# name -> h5py filter keywords of the raw and sparse datasets
COMPRESSIONS = {"none": {}, "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True}}
DEFAULT_COMPRESSION = "none"
# Stored bytes per written byte of raw + sparse (gzip: about 0.6-0.69 measured, with margin).
STORED_FRACTION = {"none": 1.0, "gzip": 0.75}


def _filters(compression):
    if compression not in COMPRESSIONS:
        raise ValueError(f"shard compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")
    return COMPRESSIONS[compression]


def shard_key(items, variants=(), group=None, compression=DEFAULT_COMPRESSION):
    """Fingerprint of a shard: items = [(clip_index, label, digest of the clip's arrays)]."""
    blob = json.dumps({"layout": LAYOUT_VERSION, "compression": _filters(compression), "group": group,
                       "variants": list(variants),
                       "clips": [[int(i), int(l), str(d)] for i, l, d in items]},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def foreign_data(f):
    """Why an open HDF5 file reads data from another file, or None: an external link, a
    virtual dataset, or a dataset whose raw data lies in an external file. Links are walked
    without being followed."""
    found = []

    def link(name, lnk):
        if isinstance(lnk, h5py.ExternalLink):
            found.append(f"{name!r} is an external link to {lnk.filename}:{lnk.path}")
            return True
        return None

    def dataset(name, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                found.append(f"{name!r} is a virtual dataset (its data lies in other files)")
                return True
            if obj.id.get_create_plist().get_external_count():
                found.append(f"{name!r} stores its data in an external file")
                return True
        return None

    f.visititems_links(link)
    if not found:
        f.visititems(dataset)
    if not found:
        return None
    return (found[0] + "; a shard must hold its own data (what another file holds is never "
            "checked)")


def stored_key(path):
    """The key attribute of an existing, complete shard; None if absent, unreadable, or
    reading data from another file (foreign_data)."""
    if not os.path.isfile(path):
        return None
    try:
        with h5py.File(path, "r") as f:
            names = FLOW_DATASETS if f.attrs.get("kind") == "flow" else DATASETS
            if foreign_data(f) or any(name not in f for name in names):
                return None
            key = f.attrs.get("key")
    except (OSError, ValueError):
        return None
    if isinstance(key, bytes):
        key = key.decode()
    return key


def load_clip_arrays(cache_path, digest=None):
    """(raw (16,112,112,3) uint8, sparse (16,112,112) float32) from a clip's cache file. With
    `digest` (the one the run read from the file's info), a file whose arrays no longer have it
    is refused: another process rewrote it since."""
    try:
        with np.load(cache_path) as z:
            raw, sparse = z["raw"], z["sparse"]
    except (OSError, KeyError, ValueError) as exc:
        raise RuntimeError(f"cache file {cache_path} is unreadable ({exc}); delete it and rerun "
                           "to recompute the clip") from None
    want = (N_SAMPLED, CROP, CROP)
    if raw.shape != want + (3,) or raw.dtype != np.uint8 or sparse.shape != want:
        raise RuntimeError(f"cache file {cache_path} holds raw {raw.dtype}{raw.shape} and sparse "
                           f"{sparse.dtype}{sparse.shape}; delete it and rerun")
    sparse = sparse.astype(np.float32, copy=False)
    if digest is not None and hashlib.sha256(raw.tobytes() + sparse.tobytes()).hexdigest() != digest:
        raise RuntimeError(f"cache file {cache_path} changed after this run read it (another "
                           "process wrote it: a second run on this folder, or a worker of a killed "
                           "one); nothing of it was used. Run the same command again: the clip is "
                           "computed anew where its cache no longer matches the options")
    return raw, sparse


def frame_columns(clip_labels, T=N_SAMPLED):
    """(label (K, T), cont (K, T)) float32: each clip's class on every frame, and Caffe's
    sequence indicator (0 at a clip's first frame, 1 after)."""
    clip_labels = np.asarray(clip_labels)
    label_rows = np.repeat(clip_labels.astype(np.float32)[:, None], T, axis=1)
    cont = np.ones((len(clip_labels), T), np.float32)
    cont[:, 0] = 0.0
    return label_rows, cont


def _hash_row(h, raw, sparse):
    """Add one shard row to its content checksum (the writer and shard_problem both use it)."""
    h.update(np.ascontiguousarray(raw, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(sparse, dtype=np.float32).tobytes())


# The per-row datasets besides the frames, in checksum order, with the dtypes they are stored as.
_LABEL_DATASETS = (("label", np.float32), ("cont", np.float32), ("clip_label", np.int32),
                   ("clip_index", np.int32))


def _hash_labels(h, columns):
    """Add the label datasets {name: array} to the content checksum, after the frames: a label
    edited inside a shard then fails shard_problem like an edited frame."""
    for name, dtype in _LABEL_DATASETS:
        h.update(name.encode())
        h.update(np.ascontiguousarray(columns[name], dtype=dtype).tobytes())


def _write_columns(f, content, clip_label, clip_index, T):
    """Write the per-row label datasets of a shard (each clip's class on every one of its T
    frames, Caffe's sequence indicator, the clip's class and manifest row) and add them to the
    content checksum after the frames."""
    label_rows, cont = frame_columns(clip_label, T)
    columns = {"label": label_rows, "cont": cont, "clip_label": np.asarray(clip_label),
               "clip_index": np.asarray(clip_index)}
    for name, dtype in _LABEL_DATASETS:
        f.create_dataset(name, data=columns[name].astype(dtype), track_times=False)
    _hash_labels(content, columns)


def _stamp(f, content, key):
    """The attributes every shard carries: its key, checksum and the versions they follow."""
    f.attrs["key"] = key
    f.attrs["content_sha256"] = content.hexdigest()
    f.attrs["layout_version"] = LAYOUT_VERSION
    f.attrs["checksum_version"] = CHECKSUM_VERSION


def write_shard(path, items, variants=(), key="", group=None, compression=DEFAULT_COMPRESSION):
    """Write one shard from clips' cache files; returns the number of rows.

    items: [(clip_index, label, cache_path[, digest])] in shard order; with a digest, a cache
    file that no longer holds those arrays is refused (load_clip_arrays). With variants (augmentation
    names of preprocessing.augment), each clip contributes one row per variant, clip-major,
    and never its original; without, one row per clip. Memory: one clip at a time.
    """
    variants = tuple(variants)
    filters = _filters(compression)
    per_clip = len(variants) if variants else 1
    K = len(items) * per_clip
    if K == 0:
        raise ValueError(f"shard {path} would be empty")
    T = N_SAMPLED
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        raw = f.create_dataset("raw", (K, T, 3, CROP, CROP), np.uint8,
                               chunks=(1, T, 3, CROP, CROP), track_times=False, **filters)
        sparse = f.create_dataset("sparse", (K, T, 1, CROP, CROP), np.float32,
                                  chunks=(1, T, 1, CROP, CROP), track_times=False, **filters)
        clip_index = np.empty(K, np.int32)
        clip_label = np.empty(K, np.int32)
        content = hashlib.sha256()
        row = 0
        for index, label, cache_path, *digest in items:
            r, s = load_clip_arrays(cache_path, *digest)
            if not np.isfinite(s).all():
                # Caffe would train on it: loss -nan from iteration 0, then a crash.
                raise ValueError(f"clip {index} ({cache_path}) has non-finite values in E: "
                                 "delete that cache file and run again to recompute it")
            copies = ([apply_variant(r, s, v) for v in variants] if variants else [(r, s)])
            for rv, sv in copies:
                rows_raw = np.ascontiguousarray(rv.transpose(0, 3, 1, 2))
                rows_sparse = sv[:, None, :, :]
                raw[row], sparse[row] = rows_raw, rows_sparse
                _hash_row(content, rows_raw, rows_sparse)
                clip_index[row], clip_label[row] = index, label
                row += 1
        _write_columns(f, content, clip_label, clip_index, T)
        _stamp(f, content, key)
        f.attrs["variants"] = json.dumps(list(variants))
        if group is not None:
            f.attrs["group"] = int(group)
    return K


def write_array_shard(path, raw, sparse, clip_label, clip_index, key=""):
    """A shard from arrays already in the shard's layout (raw uint8 (K, T, 3, H, W), sparse
    float32 (K, T, 1, H, W), one class and manifest row per clip), with its checksum, written
    atomically: for data made without the clip cache (psn.probe_tasks' synthetic tasks).
    Returns the number of rows."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    sparse = np.ascontiguousarray(sparse, dtype=np.float32)
    K, T = raw.shape[:2]
    if K == 0:
        raise ValueError(f"shard {path} would be empty")
    content = hashlib.sha256()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("raw", data=raw, chunks=(1,) + raw.shape[1:], track_times=False)
        f.create_dataset("sparse", data=sparse, chunks=(1,) + sparse.shape[1:], track_times=False)
        for k in range(K):
            _hash_row(content, raw[k], sparse[k])
        _write_columns(f, content, clip_label, clip_index, T)
        _stamp(f, content, key)
    return K


def write_frame_shard(src, dst, frames):
    """dst: the shard src with one frame per row, frames[k] (0..15) of row k (T = 1: the
    single-frame net of Fig. 10 reads it with the same HDF5Data tops), stored as src is
    (plain or gzip). Kept as it is when its key (src's key and the frames) matches; returns dst."""
    frames = np.asarray(frames, dtype=np.int64)
    with h5py.File(src, "r") as f:
        src_key = f.attrs.get("key")
        src_key = src_key.decode() if isinstance(src_key, bytes) else str(src_key)
        K = f["clip_label"].shape[0]
        if frames.shape != (K,) or (K and not (0 <= frames.min() and frames.max() < N_SAMPLED)):
            raise ValueError(f"{src}: {K} rows need {K} frame indices in 0..{N_SAMPLED - 1}, "
                             f"got {frames.shape} {frames.min() if frames.size else ''}"
                             f"..{frames.max() if frames.size else ''}")
        key = hashlib.sha256(json.dumps({"source": src_key, "frames": frames.tolist()})
                             .encode()).hexdigest()
        if stored_key(dst) == key:
            return dst
        filters = _filters("gzip" if f["raw"].compression == "gzip" else "none")
        with atomic_path(dst) as tmp, h5py.File(tmp, "w") as g:
            raw = g.create_dataset("raw", (K, 1, 3, CROP, CROP), np.uint8,
                                   chunks=(1, 1, 3, CROP, CROP), track_times=False, **filters)
            sparse = g.create_dataset("sparse", (K, 1, 1, CROP, CROP), np.float32,
                                      chunks=(1, 1, 1, CROP, CROP), track_times=False, **filters)
            content = hashlib.sha256()
            for k, t in enumerate(frames):
                raw[k], sparse[k] = f["raw"][k, t:t + 1], f["sparse"][k, t:t + 1]
                _hash_row(content, raw[k], sparse[k])
            _write_columns(g, content, f["clip_label"][()], f["clip_index"][()], 1)
            g.create_dataset("frame", data=frames.astype(np.int32), track_times=False)
            _stamp(g, content, key)
            g.attrs["source"] = os.path.basename(src)
    return dst


# A flow shard (preprocessing.flow; one per fold group, groupKK_flow.h5, beside the others):
#     flow       float32 (K, 3, 28, 28)   u, v, strain, each divided by its peak in the clip
#     label      float32 (K, 1)           clip class (Caffe's label top: one row per clip)
#     cont       float32 (K, 1)           0 (one step per clip)
#     clip_label int32   (K,)             clip_index int32 (K,)
FLOW_DATASETS = ("flow", "label", "cont", "clip_label", "clip_index")


def flow_shard_key(items, group=None, params=None):
    """Fingerprint of a flow shard: items = [(clip_index, label, digest of the clip's flow)],
    params the flow's stamp (preprocessing.flow.FlowParams.stamp: its version covers the
    scaling the shard stores)."""
    blob = json.dumps({"layout": LAYOUT_VERSION, "kind": "flow", "group": group, "params": params,
                       "clips": [[int(i), int(l), str(d)] for i, l, d in items]},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def write_flow_shard(path, rows, key="", group=None):
    """A flow shard from rows [(clip_index, label, maps (3, 28, 28) as the nets read them)],
    written atomically with its checksum; returns the number of rows."""
    if not rows:
        raise ValueError(f"flow shard {path} would be empty")
    flow = np.ascontiguousarray(np.stack([m for _, _, m in rows]), dtype=np.float32)
    clip_index = np.array([i for i, _, _ in rows], np.int32)
    clip_label = np.array([lab for _, lab, _ in rows], np.int32)
    content = hashlib.sha256()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("flow", data=flow, chunks=(1,) + flow.shape[1:], track_times=False)
        content.update(flow.tobytes())
        _write_columns(f, content, clip_label, clip_index, 1)
        _stamp(f, content, key)
        f.attrs["kind"] = "flow"
        if group is not None:
            f.attrs["group"] = int(group)
    return len(rows)


def _flow_shard_problem(f):
    want = f.attrs.get("content_sha256")
    want = want.decode() if isinstance(want, bytes) else want
    flow = f["flow"][()]
    if not np.isfinite(flow).all():
        return "non-finite values (NaN or inf) in 'flow'"
    content = hashlib.sha256(np.ascontiguousarray(flow, np.float32).tobytes())
    _hash_labels(content, {name: f[name][()] for name, _ in _LABEL_DATASETS})
    if content.hexdigest() != want:
        return "its datasets (flow, labels or clip indices) no longer match the checksum written with them"
    return None


def shard_problem(path):
    """Why a shard cannot be trusted, or None: its datasets (frames, labels, indices) no
    longer match the checksum written with them (a bit flip, an edit), it has no checksum or an
    older layout's, or sparse holds NaN or inf. Reads the whole shard, one row at a time. A
    shard that reads data from another file (foreign_data) is refused before any of it is read."""
    try:
        with h5py.File(path, "r") as f:
            foreign = foreign_data(f)
            if foreign:
                return foreign
            if f.attrs.get("kind") == "flow":
                return _flow_shard_problem(f)
            if f.attrs.get("checksum_version", 1) != CHECKSUM_VERSION:
                return ("its checksum covers the frames only, not the labels (written by an "
                        "older version): run `preprocess.py run` on its folder again")
            want = f.attrs.get("content_sha256")
            if isinstance(want, bytes):
                want = want.decode()
            if not want:
                return "it has no checksum (content_sha256): run `preprocess.py run` on its folder again"
            raw, sparse = f["raw"], f["sparse"]
            content = hashlib.sha256()
            for i in range(raw.shape[0]):
                s = sparse[i]
                if not np.isfinite(s).all():
                    return f"non-finite values (NaN or inf) in 'sparse', row {i}"
                _hash_row(content, raw[i], s)
            _hash_labels(content, {name: f[name][()] for name, _ in _LABEL_DATASETS})
    except (OSError, KeyError, ValueError) as exc:
        return f"unreadable ({exc})"
    if content.hexdigest() != want:
        return ("its datasets (frames, labels or clip indices) no longer match the checksum "
                "written with them")
    return None


def read_shard(path):
    """All datasets of a shard as numpy arrays, plus its attributes under 'attrs'; ValueError
    for a shard that reads data from another file (foreign_data)."""
    with h5py.File(path, "r") as f:
        foreign = foreign_data(f)
        if foreign:
            raise ValueError(f"{path}: {foreign}")
        out = {name: f[name][()] for name in DATASETS}
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return out
