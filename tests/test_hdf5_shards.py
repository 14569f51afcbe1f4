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
