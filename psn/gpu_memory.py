"""How many folds train at once on one GPU (`run_folds --gpus 0 --per-gpu K|auto`).

A fold of PSN at 5 clips x 16 frames uses a small part of a modern GPU, so several folds share
one. Before any fold starts, each fold's GPU memory is estimated from the run's own net and
set against the memory nvidia-smi reports free on every GPU named; K folds that would not fit
are refused in one line, and `auto` takes the largest K that fits (never more than the folds
give each GPU).

The estimate, in float32 bytes (Caffe's Dtype):
  - the train net instantiated on the CPU, its data layers replaced by Input layers of the
    shapes its shards hold: every blob's data and diff (8 bytes a value), every parameter's
    data, diff and the solver's history (Adam and AdaDelta keep two, the others one);
  - the test net the same way, data only (it shares the train net's parameters);
  - times FOLD_MARGIN (cuDNN's convolution workspaces, cuBLAS's, allocator slack);
  - plus CONTEXT_MIB for the CUDA context, cuBLAS and cuDNN handles and their kernels, which
    every process pays once. That constant is assumed, not measured here (no GPU on the
    machine this was written on); the GPU check records what a fold really used.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile

from psn.config import RunError
from psn.nets import DATA_LAYERS

CONTEXT_MIB = 768
FOLD_MARGIN = 1.2
TWO_HISTORIES = ("Adam", "AdaDelta")
MIB = 1 << 20
# Batches HDF5PrefetchData holds (layers/include/caffe/layers/hdf5_prefetch_data_layer.hpp:
# kPrefetch filled ahead and the one in use).
PREFETCH_BATCHES = 3


def _input_net(tv, shapes):
    """NetParameter `tv` with each data layer an Input layer of its tops' `shapes`."""
    from psn.caffe_proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    net.CopyFrom(tv)
    for layer in net.layer:
        if layer.type not in DATA_LAYERS:
            continue
        batch = layer.hdf5_data_param.batch_size
        tops = list(layer.top)
        layer.ClearField("hdf5_data_param")
        layer.type = "Input"
        for top in tops:
            layer.input_param.shape.add().dim.extend([batch] + list(shapes[top]))
    return net


def _pycaffe():
    """pycaffe's module; ImportError where it does not import (a GPU bundle's host has only a
    plain-Python caffe/ folder, which imports as an empty namespace package)."""
    from psn.caffe_proto import pycaffe
    caffe = pycaffe()
    if caffe is None:
        raise ImportError("pycaffe does not import here, and a fold's memory is counted by "
                          "building its net")
    return caffe


def _counts(net_param, phase):
    """(values in blobs, values in parameters) of `net_param` built by pycaffe in `phase`."""
    caffe = _pycaffe()
    from google.protobuf import text_format
    from psn.engines import for_cpu
    folder = tempfile.mkdtemp(prefix="psn-fold-memory-")
    try:
        path = os.path.join(folder, "net.prototxt")
        with open(path, "w") as f:
            # Built on the CPU: on a cuDNN build, cuDNN's layers would abort at setup.
            f.write(text_format.MessageToString(for_cpu(net_param)))
        caffe.set_mode_cpu()
        net = caffe.Net(path, phase)
        blobs = sum(b.count for b in net.blobs.values())
        params = sum(p.count for layer in net.params.values() for p in layer)
        return blobs, params
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def shard_shapes(shard):
    """{dataset: shape of one row} of an HDF5 shard."""
    import h5py
    with h5py.File(shard, "r") as f:
        return {name: f[name].shape[1:] for name in f.keys() if hasattr(f[name], "shape")}


def fold_mib(tv, shard, solver_type="SGD"):
    """Estimated GPU memory of one fold in MiB: the run's train net `tv` (NetParameter, as
    psn.fold_setup.run_train_net writes it) reading rows shaped like `shard`'s."""
    caffe = _pycaffe()
    shapes = shard_shapes(shard)
    data_tops = {t for layer in tv.layer if layer.type in DATA_LAYERS for t in layer.top}
    missing = sorted(data_tops - set(shapes))
    if missing:
        raise RunError("%s holds no dataset %s that the net reads" % (shard, ", ".join(missing)))
    net = _input_net(tv, shapes)
    train_blobs, params = _counts(net, caffe.TRAIN)
    test_blobs, _ = _counts(net, caffe.TEST)
    histories = 2 if solver_type in TWO_HISTORIES else 1
    # HDF5PrefetchData (psn.fold_setup.prefetch_data) keeps PREFETCH_BATCHES batches of its
    # tops on the GPU, in the train net and in the test net (counted also for --tpu-impl
    # python, whose folds read through HDF5Data: tens of MiB over).
    from psn.caffe_proto import caffe_pb2
    batch_values = sum(layer.hdf5_data_param.batch_size * math.prod(shapes[t])
                       for layer in tv.layer if layer.type in DATA_LAYERS
                       and any(r.phase == caffe_pb2.TRAIN for r in layer.include)
                       for t in layer.top)
    values = (2 * train_blobs + test_blobs + (2 + histories) * params
              + 2 * PREFETCH_BATCHES * batch_values)
    return CONTEXT_MIB + FOLD_MARGIN * values * 4 / MIB


