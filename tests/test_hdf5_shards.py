"""preprocessing.hdf5_shards: shards written atomically, plain or gzip, their single-frame
copies, Caffe's HDF5Data reading them, and the checks: a shard that reads data from other
files (HDF5 external links, virtual datasets, external raw storage) is refused, since the
linked file is never checked again and Caffe would follow the link."""
import hashlib
import os

import h5py
import numpy as np
import pytest

from pipeline_helpers import cache_file_of, manifest_of
from preprocessing import hdf5_shards
from preprocessing.hdf5_shards import read_shard, shard_problem, stored_key, write_shard

K = 2


def _arrays():
    rng = np.random.RandomState(0)
    raw = rng.randint(0, 255, (K, 16, 3, 8, 8)).astype(np.uint8)
    sparse = rng.normal(0, 0.1, (K, 16, 1, 8, 8)).astype(np.float32)
    return {"raw": raw, "sparse": sparse, "label": np.zeros((K, 16), np.float32),
            "cont": np.ones((K, 16), np.float32), "clip_label": np.zeros(K, np.int32),
            "clip_index": np.arange(K, dtype=np.int32)}


def _checksum(arrays):
    h = hashlib.sha256()
    for i in range(K):
        hdf5_shards._hash_row(h, arrays["raw"][i], arrays["sparse"][i])
    hdf5_shards._hash_labels(h, arrays)
    return h.hexdigest()


def _shard(path, arrays, foreign=None):
    """A shard whose datasets are its own, except `foreign` (name -> how it is stored)."""
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            if name not in (foreign or {}):
                f[name] = value
        for name, how in (foreign or {}).items():
            how(f, name, arrays[name])
        f.attrs["key"] = "k"
        f.attrs["content_sha256"] = _checksum(arrays)
        f.attrs["checksum_version"] = hdf5_shards.CHECKSUM_VERSION
    return path


def _external_link(other):
    def how(f, name, value):
        with h5py.File(other, "a") as g:
            g[name] = value
        f[name] = h5py.ExternalLink(other, "/" + name)
    return how


def _virtual(other):
    def how(f, name, value):
        with h5py.File(other, "a") as g:
            g[name] = value
        layout = h5py.VirtualLayout(shape=value.shape, dtype=value.dtype)
        layout[...] = h5py.VirtualSource(other, name, shape=value.shape)
        f.create_virtual_dataset(name, layout)
    return how


def _external_storage(other):
    def how(f, name, value):
        value = np.ascontiguousarray(value)
        with open(other, "wb") as raw_file:
            raw_file.write(value.tobytes())
        ds = f.create_dataset(name, value.shape, value.dtype,
                              external=[(other, 0, value.nbytes)])
        ds[...] = value
    return how


def test_a_plain_shard_is_sound(tmp_path):
    path = _shard(str(tmp_path / "group01.h5"), _arrays())
    assert shard_problem(path) is None and stored_key(path) == "k"
    assert read_shard(path)["raw"].shape == (K, 16, 3, 8, 8)


@pytest.mark.parametrize("kind,words", [(_external_link, "external link"),
                                        (_virtual, "virtual dataset"),
                                        (_external_storage, "external file")])
def test_a_shard_reading_another_file_is_refused(tmp_path, kind, words):
    other = str(tmp_path / "elsewhere" / "other.bin")
    os.makedirs(os.path.dirname(other))
    arrays = _arrays()
    path = _shard(str(tmp_path / "group01.h5"), arrays, {"sparse": kind(other)})
    with h5py.File(path, "r") as f:           # it reads as the real thing
        assert (f["sparse"][()] == arrays["sparse"]).all()
    problem = shard_problem(path)
    assert problem and words in problem and "'sparse'" in problem, problem
    assert stored_key(path) is None           # preprocessing writes it again
    with pytest.raises(ValueError, match=words):
        read_shard(path)


@pytest.mark.parametrize("name,row", [("clip_label", 1), ("label", (0, 5)), ("clip_index", 0),
                                      ("cont", (1, 0))])
def test_an_edited_label_fails_the_checksum(tmp_path, name, row):
    """A label changed inside a shard fails the checksum, which covers the labels as well as
    the frames: otherwise it would train without notice, and predictions.csv would disagree
    with manifest.csv."""
    path = _shard(str(tmp_path / "group01.h5"), _arrays())
    with h5py.File(path, "r+") as f:
        f[name][row] = 3
    problem = shard_problem(path)
    assert problem and "labels" in problem and "checksum" in problem, problem


