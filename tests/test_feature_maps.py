"""psn.feature_maps (Fig. 8): find_clip finding a named clip in a fold's shards (its test
shards first, never an augmented copy), layer_maps reading one frame's maps off a deploy net's
time-major rows (with a stand-in net), and write_feature_maps drawing a fold of conftest.py's
`trained` run."""
import os
import shutil

import h5py
import matplotlib.image
import numpy as np
import pytest

from preprocessing.errors import InputError
from preprocessing.hdf5_shards import write_array_shard
from preprocessing.layout import DataFolder
from preprocessing.manifest import apex_frame, read_manifest, write_manifest
from psn.config import RunError
from psn.feature_maps import LAYERS, find_clip, layer_maps, write_feature_maps
from run_folds_helpers import make_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """make_data's folder: fold 1 tests group01 (EP01_00..04, rows 0..4) and trains on group02
    (EP02_00..04, manifest indices 5..9); fold 2 the other way round. Nothing writes into it."""
    return make_data(str(tmp_path_factory.mktemp("fm") / "data"))


# ---------------------------------------------------------------- find_clip


def test_a_test_clip_of_the_fold_is_held_out(data):
    shard, row, manifest_row, held_out = find_clip(data, 1, "EP01_02")
    assert shard == os.path.join(data, "shards", "group01.h5") and row == 2 and held_out
    assert manifest_row["subject"] == "casme2/sub01" and manifest_row["index"] == "2"
    with h5py.File(shard, "r") as f:
        assert f["clip_index"][row] == 2


def test_a_training_clip_is_found_in_the_training_shards(data):
    shard, row, manifest_row, held_out = find_clip(data, 1, "casme2/sub02/EP02_03")
    assert shard == os.path.join(data, "shards", "group02.h5") and row == 3 and not held_out
    assert manifest_row["index"] == "8"
    # The other fold holds it out.
    assert find_clip(data, 2, "EP02_03")[3] is True


def test_an_augmented_shard_is_passed_over(tmp_path):
    """An _aug shard holds flipped or shifted copies of training clips: not what the clip is."""
    d = make_data(str(tmp_path / "data"))
    folder = DataFolder(d)
    aug = folder.shard(2, aug=True)
    rng = np.random.RandomState(1)
    write_array_shard(aug, rng.randint(0, 255, (1, 16, 3, 112, 112)),
                      rng.normal(0, 0.1, (1, 16, 1, 112, 112)), [0], [8])
    folder.write_fold_list(1, "train", [aug, folder.shard(2)])
    shard, row, _, held_out = find_clip(d, 1, "EP02_03")
    assert (shard, row, held_out) == (folder.shard(2), 3, False)


def test_an_unknown_clip_is_an_input_error(data):
    with pytest.raises(InputError, match=r"manifest.csv: no clip named 'EP09_09'; give a clip "
                                         r"name or SUBJECT/CLIP"):
        find_clip(data, 1, "EP09_09")


def test_a_clip_in_no_shard_of_the_fold_is_a_run_error(tmp_path):
    d = make_data(str(tmp_path / "data"))
    folder = DataFolder(d)
    rows = read_manifest(folder.manifest)
    rows.append(dict(rows[-1], index="10", clip="EP03_00", subject="casme2/sub03", group="3"))
    write_manifest(folder.manifest, rows)
    with pytest.raises(RunError, match="clip EP03_00 is in no shard of fold 1 of %s" % d):
        find_clip(d, 1, "EP03_00")


# ---------------------------------------------------------------- layer_maps


class _Blob:
    def __init__(self, shape):
        self.data = np.zeros(shape, dtype=np.float32)


class FakeDeployNet:
    """Clip-major inputs (N, T, ...), time-major rows (row t*N + n = frame t of clip n): each
    layer's row holds (the sum of raw, the sum of sparse, n) of its frame, and cont's t."""

    def __init__(self, N=3, T=4, layers=LAYERS):
        self.N, self.T = N, T
        self.blobs = {"raw": _Blob((N, T, 3, 2, 2)), "sparse": _Blob((N, T, 1, 2, 2)),
                      "cont": _Blob((N, T))}
        for name in layers:
            self.blobs[name] = _Blob((T * N, 4, 1, 1))

    def forward(self):
        for name, blob in self.blobs.items():
            if name in ("raw", "sparse", "cont"):
                continue
            for t in range(self.T):
                for n in range(self.N):
                    blob.data[t * self.N + n, :, 0, 0] = (
                        self.blobs["raw"].data[n, t].sum(), self.blobs["sparse"].data[n, t].sum(),
                        n, self.blobs["cont"].data[n, t])
        return {}


def clip(T=4):
    raw = np.arange(T * 3 * 2 * 2, dtype=np.float32).reshape(T, 3, 2, 2)
    return raw, -raw[:, :1], np.arange(T, dtype=np.float32)


