"""The HDF5PrefetchData layer (layers/): its gtest, a net trained with it against Caffe's HDF5Data
(the same weights), and a shard that cannot be read (HDF5Data's own message)."""
import os
import re
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.caffe


def test_cpp_gtest(caffe_env):
    """The same rows as HDF5Data, shuffled or not, over a file change; no random number drawn
    from Caffe; stopped cleanly (test_hdf5_prefetch_data_layer.cpp)."""
    binary = os.path.join(caffe_env["PSN_CAFFE_HOME"], "test",
                          "test_hdf5_prefetch_data_layer.testbin")
    out = subprocess.run([binary], capture_output=True, text=True, env=caffe_env, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    for case in ("TestRowsInOrderAcrossFiles", "TestSameBatchesAsHDF5Data",
                 "TestNoRandomNumberFromCaffe", "TestDestroyedRightAfterSetUp"):
        assert re.search(r"\[       OK \] HDF5PrefetchDataLayerTest/\d+\.%s" % case,
                         out.stdout), case


def _shards(folder, rows=(13, 9), missing=False):
    rng = np.random.RandomState(0)
    paths = []
    for i, n in enumerate(rows):
        path = os.path.join(folder, "s%d.h5" % i)
        if not (missing and i == 1):
            with h5py.File(path, "w") as f:
                f["data"] = rng.normal(size=(n, 6)).astype(np.float32)
                f["label"] = rng.randint(0, 3, size=(n,)).astype(np.float32)
        paths.append(path)
    listing = os.path.join(folder, "list.txt")
    with open(listing, "w") as f:
        f.write("".join(p + "\n" for p in paths))
    return listing


TRAIN = textwrap.dedent("""
    import sys
    import numpy as np
    import caffe
    layer_type, listing, folder, out = sys.argv[1:5]
    net = '''
    layer { name: "d" type: "%s" top: "data" top: "label"
            hdf5_data_param { source: "%s" batch_size: 4 shuffle: true } }
    layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
            inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
    layer { name: "drop" type: "Dropout" bottom: "fc1" top: "fc1" }
    layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
            inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }
    ''' % (layer_type, listing)
    open(folder + "/net.prototxt", "w").write(net)
    open(folder + "/solver.prototxt", "w").write(
        'net: "%s/net.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 40 '
        'random_seed: 7 solver_mode: CPU display: 0' % folder)
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(folder + "/solver.prototxt")
    params = [b for name in ("fc1", "fc2") for b in solver.net.params[name]]
    before = [b.data.copy() for b in params]
    solver.step(40)
    np.savez(out, *(before + [b.data for b in params]))
""")


def _train(caffe_env, tmp_path, layer_type, listing):
    folder = tmp_path / layer_type
    folder.mkdir()
    out = str(folder / "weights.npz")
    run = subprocess.run([sys.executable, "-c", TRAIN, layer_type, listing, str(folder), out],
                         capture_output=True, text=True, env=caffe_env, timeout=300)
    return run, out


def test_a_net_trained_with_it_gets_hdf5datas_weights(caffe_env, tmp_path):
    """Shuffled batches over two files, dropout, 40 SGD steps: bit for bit the same weights as
    with HDF5Data (same rows in the same order, Caffe's random numbers untouched), so stored
    results of runs made with HDF5Data still describe runs made now."""
    listing = _shards(str(tmp_path))
    weights = {}
    for layer_type in ("HDF5Data", "HDF5PrefetchData"):
        run, out = _train(caffe_env, tmp_path, layer_type, listing)
        assert run.returncode == 0, run.stderr[-3000:]
        with np.load(out) as z:
            weights[layer_type] = [z["arr_%d" % i] for i in range(len(z.files))]
    assert len(weights["HDF5Data"]) == 8
    for a, b in zip(weights["HDF5Data"], weights["HDF5PrefetchData"]):
        assert np.array_equal(a, b)
    # Training moved them: trained weights are compared, not only the fillers'.
    before, after = weights["HDF5Data"][:4], weights["HDF5Data"][4:]
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(before, after))


def test_a_shard_that_cannot_be_read_stops_it_with_hdf5datas_message(caffe_env, tmp_path):
    """The second shard of the list is missing: it is read by the prefetch thread, and Caffe
    stops with the line HDF5Data prints, naming the file."""
    listing = _shards(str(tmp_path), missing=True)
    missing = os.path.join(str(tmp_path), "s1.h5")
    for layer_type in ("HDF5Data", "HDF5PrefetchData"):
        run, _ = _train(caffe_env, tmp_path, layer_type, listing)
        assert run.returncode != 0
        assert "Failed opening HDF5 file: %s" % missing in run.stderr, run.stderr[-2000:]


FORK = textwrap.dedent("""
    import os
    import sys
    import caffe
    listing, folder = sys.argv[1:3]
    open(folder + "/net.prototxt", "w").write(
        'layer { name: "d" type: "HDF5PrefetchData" top: "data" top: "label" '
        'hdf5_data_param { source: "%s" batch_size: 4 } }' % listing)
    caffe.set_mode_cpu()
    net = caffe.Net(folder + "/net.prototxt", caffe.TRAIN)
    net.forward()
    pid = os.fork()
    if pid == 0:
        net.forward()            # the child has no reading thread: refused, not hung
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child", os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0)
    net.forward()                # the parent's thread still serves it
    print("parent ok")
""")


def test_a_forked_child_is_refused_and_the_parent_goes_on(caffe_env, tmp_path):
    listing = _shards(str(tmp_path))
    run = subprocess.run([sys.executable, "-c", FORK, listing, str(tmp_path)],
                         capture_output=True, text=True, env=caffe_env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "child True" in run.stdout and "parent ok" in run.stdout
    assert "does not survive fork()" in run.stderr
