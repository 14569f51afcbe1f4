"""W_m's initial gain from the training clips: the TPU's memory across frames without change.

Eq. 9, h_t = tanh(W_m (tp_t h~_t) + b_m), is the only way the state reaches the next frame, so
at a frame where nothing moves (tp_t = the sensor noise over the clip's rms) W_m tp_t h~_t must
still be of unit scale, or h_t falls to tanh(b_m) and the clip's past is forgotten. How small
tp is there depends on the data: on clean clips with strong moving content the still frames'
tp is 1/30 of a change's, on noise-dominated clips it is as large as a change's. One fixed
gain cannot serve both (a gain of 32 or 80 keeps the state on the first and saturates h on the
second: docs/temporal_stream.md), so the gain is set from the training clips:

    tp_ref = min(NetConfig.tp_ref_rms, median over the training clips' frames 1..T-1 of tp)
    W_m ~ N(0, (1 / (sqrt(H) tp_ref temporal_norm_rms))^2)

tp measured as the net measures it (Eq. 7 on the centred, rms-normalised input), in units of
the normalised clip's rms. NetConfig.tp_ref_rms (0.5: a change of half the clip's rms) stays
the ceiling, so clips whose typical frame moves keep the data-free gain of 8. Only the TPU in
mode TPU with the per-clip normalisation has W_m scaled by tp; for every other net this module
changes nothing (NetConfig.tp_ref_from_data = False also turns it off).
"""
import math

import numpy as np

# Clips read per fold for the median: a sample is enough for a median, and it bounds the time
# (the demo's training shards hold ~100 clips; the paper's folds ~580).
MAX_CLIPS = 200


def applies(cfg):
    """Whether W_m's gain depends on tp for this net (and so is set from the data)."""
    return (cfg.arch == "psn" and cfg.tp_ref_from_data and cfg.streams in ("both", "temporal")
            and cfg.recurrent == "TPU" and cfg.tpu_mode == "TPU" and cfg.temporal_norm == "rms")


def input_name(cfg):
    """The shard dataset the temporal stream reads: raw frames, or E for PSN_swap."""
    return "sparse" if cfg.swap else "raw"


def gray_levels(x, cfg):
    """Clips of that dataset, (K, T, C, S, S), as the stream's input in gray levels, (K, T, D):
    raw frames minus 128, or E times 255 (psn.nets inputs_to_rows)."""
    g = x.astype(np.float64) * 255.0 if cfg.swap else x.astype(np.float64) - 128.0
    return g.reshape(g.shape[:2] + (-1,))


def frame_tp(g, cfg):
    """Eq. 7 at frames 1..T-1 of clips g (K, T, D) in gray levels, in units of the clip's rms
    after the net's normalisation (centring cancels in x_t - x_{t-1}; the scale does not matter
    since the net's eps is in the same gray levels): (K, T-1)."""
    if cfg.temporal_centre:
        g = g - g.mean(axis=1, keepdims=True)
    ms = (g ** 2).mean(axis=(1, 2))
    tp = np.diff(g, axis=1).std(axis=2)
    return tp / np.sqrt(ms + cfg.temporal_norm_eps ** 2)[:, None]


def median_tp(shards, cfg, max_clips=MAX_CLIPS):
    """The median tp over the frames of up to max_clips clips of the shards, in their order."""
    import h5py
    tps, n = [], 0
    for path in shards:
        with h5py.File(path, "r") as f:
            x = f[input_name(cfg)]
            k = min(x.shape[0], max_clips - n)
            for i in range(0, k, 8):
                tps.append(frame_tp(gray_levels(x[i:min(k, i + 8)], cfg), cfg).ravel())
            n += k
        if n >= max_clips:
            break
    if not tps:
        raise ValueError("no clips in %s" % ", ".join(shards))
    return float(np.median(np.concatenate(tps)))


def tp_ref(cfg, shards):
    """(tp_ref in units of the clip's rms, the median it came from or None)."""
    if not applies(cfg):
        return cfg.tp_ref_rms, None
    median = median_tp(shards, cfg)
    return from_median(cfg, median), median


def from_median(cfg, median):
    """tp_ref for a training set whose median tp is `median`."""
    return min(cfg.tp_ref_rms, max(median, TP_FLOOR))


# A floor on tp_ref: a training set of identical frames has tp 0 everywhere (nothing to learn
# from time), and the gain must stay finite.
TP_FLOOR = 0.01


def modulation_std(hidden, tp_ref_rms, cfg):
    """W_m's filler std: W_m (tp h~) of unit scale at tp = tp_ref_rms of the clip's rms."""
    return 1.0 / (math.sqrt(hidden) * tp_ref_rms * cfg.temporal_norm_rms)


def set_gain(net_param, tp_ref_rms, cfg):
    """Write W_m's filler into a NetParameter's TPU layers (before any Python-layer swap)."""
    for layer in net_param.layer:
        if layer.type == "TPU":
            filler = layer.tpu_param.modulation_weight_filler
            filler.type = "gaussian"
            filler.std = modulation_std(layer.recurrent_param.num_output, tp_ref_rms, cfg)


def set_from_data(net_param, cfg, shards, log=None):
    """Set W_m's gain of a train net from its training shards (where it applies); returns
    (tp_ref_rms used, median tp or None). `log` gets one line saying what was chosen."""
    ref, median = tp_ref(cfg, shards)
    if median is not None:
        set_gain(net_param, ref, cfg)
        if log:
            log("TPU W_m gain from the training clips: median tp %.3g of the clip's rms, "
                "unit modulation at tp %.3g (gain %.3g)" % (median, ref, 1.0 / ref / cfg.temporal_norm_rms))
    return ref, median