def test_layer_maps_read_the_frame_of_the_first_slot():
    net = FakeDeployNet()
    raw, sparse, cont = clip()
    maps = layer_maps(net, raw, sparse, cont, frame=2)
    assert sorted(maps) == sorted(LAYERS)
    for name in LAYERS:
        assert maps[name].shape == (4, 1, 1)
        np.testing.assert_allclose(maps[name][:, 0, 0], [raw[2].sum(), sparse[2].sum(), 0, 2])
    # The clip fills every slot of the batch.
    for n in range(net.N):
        np.testing.assert_array_equal(net.blobs["raw"].data[n], raw)
        np.testing.assert_array_equal(net.blobs["cont"].data[n], cont)
    # A copy: the net's next forward does not change what was drawn.
    net.blobs["conv1"].data[...] = 0
    assert maps["conv1"][0, 0, 0] == raw[2].sum()


def test_layer_maps_of_a_net_without_the_layers():
    net = FakeDeployNet(layers=("conv1",))
    with pytest.raises(RunError, match="the net has no blob conv5: Fig. 8 shows the AlexNet spatial "
                                       "stream of PSN's models"):
        layer_maps(net, *clip(), frame=0)
    assert sorted(layer_maps(net, *clip(), frame=1, layers=("conv1",))) == ["conv1"]


# ---------------------------------------------------------------- write_feature_maps


@pytest.fixture(scope="module")
def apex_data(trained, tmp_path_factory):
    """The `trained` run's data folder as preprocessing writes it: with each clip's onset,
    apex, offset and frame count (make_data leaves them out), its shards linked, not copied."""
    data, _, _ = trained
    d = str(tmp_path_factory.mktemp("fm_trained") / "data")
    os.makedirs(d)
    os.symlink(os.path.join(data, "shards"), os.path.join(d, "shards"))
    shutil.copytree(os.path.join(data, "folds"), os.path.join(d, "folds"))
    rows = read_manifest(DataFolder(data).manifest)
    for r in rows:
        # The apex three quarters of the way: not the middle frame taken without one.
        r.update(onset="10", apex="40", offset="50", n_frames="41")
    write_manifest(DataFolder(d).manifest, rows)
    return d


def test_write_feature_maps_draws_a_held_out_clip_at_its_apex(trained, apex_data, caffe, tmp_path,
                                                               monkeypatch):
    from psn import plots
    from psn.caffe_train import done_weights
    _, out, _ = trained
    png = str(tmp_path / "fig8.png")
    drawn, real = [], plots.feature_grid

    def feature_grid(frame, sparse, maps, path, title):
        drawn.append((frame, sparse, maps, title))
        return real(frame, sparse, maps, path, title)

    monkeypatch.setattr(plots, "feature_grid", feature_grid)
    info = write_feature_maps(out, apex_data, 1, "EP01_02", png)
    row = find_clip(apex_data, 1, "EP01_02")[2]
    frame = apex_frame(row)
    assert frame not in (7, 8)
    assert info["clip"] == "casme2/sub01/EP01_02" and info["class"] == "surprise"
    assert info["frame"] == frame and info["held_out"] is True
    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    # The same maps from the fold's deploy net, and the rows they come from: with the clip in
    # every slot of the batch, the N rows of one frame are alike only if rows are time-major.
    fold = os.path.join(out, "fold01")
    net = caffe.Net(os.path.join(fold, "deploy.prototxt"), done_weights(fold), caffe.TEST)
    with h5py.File(os.path.join(apex_data, "shards", "group01.h5"), "r") as f:
        raw, sparse, cont = f["raw"][2], f["sparse"][2], f["cont"][2]
    maps = layer_maps(net, raw, sparse, cont, frame)
    # The frame drawn is the apex one, as an image (H, W, RGB), beside its E.
    shown, shown_e, shown_maps, title = drawn[0]
    np.testing.assert_array_equal(shown, raw[frame].transpose(1, 2, 0))
    np.testing.assert_array_equal(shown_e, sparse[frame, 0])
    assert title == "casme2/sub01/EP01_02, frame %d of 16: conv1 (%d maps), conv5 (%d maps)" % (
        frame + 1, len(maps["conv1"]), len(maps["conv5"]))
    N = net.blobs["raw"].data.shape[0]
    assert N > 1
    for name in LAYERS:
        rows = net.blobs[name].data[frame * N:(frame + 1) * N]
        np.testing.assert_allclose(rows, np.repeat(rows[:1], N, axis=0), rtol=1e-5, atol=1e-6)
        assert not np.allclose(net.blobs[name].data[0], net.blobs[name].data[frame * N])
        assert info["channels"][name] == maps[name].shape[0] == net.blobs[name].data.shape[1]
        np.testing.assert_allclose(shown_maps[name], maps[name], rtol=1e-5, atol=1e-6)
        assert info["zero_share"][name] == pytest.approx(float(np.mean(maps[name] <= 0)))
        # After ReLU: some maps are zero (exactly), and not all.
        assert 0.0 < info["zero_share"][name] < 1.0 and maps[name].min() == 0.0


def test_an_untrained_fold_is_refused(trained, apex_data, caffe, tmp_path):
    _, out, _ = trained
    png = tmp_path / "fig8.png"
    with pytest.raises(RunError, match=r"fold 3 of %s is not trained: train it \(run_folds --folds "
                                       r"3\) or choose another --fold" % out):
        write_feature_maps(out, apex_data, 3, "EP01_02", str(png))
    assert not png.exists()