def test_a_shard_whose_checksum_covers_frames_only_or_none_is_not_trusted(tmp_path):
    path = _shard(str(tmp_path / "group01.h5"), _arrays())
    with h5py.File(path, "r+") as f:
        del f.attrs["checksum_version"]          # written before the labels were covered
    problem = shard_problem(path)
    assert "frames only" in problem and "preprocess.py run" in problem, problem
    assert stored_key(path) == "k"               # rewritten under the same key: runs stay valid
    with h5py.File(path, "r+") as f:
        f.attrs["checksum_version"] = hdf5_shards.CHECKSUM_VERSION
        del f.attrs["content_sha256"]
    assert "no checksum" in shard_problem(path)


def test_a_cache_file_rewritten_since_it_was_read_is_refused(tmp_path):
    """The shard stage writes from cache files read again from disk: a file another process
    rewrote (a worker of a killed run with other options) must not go into the shard under
    the key of the arrays this run read."""
    raw = np.zeros((16, 112, 112, 3), np.uint8)
    sparse = np.zeros((16, 112, 112), np.float32)
    cache = str(tmp_path / "EP01.npz")
    np.savez(cache, raw=raw, sparse=sparse)
    digest = hashlib.sha256(raw.tobytes() + sparse.tobytes()).hexdigest()
    shard = str(tmp_path / "group01.h5")
    assert hdf5_shards.write_shard(shard, [(0, 1, cache, digest)], key="k") == 1
    sparse[3, 5, 5] = 0.25                    # the other run's E
    np.savez(cache, raw=raw, sparse=sparse)
    with pytest.raises(RuntimeError, match="EP01.npz changed after this run read it.*Run the same command again"):
        hdf5_shards.write_shard(shard, [(0, 1, cache, digest)], key="k2")
    assert stored_key(shard) == "k"           # the shard of before is untouched


