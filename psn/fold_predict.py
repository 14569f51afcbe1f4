"""A trained fold's held-out clips through its deploy net: foldKK/predictions.csv."""
import contextlib
import os

from preprocessing.atomic import write_atomic
from preprocessing.layout import DataFolder, RunFolder
from psn.caffe_train import done_weights
from psn.config import RunError
from psn.fold_setup import fold_nets, input_shards, net_overrides_for_data
from psn.net_files import check_net
from psn.predictions import clip_probabilities, write_predictions


def write_deploy(cfg, path):
    """A fold's deploy.prototxt as psn.fold_setup.prepare_fold wrote it (the deploy net does
    not depend on the fold), for one deleted after training."""
    from google.protobuf import text_format
    _, dp, _ = fold_nets(cfg.model, cfg.width, cfg.batch, "TRAIN_LIST", "TEST_LIST",
                         cfg.tpu_impl, net_overrides_for_data(cfg))
    write_atomic(path, text_format.MessageToString(dp))


def _deploy(cfg, fold, log):
    """The fold's deploy.prototxt, written again from the run's settings when deleted."""
    deploy = os.path.join(RunFolder(cfg.out).fold_dir(fold), "deploy.prototxt")
    if not os.path.exists(deploy):
        write_deploy(cfg, deploy)
        log("fold %02d: wrote %s again from the run's settings" % (fold, deploy))
    return deploy


class FoldNet:
    """A fold's deploy net, read and built once, into which weights are loaded one file after
    another (every snapshot of a fold shares it). Where pycaffe does not import (a host with
    the caffe binary but no Boost.Python), each weights file is exported to ONNX in memory and
    run in onnxruntime instead (psn.onnx_export: the same probabilities within 1e-6)."""

    _AGAIN = "delete it and run the same command: run_folds writes it again from the run's settings"

    def __init__(self, cfg, fold, deploy):
        from psn.caffe_proto import pycaffe
        from psn.net_files import deploy_shapes
        self.cfg, self.fold, self.deploy = cfg, fold, deploy
        self.caffe = pycaffe()
        self.shapes = (deploy_shapes(deploy, "fix it, or " + self._AGAIN)
                       if self.caffe is not None else None)
        self.net = None

    def _weights_fix(self):
        return ("run the same command without --predict-only: run_folds sets the damaged "
                "weights aside and trains fold %d again" % self.fold)

    def load(self, weights):
        """Something with clip_probabilities(raw, sparse, cont) for the net with `weights` in
        it. pycaffe aborts the whole process on a broken net or weights (the other folds would
        not be predicted): check_net finds those faults first."""
        if self.caffe is None:
            return self._onnx(weights)
        check_net(self.deploy, weights, deploy_fix="fix it, or " + self._AGAIN,
                  weights_fix=self._weights_fix(),
                  mismatch_fix="if its deploy net was edited, " + self._AGAIN,
                  net_shapes=self.shapes)
        if self.net is None:
            from psn.engines import cpu_net_file
            with (contextlib.nullcontext(self.deploy) if self.cfg.gpus
                  else cpu_net_file(self.deploy)) as deploy:
                self.net = self.caffe.Net(deploy, weights, self.caffe.TEST)
        else:
            self.net.copy_from(weights)
        return _CaffeNet(self.net)

    def _onnx(self, weights):
        from psn.onnx_export import ExportError, export_net
        from psn.onnx_run import OnnxModel, OnnxModelError
        from onnx.checker import ValidationError
        try:
            return OnnxModel(export_net(self.deploy, weights).SerializeToString(), name=weights)
        except ValidationError as e:
            raise RunError("%s: its ONNX export does not check (%s); predict with pycaffe, or "
                           "report it with the deploy.prototxt" % (weights, e))
        except (ExportError, OnnxModelError, ValueError) as e:
            raise RunError("%s (fold %d, predicting without pycaffe through onnxruntime); if the "
                           "weights are damaged: %s" % (e, self.fold, self._weights_fix()))


class _CaffeNet:
    def __init__(self, net):
        self.net = net

    def clip_probabilities(self, raw=None, sparse=None, cont=None, **inputs):
        return clip_probabilities(self.net, raw, sparse, cont, **inputs)


# What a shard may feed a deploy net: frames, E and cont (PSN's nets), or flow (the baselines).
INPUT_DATASETS = ("raw", "sparse", "cont", "flow")


def predict_weights(cfg, fold, fold_net, weights, manifest, shards=None):
    """Prediction rows (predictions.csv's columns) of the fold's test clips (or of `shards`, the
    data folder's) through weights, loaded into fold_net (a FoldNet)."""
    import h5py
    import numpy as np

    net = fold_net.load(weights)
    rows = []
    if shards is None:
        shards = DataFolder(cfg.data).fold_shards(fold)["test"]
    for shard in input_shards(cfg, shards):
        with h5py.File(shard, "r") as f:
            clip_prob = net.clip_probabilities(**{k: f[k] for k in INPUT_DATASETS if k in f})
            if not np.isfinite(clip_prob).all():
                raise RunError("fold %d gives non-finite probabilities on %s: its weights (%s) or "
                               "that shard are damaged" % (fold, shard, weights))
            for i, p in enumerate(clip_prob):
                m = manifest[int(f["clip_index"][i])]
                rows.append([m["database"], m["subject"], m["clip"], fold,
                             int(f["clip_label"][i]), int(p.argmax())]
                            + ["%.6f" % v for v in p])
    return rows


def predict_fold(cfg, fold, manifest, log):
    """foldKK/predictions.csv from the weights DONE names (kept when already there)."""
    run = RunFolder(cfg.out)
    fold_dir = run.fold_dir(fold)
    out_path = run.fold_predictions(fold)
    deploy = _deploy(cfg, fold, log)
    if os.path.exists(out_path):
        return out_path
    weights = done_weights(fold_dir)
    if not os.path.exists(weights):
        raise RunError("%s names %s, which does not exist: delete DONE to train fold %d again"
                       % (run.done(fold), weights, fold))
    rows = predict_weights(cfg, fold, FoldNet(cfg, fold, deploy), weights, manifest)
    write_predictions(out_path, rows)
    log("fold %02d: predicted %d clips" % (fold, len(rows)))
    return out_path


def predict_iterations(cfg, fold, manifest, log, split="test"):
    """{iteration: predictions csv} of the fold's test clips (split 'val': its validation
    groups', psn.validation) through every snapshot's weights, each written once into
    foldKK/by_iteration/ (a snapshot written again after it is predicted again)."""
    from psn.caffe_train import snapshots
    run = RunFolder(cfg.out)
    deploy = _deploy(cfg, fold, log)
    shards = None
    if split == "val":
        from psn.validation import split_train
        shards = split_train(cfg.data, fold, cfg.val_groups, [])[1]
    out, new, fold_net = {}, 0, None
    for iteration, weights in sorted(snapshots(run.fold_dir(fold), "caffemodel")):
        path = run.iteration_predictions(fold, iteration, split)
        if not (os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(weights)):
            fold_net = fold_net or FoldNet(cfg, fold, deploy)
            write_predictions(path, predict_weights(cfg, fold, fold_net, weights, manifest, shards))
            new += 1
        out[iteration] = path
    if new:
        log("fold %02d: predicted the %s clips at %d snapshot iteration(s)" % (fold, split, new))
    return out
