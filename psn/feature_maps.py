"""Fig. 8: what a trained fold's spatial stream computes on one clip: the maps of its first
and fifth convolutional layers (after ReLU) at the frame nearest the clip's apex, beside the
raw frame and E that the frame's rows hold."""
import os

import numpy as np

from preprocessing.contact_sheet import named_clips
from preprocessing.layout import DataFolder, RunFolder
from preprocessing.manifest import apex_frame
from psn.config import RunError

__all__ = ["find_clip", "layer_maps", "write_feature_maps", "LAYERS"]

LAYERS = ("conv1", "conv5")


def find_clip(data_dir, fold, name):
    """(shard path, row, manifest row, held out by the fold?) of a clip of a data folder,
    from the fold's test shards first (a clip the fold never trained on), else any shard."""
    import h5py
    folder = DataFolder(data_dir)
    row = named_clips(folder.manifest_rows(), [name], folder.manifest)[0]
    lists = folder.fold_shards(fold)
    for held_out, shards in ((True, lists["test"]), (False, lists["train"])):
        for shard in shards:
            if shard.endswith("_aug.h5"):
                continue
            with h5py.File(shard, "r") as f:
                hits = np.flatnonzero(f["clip_index"][()] == int(row["index"]))
            if len(hits):
                return shard, int(hits[0]), row, held_out
    raise RunError("clip %s is in no shard of fold %d of %s" % (name, fold, data_dir))


def layer_maps(net, raw, sparse, cont, frame, layers=LAYERS):
    """{layer: (C, h, w)} of one clip's frame: the clip fills every slot of the deploy net's
    batch (rows are time-major, so its frame t is row t*N)."""
    N = net.blobs["raw"].data.shape[0]
    for blob, value in (("raw", raw), ("sparse", sparse), ("cont", cont)):
        net.blobs[blob].data[...] = np.repeat(np.asarray(value)[None], N, axis=0)
    net.forward()
    missing = [name for name in layers if name not in net.blobs]
    if missing:
        raise RunError("the net has no blob %s: Fig. 8 shows the AlexNet spatial stream of "
                       "PSN's models" % ", ".join(missing))
    return {name: net.blobs[name].data[frame * N].copy() for name in layers}


def write_feature_maps(run_dir, data_dir, fold, clip, png):
    """Draw Fig. 8 for a clip with fold `fold` of a run; returns what it drew (clip, class,
    frame, held_out, channels and zero share per layer)."""
    import caffe
    import h5py
    from psn import plots
    from psn.caffe_train import done_weights
    run = RunFolder(run_dir)
    fold_dir = run.fold_dir(fold)
    if not os.path.exists(run.done(fold)):
        raise RunError("fold %d of %s is not trained: train it (run_folds --folds %d) or choose "
                       "another --fold" % (fold, run_dir, fold))
    shard, k, row, held_out = find_clip(data_dir, fold, clip)
    frame = apex_frame(row)
    with h5py.File(shard, "r") as f:
        raw, sparse, cont = f["raw"][k], f["sparse"][k], f["cont"][k]
    from psn.engines import cpu_net_file     # on the CPU: not cuDNN's layers (psn.engines)
    with cpu_net_file(os.path.join(fold_dir, "deploy.prototxt")) as deploy:
        net = caffe.Net(deploy, done_weights(fold_dir), caffe.TEST)
    maps = layer_maps(net, raw, sparse, cont, frame)
    title = "%s/%s, frame %d of 16: %s" % (row["subject"], row["clip"], frame + 1,
                                            ", ".join("%s (%d maps)" % (n, len(m))
                                                      for n, m in maps.items()))
    plots.feature_grid(raw[frame].transpose(1, 2, 0), sparse[frame, 0], maps, png, title)
    return {"clip": "%s/%s" % (row["subject"], row["clip"]),
            "class": DataFolder(data_dir).classes()[int(row["label"])],
            "frame": frame, "held_out": held_out,
            "channels": {n: int(m.shape[0]) for n, m in maps.items()},
            "zero_share": {n: float(np.mean(m <= 0)) for n, m in maps.items()}}