def test_a_failed_shard_write_leaves_nothing(first, tmp_path, monkeypatch):
    out = first[0]
    rows = manifest_of(out)
    items = [(int(r["index"]), int(r["label"]), cache_file_of(out, r))
             for r in rows if r["included"] == "1"][:3]
    calls = []
    real = hdf5_shards.load_clip_arrays

    def failing(path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt   # an interrupted run
        return real(path)

    monkeypatch.setattr(hdf5_shards, "load_clip_arrays", failing)
    path = str(tmp_path / "group09.h5")
    with pytest.raises(KeyboardInterrupt):
        write_shard(path, items, key="k")
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(hdf5_shards, "load_clip_arrays", real)
    assert write_shard(path, items, ("flip",), key="k2") == 3
    assert hdf5_shards.stored_key(path) == "k2"
    with h5py.File(path, "r") as f:
        assert f["raw"].shape == (3, 16, 3, 112, 112)


def test_shards_are_plain_by_default_and_gzip_on_request(first, tmp_path):
    """Plain shards by default (Caffe's HDF5Data gunzips a whole shard on the training thread:
    3x slower GPU iterations, measured); gzip keeps the same rows in less space, under another
    key, so switching rewrites the shards; the single-frame shard follows its source."""
    from preprocessing.hdf5_shards import shard_key, write_frame_shard
    out = first[0]
    rows = manifest_of(out)
    items = [(int(r["index"]), int(r["label"]), cache_file_of(out, r))
             for r in rows if r["included"] == "1"][:3]
    plain, packed = str(tmp_path / "plain.h5"), str(tmp_path / "gzip.h5")
    write_shard(plain, items, key="a")
    write_shard(packed, items, key="b", compression="gzip")
    a, b = read_shard(plain), read_shard(packed)
    for name in ("raw", "sparse", "label", "cont", "clip_label", "clip_index"):
        assert np.array_equal(a[name], b[name]), name
    with h5py.File(plain, "r") as f, h5py.File(packed, "r") as g:
        assert f["raw"].compression is None and f["sparse"].compression is None
        assert g["raw"].compression == "gzip" and g["sparse"].compression == "gzip"
    assert os.path.getsize(packed) < 0.9 * os.path.getsize(plain)
    fp = [(0, 1, "d")]
    assert shard_key(fp) == shard_key(fp, compression="none") != shard_key(fp, compression="gzip")
    # The key gzip shards had before the option existed: folders written then are kept as
    # they are under --shard-compression gzip.
    assert shard_key(fp, ("flip",), 3, compression="gzip") == \
        "5b7a7ee7a939b55391e53ee82a078400e5c85ba149b0e48945b53ca61e69d5f8"
    with pytest.raises(ValueError, match="expected one of none, gzip"):
        write_shard(str(tmp_path / "x.h5"), items, key="c", compression="lzf")
    for src in (plain, packed):
        dst = write_frame_shard(src, src[:-3] + "_frame.h5", [3, 4, 5])
        with h5py.File(src, "r") as f, h5py.File(dst, "r") as g:
            assert g["raw"].compression == f["raw"].compression
            assert np.array_equal(g["sparse"][1, 0], f["sparse"][1, 4])


def test_caffe_hdf5data_reads_the_shards(first, caffe, tmp_path):
    out = first[0]
    proto = tmp_path / "data.prototxt"
    from preprocessing.layout import DataFolder
    lists = DataFolder(out).caffe_lists(1, str(tmp_path))   # absolute, as run_folds gives Caffe
    for split in ("test", "train"):
        source = lists[split][0]
        proto.write_text('layer { name: "data" type: "HDF5Data" top: "raw" top: "sparse" '
                         'top: "label" top: "cont" '
                         f'hdf5_data_param {{ source: "{source}" batch_size: 2 }} }}\n')
        net = caffe.Net(str(proto), caffe.TEST)
        first_shard = open(source).read().split()[0]
        s = read_shard(first_shard)
        for b in range(2):
            net.forward()
            rows = slice(2 * b, 2 * b + 2)
            assert net.blobs["raw"].data.shape == (2, 16, 3, 112, 112)
            assert net.blobs["sparse"].data.shape == (2, 16, 1, 112, 112)
            assert net.blobs["label"].data.shape == (2, 16)
            assert np.array_equal(net.blobs["raw"].data, s["raw"][rows].astype(np.float32))
            assert np.array_equal(net.blobs["sparse"].data, s["sparse"][rows])
            assert np.array_equal(net.blobs["label"].data, s["label"][rows])
            assert np.array_equal(net.blobs["cont"].data, s["cont"][rows])


def test_caffe_hdf5data_reads_gzip_shards(first, caffe, tmp_path):
    """--shard-compression gzip: libhdf5's own filters, so the stock layer reads them."""
    out = first[0]
    items = [(int(r["index"]), int(r["label"]), cache_file_of(out, r))
             for r in manifest_of(out) if r["included"] == "1"][:2]
    shard = str(tmp_path / "gzip.h5")
    write_shard(shard, items, key="g", compression="gzip")
    listing = tmp_path / "list.txt"
    listing.write_text(shard + "\n")
    proto = tmp_path / "data.prototxt"
    proto.write_text('layer { name: "data" type: "HDF5Data" top: "raw" top: "sparse" '
                     f'hdf5_data_param {{ source: "{listing}" batch_size: 2 }} }}\n')
    net = caffe.Net(str(proto), caffe.TEST)
    net.forward()
    s = read_shard(shard)
    assert np.array_equal(net.blobs["raw"].data, s["raw"].astype(np.float32))
    assert np.array_equal(net.blobs["sparse"].data, s["sparse"])


def test_frame_shard_holds_each_rows_chosen_frame(first, tmp_path):
    """write_frame_shard: the single-frame net's shard (T = 1), a sound shard of its own,
    kept when unchanged, rewritten when the frames change, refused for bad indices."""
    from preprocessing.hdf5_shards import shard_problem, write_frame_shard
    src = os.path.join(first[0], "shards", "group01_aug.h5")
    s = read_shard(src)
    K = len(s["clip_label"])
    frames = np.arange(K) % 16
    dst = str(tmp_path / "apex.h5")
    write_frame_shard(src, dst, frames)
    d = read_shard(dst)
    for k, t in enumerate(frames):
        assert (d["raw"][k, 0] == s["raw"][k, t]).all()
        assert (d["sparse"][k, 0] == s["sparse"][k, t]).all()
    assert d["raw"].shape == (K, 1, 3, 112, 112) and d["label"].shape == (K, 1)
    assert (d["cont"] == 0).all() and (d["clip_label"] == s["clip_label"]).all()
    assert (d["clip_index"] == s["clip_index"]).all() and (d["label"][:, 0] == s["clip_label"]).all()
    assert shard_problem(dst) is None
    mtime = os.stat(dst).st_mtime_ns
    write_frame_shard(src, dst, frames)
    assert os.stat(dst).st_mtime_ns == mtime
    write_frame_shard(src, dst, (frames + 1) % 16)
    assert (read_shard(dst)["sparse"][0, 0] == s["sparse"][0, 1]).all()
    for bad in (frames[:-1], frames + 16, frames - 17):
        with pytest.raises(ValueError, match="frame indices"):
            write_frame_shard(src, str(tmp_path / "bad.h5"), bad)
    assert not os.path.exists(str(tmp_path / "bad.h5"))
