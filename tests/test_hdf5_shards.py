"""Shards that read data from other files (HDF5 external links, virtual datasets, external
raw storage) are refused by the checks: the linked file is never checked again, and Caffe
would follow the link."""
import hashlib
import os

import h5py
import numpy as np
import pytest

from preprocessing import hdf5_shards
from preprocessing.hdf5_shards import read_shard, shard_problem, stored_key

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
    """A label changed inside a shard used to train without notice (the checksum covered the
    frames only); predictions.csv then disagreed with manifest.csv."""
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
