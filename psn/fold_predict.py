"""A trained fold's held-out clips through its deploy net: foldKK/predictions.csv."""
import os

from preprocessing.layout import DataFolder, RunFolder
from psn.caffe_train import done_weights
from psn.config import RunError
from psn.fold_setup import input_shards
from psn.predictions import clip_probabilities, write_predictions



def predict_fold(cfg, fold, manifest, log):
    import caffe
    import h5py
    import numpy as np

    run = RunFolder(cfg.out)
    fold_dir = run.fold_dir(fold)
    out_path = run.fold_predictions(fold)
    if os.path.exists(out_path):
        return out_path
    weights = done_weights(fold_dir)
    if not os.path.exists(weights):
        raise RunError("%s names %s, which does not exist: delete DONE to train fold %d again"
                       % (run.done(fold), weights, fold))
    net = caffe.Net(os.path.join(fold_dir, "deploy.prototxt"), weights, caffe.TEST)
    rows = []
    for shard in input_shards(cfg, DataFolder(cfg.data).fold_shards(fold)["test"]):
        with h5py.File(shard, "r") as f:
            clip_prob = clip_probabilities(net, f["raw"], f["sparse"], f["cont"])
            if not np.isfinite(clip_prob).all():
                raise RunError("fold %d gives non-finite probabilities on %s: its weights (%s) or "
                               "that shard are damaged" % (fold, shard, weights))
            for i, p in enumerate(clip_prob):
                m = manifest[int(f["clip_index"][i])]
                rows.append([m["database"], m["subject"], m["clip"], fold,
                             int(f["clip_label"][i]), int(p.argmax())]
                            + ["%.6f" % v for v in p])
    write_predictions(out_path, rows)
    log("fold %02d: predicted %d clips" % (fold, len(rows)))
    return out_path