def visible_as_smi(smi_uuids, visible):
    """nvidia-smi's index of each GPU CUDA sees, in CUDA's order, read from CUDA_VISIBLE_DEVICES
    (`visible`; None when unset: all GPUs, in nvidia-smi's order) as CUDA reads it: a list of
    indices, or a list of GPU UUIDs as `nvidia-smi -L` prints them (each may be cut to its first
    characters, "GPU-" included, where they name one GPU). The first entry that names no GPU
    (an index nvidia-smi does not list, an index in a UUID list or the other way round) ends
    the list: CUDA hides it and every entry after it. A GPU named twice leaves none visible.
    `smi_uuids`: {index: UUID} from nvidia-smi. A MIG device (MIG-...) names no GPU here:
    nvidia-smi's GPU rows do not hold its memory."""
    if visible is None:
        return sorted(smi_uuids)
    entries = [e.strip() for e in visible.split(",")]
    by_uuid = entries[0].startswith("GPU-")
    found = []
    for entry in entries:
        if by_uuid:
            named = [i for i, u in smi_uuids.items() if entry.startswith("GPU-")
                     and u.startswith(entry)]
            index = named[0] if len(named) == 1 else None
        else:
            index = int(entry) if entry.isdigit() and int(entry) in smi_uuids else None
        if index is None:
            break
        if index in found:
            return []
        found.append(index)
    return found


def gpu_free_mib(ids):
    """{GPU id: (free MiB, total MiB)} from nvidia-smi for the CUDA device ids `ids` (mapped
    through CUDA_VISIBLE_DEVICES, in PCI bus order as nvidia-smi counts:
    psn.env.number_gpus_as_nvidia_smi makes CUDA count so); None where nvidia-smi is missing or
    does not answer. An id that CUDA_VISIBLE_DEVICES does not resolve to a GPU, or whose
    memory nvidia-smi does not report ([N/A]), is left out."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    memory, uuids = {}, {}
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        # Every GPU counts in CUDA's numbering, also one whose memory reads [N/A].
        uuids[int(parts[0])] = parts[1]
        if parts[2].isdigit() and parts[3].isdigit():
            memory[int(parts[0])] = (int(parts[2]) - int(parts[3]), int(parts[2]))
    physical = visible_as_smi(uuids, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return {g: memory[physical[g]] for g in ids
            if g < len(physical) and physical[g] in memory}


def plan_per_gpu(per_gpu, gpus, n_folds, need_mib, log):
    """Folds at once on each GPU: `per_gpu` (an int, or 0 for as many as fit), checked against
    each of `gpus`' free memory for `need_mib` a fold. RunError (one line) when K do not fit,
    or when `auto` has no nvidia-smi to size K by."""
    folds_each = max(1, math.ceil(n_folds / max(1, len(set(gpus)))))
    free = gpu_free_mib(sorted(set(gpus)))
    if not free or len(free) < len(set(gpus)):
        unknown = ",".join(map(str, sorted(set(gpus) - set(free or {}))))
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            unknown += " (CUDA_VISIBLE_DEVICES: %s)" % os.environ["CUDA_VISIBLE_DEVICES"]
        if per_gpu == 0:
            raise RunError("--per-gpu auto sizes K by each GPU's free memory, but nvidia-smi "
                           "does not report GPU %s: give a number (--per-gpu 2)" % unknown)
        log("nvidia-smi does not report GPU %s: %d folds at once there, not checked against its "
            "memory" % (unknown, per_gpu))
        return per_gpu
    fits = min(int(free[g][0] // need_mib) for g in set(gpus))
    if per_gpu == 0:
        if fits < 1:
            g = min(set(gpus), key=lambda g: free[g][0])
            raise RunError("GPU %d has %.1f GiB free (of %.1f GiB); one fold needs about %.1f "
                           "GiB (estimated): free that GPU or use another"
                           % (g, free[g][0] / 1024, free[g][1] / 1024, need_mib / 1024))
        k = min(fits, folds_each)
        log("--per-gpu auto: %d folds at once on each GPU (about %.1f GiB a fold, estimated; "
            "%s)" % (k, need_mib / 1024, ", ".join("GPU %d %.1f GiB free" % (g, free[g][0] / 1024)
                                                   for g in sorted(free))))
        return k
    for g in sorted(set(gpus)):
        if need_mib > free[g][0]:
            raise RunError("GPU %d has %.1f GiB free (of %.1f GiB); not even one fold fits (about "
                           "%.1f GiB, estimated from the net): free that GPU or use another"
                           % (g, free[g][0] / 1024, free[g][1] / 1024, need_mib / 1024))
        if per_gpu * need_mib > free[g][0]:
            raise RunError("GPU %d has %.1f GiB free (of %.1f GiB); %d folds at once need about "
                           "%.1f GiB (%.1f GiB a fold, estimated from the net): give --per-gpu "
                           "%d or fewer, or --per-gpu auto"
                           % (g, free[g][0] / 1024, free[g][1] / 1024, per_gpu,
                              per_gpu * need_mib / 1024, need_mib / 1024, fits))
    return per_gpu
