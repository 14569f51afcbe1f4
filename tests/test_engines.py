"""psn.engines: on the CPU of a Caffe built with cuDNN, nets run on Caffe's own engines (cuDNN's
layers need a GPU at setup: the CUDA image's run_folds without --gpus aborted in
cudnn_conv_layer.cpp); on a GPU, and on a build without cuDNN, the nets stay as they are."""
import os

import pytest

from psn import engines


@pytest.fixture
def build_info(tmp_path, monkeypatch):
    def put(options):
        home = tmp_path / "caffe-home"
        home.mkdir(exist_ok=True)
        (home / "BUILD_INFO").write_text("source: x\noptions: %s\n" % options)
        monkeypatch.setenv("PSN_CAFFE_HOME", str(home))
    return put


def test_cudnn_caffe_reads_the_build_record(build_info, monkeypatch):
    build_info("cuda=1 cudnn=1 arch=-gencode arch=compute_90,code=sm_90")
    assert engines.cudnn_caffe()
    build_info("cuda=1 cudnn=0 arch=x")
    assert not engines.cudnn_caffe()
    monkeypatch.delenv("PSN_CAFFE_HOME")
    assert not engines.cudnn_caffe()


def _engines(path):
    from google.protobuf import text_format
    from psn.caffe_proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), net)
    return {getattr(l, engines.ENGINE_PARAMS[l.type]).engine for l in net.layer
            if l.type in engines.ENGINE_PARAMS}


def test_a_fold_trained_on_the_cpu_of_a_cudnn_build_uses_caffe_engines(caffe_env, build_info,
                                                                        tmp_path):
    from run_folds_helpers import make_data
    from psn.config import RunConfig
    from psn.fold_setup import prepare_fold
    data = make_data(str(tmp_path / "data"))
    for options, gpus, expect in (("cuda=1 cudnn=1", (), {engines.CAFFE_ENGINE}),
                                  ("cuda=1 cudnn=1", (0,), {0}),
                                  ("cuda=0 cudnn=0", (), {0})):
        build_info(options)
        cfg = RunConfig(data=data, out=str(tmp_path / "run"), width=0.125, schedule="smoke",
                        gpus=gpus)
        fold_dir = str(tmp_path / "run" / "fold01")
        os.makedirs(fold_dir, exist_ok=True)
        prepare_fold(cfg, 1, fold_dir)
        assert _engines(os.path.join(fold_dir, "train_val.prototxt")) == expect, (options, gpus)
        # The deploy net is written as trained on a GPU; prediction on the CPU converts it.
        deploy = os.path.join(fold_dir, "deploy.prototxt")
        assert _engines(deploy) == {0}
        with engines.cpu_net_file(deploy) as path:
            assert _engines(path) == ({engines.CAFFE_ENGINE} if "cudnn=1" in options else {0})
            import caffe
            caffe.set_mode_cpu()
            assert caffe.Net(path, caffe.TEST).blobs      # this CPU build runs it
