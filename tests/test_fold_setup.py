"""psn.fold_setup: a fold's nets from the checked-in prototxt: a broken prototxt named by its
line, a class count that does not match the data refused before any fold starts."""
import os

import pytest

from run_folds_helpers import run_tool


def test_a_broken_prototxt_is_named(caffe_env, monkeypatch, tmp_path):
    import psn.fold_setup as T
    from psn import nets
    model = tmp_path / "prototxt" / "mynet"
    model.mkdir(parents=True)
    for name in ("train_val", "deploy", "solver"):
        (model / (name + ".prototxt")).write_text('name: "x"\nlayer { name: "a" type: \n')
    monkeypatch.setattr(nets, "PROTOTXT_DIR", str(tmp_path / "prototxt"))
    with pytest.raises(T.RunError) as e:
        T.fold_nets("mynet", 1.0, 5, "a.txt", "b.txt", "cpp")
    assert str(e.value).startswith(str(model / "train_val.prototxt") + ":3")


def test_a_class_count_that_does_not_match_the_data_is_refused(caffe_env, trained, tmp_path,
                                                               monkeypatch, capsys):
    """--net num_classes=2 on 4-class data, or a checked-in net edited to 3 outputs, trained
    labels the net has no output for and exited 0; now refused before any fold starts."""
    import shutil
    from psn import nets, training
    from psn.config import RunConfig
    data, _, _ = trained
    out = tmp_path / "r"
    res = run_tool(caffe_env, "--data", data, "--out", str(out), "--schedule", "smoke",
                   "--width", "0.125", "--net", "num_classes=2")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "num_classes=2, but" in res.stderr and "labelled with 4 classes" in res.stderr
    assert not (out / "fold01").exists()
    proto = tmp_path / "prototxt"
    shutil.copytree(os.path.join(nets.PROTOTXT_DIR, "psn"), str(proto / "psn"))
    tv = proto / "psn" / "train_val.prototxt"
    text = tv.read_text()
    at = text.index('name: "fc_cls"')
    tv.write_text(text[:at] + text[at:].replace("num_output: 4", "num_output: 3", 1))
    monkeypatch.setattr(nets, "PROTOTXT_DIR", str(proto))
    cfg = RunConfig(data=data, out=str(tmp_path / "r2"), schedule="smoke")
    assert training.run_folds(cfg, log=lambda *a: None) == 2
    err = capsys.readouterr().err
    assert "%s: fc_cls has 3 outputs" % tv in err and "positive, negative" in err
    assert not (tmp_path / "r2" / "fold01").exists()
    # A data folder whose protocol.json names 3 classes over labels 0..3: refused, not trained
    # with label 3 on a 3-output net.
    monkeypatch.undo()
    three = str(tmp_path / "three")
    shutil.copytree(data, three)
    with open(os.path.join(three, "protocol.json"), "w") as f:
        f.write('{"name": "x", "classes": ["negative", "positive", "surprise"], "folds": "loso"}')
    cfg = RunConfig(data=three, out=str(tmp_path / "r3"), schedule="smoke", width=0.125)
    assert training.run_folds(cfg, log=lambda *a: None) == 2
    err = capsys.readouterr().err
    assert "manifest.csv has labels 0..3, but" in err and "names 3 classes" in err
    assert not (tmp_path / "r3" / "fold01").exists()


def test_a_fold_reads_its_shards_ahead_where_the_tpu_is_compiled(caffe_env, tmp_path):
    """A fold's train net reads through HDF5PrefetchData (layers/) under the project's Caffe,
    through Caffe's HDF5Data with --tpu-impl python (a Caffe without layers/ has neither);
    the run's own net, which the run record hashes, keeps HDF5Data either way."""
    from google.protobuf import text_format
    from run_folds_helpers import make_data
    import psn.fold_setup as T
    from psn.caffe_proto import caffe_pb2
    from psn.config import RunConfig
    data = make_data(str(tmp_path / "data"))
    for impl, want in (("cpp", "HDF5PrefetchData"), ("python", "HDF5Data")):
        cfg = RunConfig(data=data, out=str(tmp_path / impl), width=0.125, schedule="smoke",
                        tpu_impl=impl)
        fold_dir = str(tmp_path / impl / "fold01")
        os.makedirs(fold_dir)
        T.prepare_fold(cfg, 1, fold_dir)
        net = caffe_pb2.NetParameter()
        with open(os.path.join(fold_dir, "train_val.prototxt")) as f:
            text_format.Merge(f.read(), net)
        data_layers = [l for l in net.layer if l.hdf5_data_param.source]
        assert [l.type for l in data_layers] == [want, want]
        assert {l.type for l in T.run_train_net(cfg).layer if l.hdf5_data_param.source} == {
            "HDF5Data"}
