"""PSN and every variant of docs/design.md §3 as Caffe nets, generated with pycaffe's NetSpec.

    python -m psn.nets [--out prototxt] [--check]

writes prototxt/<model>/{train_val,deploy,solver}.prototxt for each model in
MODELS; ``--check`` only compares them with the checked-in files (the test
suite does the same). ``build(model, ...)`` returns the NetParameters, which
tools/run_folds.py uses for other widths or batch sizes.

Data flow of every net (docs/design.md §2):
  HDF5Data (or Input in deploy): raw (N,T,3,112,112) uint8 values, sparse (N,T,1,112,112),
  label (N,T), cont (N,T), clip-major as the HDF5 shards store them
  -> time-major rows (row = t*N + n, Caffe's recurrent convention) by Slice on the
     time axis + Concat on the batch axis (stock Caffe has no Permute layer)
  -> spatial stream on E frames (Table 1) -> 80 x 4096
  -> temporal stream on raw frames minus their clip's mean frame, brought to an rms of 0.25 per
     clip (docs/temporal_stream.md): TPU over (T, N, D) -> FC 4096 per step -> 80 x 4096
  -> fusion (SUM / PROD / CONCAT) -> reshape 80 x C x 4 x 4 -> 1x1 conv to 4 maps
     (+ReLU, dropout) -> 80 x 64 -> FC -> 80 x 4 -> SoftmaxWithLoss on per-frame labels.
"""
import argparse
import copy
import json
import math
import os
import sys
from dataclasses import dataclass, replace

from preprocessing.labels import CLASSES
from preprocessing.sampling import CROP, N_SAMPLED

# The layer types that read a net's HDF5 shards: Caffe's HDF5Data, which the nets here are
# written with, and the project's HDF5PrefetchData (layers/: the same rows, read ahead on a
# thread of its own), which a fold's train net uses under the project's Caffe
# (psn.fold_setup.prefetch_data).
HDF5_DATA = "HDF5Data"
PREFETCH_DATA = "HDF5PrefetchData"
DATA_LAYERS = (HDF5_DATA, PREFETCH_DATA)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOTXT_DIR = os.path.join(ROOT, "prototxt")
NUM_CLASSES = len(CLASSES)   # the paper's 4; a protocol with other classes sets num_classes
CLIPS_PER_BATCH = 5          # paper section 4.1: 5 clips of 16 frames, 80 rows per batch
DEMO_WIDTH = 0.125           # the CPU demo's channel multiplier (the synthetic database's nets)


@dataclass(frozen=True)
class NetConfig:
    backbone: str = "alexnet"     # alexnet | vgg16 | resnet10
    fusion: str = "sum"           # sum | prod | concat
    streams: str = "both"         # both | spatial | temporal
    swap: bool = False            # exchange the two streams' inputs (PSN_swap)
    recurrent: str = "TPU"        # TPU | RNN (Caffe's own layer: AlexNet+RNN)
    tpu_mode: str = "TPU"         # TPU | TP1 | RNN (tpu_param.mode)
    head: str = "conv"            # conv (1x1 conv 4 maps) | fc (FC 4096->64: PSN_no_conv)
    hidden: int = 512             # TPU num_output (not given in the paper)
    # The temporal stream's input scale and the recurrent layer's initialisation
    # (docs/temporal_stream.md says why and what else was measured):
    temporal_centre: bool = True  # subtract each clip's mean frame (identity) from its frames
    temporal_scale: float = 1.0 / 8   # then x = (gray level - 128 [- clip mean]) * scale
    temporal_norm: str = "rms"    # rms: then x * temporal_norm_rms / the clip's own rms over
                                  # its T frames (input scale out of learning) | none
    temporal_norm_eps: float = 4.0    # gray levels added (in quadrature) to that rms: a
                                      # clip fainter than that stays in fixed units (and a
                                      # clip whose frames are all equal gives 0, not 0 / 0)
    temporal_norm_rms: float = 0.25   # the rms a clip's input is brought to
    rec_init: str = "xavier"      # xavier: per matrix | tiny: N(0, 1e-4) for all (1st release)
    tp_ref: float = 3.2           # gray levels: W_m ~ N(0, (1 / (sqrt(H) tp_ref scale))^2)
    tp_ref_rms: float = 0.5       # with temporal_norm rms, tp in units of the clip's rms:
                                  # W_m ~ N(0, (1 / (sqrt(H) tp_ref_rms temporal_norm_rms))^2)
    tp_ref_from_data: bool = True  # lower tp_ref_rms to the training clips' median tp where
                                   # that is smaller (psn.tp_gain: memory across still frames)
    # PSN_swap: each stream gets the other's input, scaled so both carry signal at the start:
    swap_spatial_scale: float = 1.0 / 64  # raw frames (gray - 128) into the spatial stream
    swap_temporal_scale: float = 1.0      # E (gray levels, mostly < 1) into the temporal one
    first_tp: str = "ZERO"        # tp at a clip's first frame: ZERO | ONE | NEXT
    frames: int = N_SAMPLED       # T (16)
    frame: str = "all"            # all: the clip's T frames | apex: only the sampled frame
                                  # nearest the apex (T = 1; run_folds derives its shards)
    batch: int = CLIPS_PER_BATCH  # N clips per batch
    size: int = CROP
    flow_size: int = 28           # the flow nets' input side (preprocessing.flow.FLOW_SIZE)
    width: float = 1.0            # channel multiplier (the CPU demo uses DEMO_WIDTH)
    dropout: float = 0.5
    num_classes: int = NUM_CLASSES   # outputs of fc_cls: the data's protocol decides (MEGC: 3)
    # psn: the nets above | ststnet, off_apexnet: the optical-flow baselines on the onset-to-apex
    # flow shards (preprocess.py run --flow; one 3 x 28 x 28 row per clip, width ignored)
    arch: str = "psn"
    description: str = ""


MODELS = {
    "psn": NetConfig(description="PSN: AlexNet spatial stream on E + TPU on raw frames, SUM fusion"),
    "psn_spatial": NetConfig(streams="spatial", description="PSN_spatial: spatial stream only"),
    "psn_temporal": NetConfig(streams="temporal", description="PSN_temporal: temporal stream only"),
    "psn_swap": NetConfig(swap=True, description="PSN_swap: spatial stream on raw frames, TPU on E"),
    "psn_tp1": NetConfig(tpu_mode="TP1", description="PSN_tp1: TPU with tp = 1"),
    "alexnet_rnn": NetConfig(recurrent="RNN", description="AlexNet+RNN: Caffe's RNN layer instead of TPU"),
    "psn_no_conv": NetConfig(head="fc", description="PSN_no_conv: FC 4096->64 instead of the 1x1 conv"),
    "psn_prod": NetConfig(fusion="prod", description="PSN with PROD fusion (Table 9: AlexNet/PROD)"),
    "psn_concat": NetConfig(fusion="concat", description="PSN with CONCAT fusion (Table 9: AlexNet/CONCAT)"),
    "spatial_apex": NetConfig(streams="spatial", frame="apex", frames=1,
                              description="Fig. 10: the spatial stream on E of the apex frame alone"),
    # Table 5's optical-flow baselines, trained here on PSN's folds (docs/flow.md):
    "ststnet": NetConfig(arch="ststnet", frames=1, batch=256, dropout=0.0,
                         description="STSTNet (Liong et al. 2019): three parallel 3x3 convolutions "
                                     "(3, 5, 8 maps) on u, v and strain, pooling, one FC"),
    "off_apexnet": NetConfig(arch="off_apexnet", frames=1, batch=64,
                             description="OFF-ApexNet (Gan et al. 2019): two conv streams on u and "
                                         "v, FC 1024, FC 1024"),
}
# The flow nets' own optimiser settings, used in place of the schedules named on the left
# (PSN's SGD schedule would not be theirs; the demo's: the same optimiser over the same number
# of epochs of the demo's smaller folds): prototxt/schedules/<name>.json says where each value
# comes from.
OWN_SCHEDULES = {"ststnet": {"paper": "ststnet", "demo": "ststnet_demo"},
                 "off_apexnet": {"paper": "off_apexnet", "demo": "off_apexnet_demo"}}


# NetConfig fields that only the optical-flow nets read (arch names which net it is).
FLOW_ONLY_FIELDS = ("arch", "flow_size")


def reads_flow(cfg):
    """Whether a NetConfig's net reads the flow shards (an optical-flow baseline)."""
    return cfg.arch != "psn"


def own_schedule(model, schedule):
    """The schedule a model trains with when `schedule` is asked for (OWN_SCHEDULES)."""
    return OWN_SCHEDULES.get(model, {}).get(schedule, schedule)
for _bb in ("vgg16", "resnet10"):
    for _fu in ("sum", "prod", "concat"):
        MODELS["%s_%s" % (_bb, _fu)] = NetConfig(
            backbone=_bb, fusion=_fu,
            description="Table 9: %s spatial backbone, %s fusion" % (_bb.upper(), _fu.upper()))

SCHEDULE_DIR = os.path.join(PROTOTXT_DIR, "schedules")


def read_schedule(path):
    """A schedule file's SolverParameter fields (keys starting with '_' are its notes)."""
    with open(path) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


# The checked-in solvers: the paper's schedule (prototxt/schedules/paper.json, every training
# field, with why) plus what a solver file needs to run from the repository root.
SOLVER_DEFAULTS = dict(read_schedule(os.path.join(SCHEDULE_DIR, "paper.json")),
                       test_iter=13, snapshot_prefix="snapshots/psn", random_seed=1701,
                       solver_mode="GPU")


def _caffe():
    # NetSpec and caffe_pb2 only: pycaffe's compiled module is not needed (psn.caffe_proto).
    from psn.caffe_proto import caffe_pb2, net_spec
    spec = net_spec()
    return spec.layers, spec.params, caffe_pb2, spec.NetSpec


def _w(cfg, channels):
    return max(8, int(round(channels * cfg.width)))


def _feat_dim(cfg):
    # 4096 at full width; always a multiple of 16 so it reshapes to C x 4 x 4.
    return max(16, int(round(4096 * cfg.width / 16)) * 16)


class _Builder:
    def __init__(self, cfg):
        self.cfg = cfg
        self.L, self.P, self.pb, net_spec = _caffe()
        self.n = net_spec()

    # -------------------------------------------------------------- helpers
    def weights(self):
        return dict(weight_filler=dict(type="xavier"), bias_filler=dict(type="constant", value=0))

    def learn(self):
        return [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]

    def conv(self, name, bottom, num_output, kernel, pad, stride, relu=True, bias=True,
             filler=None):
        L, n = self.L, self.n
        filler = filler or dict(type="xavier")
        kw = dict(num_output=num_output, kernel_size=kernel, pad=pad, stride=stride,
                  weight_filler=dict(filler))
        if bias:
            kw.update(bias_filler=dict(type="constant", value=0), param=self.learn())
        else:
            kw.update(bias_term=False, param=[dict(lr_mult=1, decay_mult=1)])
        n[name] = L.Convolution(bottom, **kw)
        if relu:
            n["relu_" + name] = L.ReLU(n[name], in_place=True)
        return n[name]

    def pool(self, name, bottom, kernel, pad, stride, method="MAX"):
        self.n[name] = self.L.Pooling(bottom, pool=getattr(self.P.Pooling, method),
                                      kernel_size=kernel, pad=pad, stride=stride)
        return self.n[name]

    def fc(self, name, bottom, num_output, relu=True, axis=1):
        L, n = self.L, self.n
        n[name] = L.InnerProduct(bottom, num_output=num_output, axis=axis,
                                 param=self.learn(), **self.weights())
        if relu:
            n["relu_" + name] = L.ReLU(n[name], in_place=True)
        return n[name]

    def reshape(self, name, bottom, dims):
        self.n[name] = self.L.Reshape(bottom, reshape_param=dict(shape=dict(dim=list(dims))))
        return self.n[name]

    def time_major(self, name, bottom, trailing):
        """(N, T, ...) -> (T*N, ...) with row = t*N + n: Slice over T, Concat over N."""
        T = self.cfg.frames
        if T == 1:      # pycaffe's one-top Slice is no tuple; (N, 1, ...) is already rows
            return self.reshape(name + "_rows", bottom, [-1] + list(trailing))
        slices = self.L.Slice(bottom, slice_param=dict(axis=1), ntop=T)
        for t, s in enumerate(slices):
            self.n["%s_t%02d" % (name, t)] = s
        self.n[name + "_tm"] = self.L.Concat(*slices, concat_param=dict(axis=0))
        return self.reshape(name + "_rows", self.n[name + "_tm"], [-1] + list(trailing))

    # -------------------------------------------------------------- streams
    def inputs_to_rows(self, raw, sparse, cont, use):
        """The inputs a variant uses, as time-major rows; the others go to a Silence layer
        (an unconsumed blob would be a net output, which Caffe logs element by element)."""
        n, s = self.n, self.cfg.size
        rows = {}
        # Both streams work in gray levels, as the paper's 0-255 frames would give: raw pixels
        # centred on 128 (Caffe's classic mean subtraction), and E, which the shards store for
        # frames in [0, 1], times 255 (RPCA is scale-equivariant). The scale matters to the TPU:
        # tp = std(x_t - x_{t-1}) multiplies h~, and micro-motion in [0, 1] units is ~0.005,
        # which would leave the unit's output almost independent of its input.
        if "raw" in use:
            n.raw_scaled = self.L.Power(raw, power_param=dict(scale=1.0, shift=-128.0))
            rows["raw"] = self.time_major("raw", n.raw_scaled, (3, s, s))
        if "sparse" in use:
            n.sparse_scaled = self.L.Power(sparse, power_param=dict(scale=255.0))
            rows["sparse"] = self.time_major("sparse", n.sparse_scaled, (1, s, s))
        if "cont" in use:
            cont_rows = self.time_major("cont", cont, ())
            n.cont_tn = self.L.Reshape(cont_rows, reshape_param=dict(
                shape=dict(dim=[self.cfg.frames, -1])))
            rows["cont"] = n.cont_tn
        unused = [b for name, b in (("raw", raw), ("sparse", sparse), ("cont", cont))
                  if name not in use]
        if unused:
            n.silence_unused = self.L.Silence(*unused, ntop=0)
        return rows

    def spatial(self, rows):
        return getattr(self, "spatial_" + self.cfg.backbone)(rows)

    def spatial_alexnet(self, x):
        # Table 1 exactly: no LRN, ReLU after each conv and the FC.
        c = self.cfg
        x = self.conv("conv1", x, _w(c, 96), 7, 1, 2)
        x = self.pool("pool1", x, 3, 1, 2)
        x = self.conv("conv2", x, _w(c, 256), 5, 2, 2)
        x = self.pool("pool2", x, 3, 1, 2)
        x = self.conv("conv3", x, _w(c, 384), 3, 1, 1)
        x = self.conv("conv4", x, _w(c, 256), 3, 1, 1)
        x = self.conv("conv5", x, _w(c, 256), 3, 1, 1)
        x = self.pool("pool5", x, 3, 1, 2)
        return self.fc("fc_spatial", x, _feat_dim(c))

    def spatial_vgg16(self, x):
        c = self.cfg
        blocks = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
        for b, (ch, reps) in enumerate(blocks, 1):
            for r in range(1, reps + 1):
                # 13 ReLU layers: xavier halves the signal's variance at each, leaving the
                # spatial stream at ~1/20 of the temporal one at the fusion; msra (He et al.)
                # keeps it.
                x = self.conv("conv%d_%d" % (b, r), x, _w(c, ch), 3, 1, 1,
                              filler=dict(type="msra", variance_norm=self.P.Filler.AVERAGE))
            x = self.pool("pool%d" % b, x, 2, 0, 2)
        return self.fc("fc_spatial", x, _feat_dim(c))

    def bn(self, name, x, relu):
        n, L = self.n, self.L
        # BatchNorm picks batch statistics in TRAIN and the running ones in TEST.
        n["bn_" + name] = L.BatchNorm(x, in_place=True,
                                      param=[dict(lr_mult=0, decay_mult=0)] * 3)
        n["scale_" + name] = L.Scale(x, in_place=True, bias_term=True)
        if relu:
            n["relu_" + name] = L.ReLU(x, in_place=True)
        return x

    def spatial_resnet10(self, x):
        c = self.cfg
        x = self.bn("conv1", self.conv("conv1", x, _w(c, 64), 7, 3, 2, relu=False, bias=False), True)
        x = self.pool("pool1", x, 3, 0, 2)
        in_ch = _w(c, 64)
        for stage, ch in enumerate((64, 128, 256, 512), 1):
            out_ch, stride = _w(c, ch), (1 if stage == 1 else 2)
            name = "res%d" % (stage + 1)
            y = self.bn(name + "a", self.conv(name + "a", x, out_ch, 3, 1, stride, relu=False,
                                              bias=False), True)
            y = self.bn(name + "b", self.conv(name + "b", y, out_ch, 3, 1, 1, relu=False,
                                              bias=False), False)
            if stride != 1 or in_ch != out_ch:
                x = self.bn(name + "_proj", self.conv(name + "_proj", x, out_ch, 1, 0, stride,
                                                      relu=False, bias=False), False)
            self.n[name] = self.L.Eltwise(x, y, operation=self.P.Eltwise.SUM)
            self.n["relu_" + name] = self.L.ReLU(self.n[name], in_place=True)
            x, in_ch = self.n[name], out_ch
        self.n.pool_global = self.L.Pooling(x, pool=self.P.Pooling.AVE, global_pooling=True)
        return self.fc("fc_spatial", self.n.pool_global, _feat_dim(c))

    def clip_centre(self, rows):
        """x_t minus its clip's mean frame, per pixel, with stock layers: time-major rows as
        (1, T, N*C*S, S), a fixed 1x1 convolution averaging the T channels, Tile, Eltwise."""
        c, n, L = self.cfg, self.n, self.L
        n.centre_in = L.Reshape(rows, reshape_param=dict(shape=dict(dim=[1, c.frames, -1, c.size])))
        n.clip_mean = L.Convolution(n.centre_in, num_output=1, kernel_size=1, bias_term=False,
                                    weight_filler=dict(type="constant", value=1.0 / c.frames),
                                    param=[dict(lr_mult=0, decay_mult=0)])
        n.clip_mean_t = L.Tile(n.clip_mean, tile_param=dict(axis=1, tiles=c.frames))
        n.centred = L.Eltwise(n.centre_in, n.clip_mean_t, operation=self.P.Eltwise.SUM,
                              coeff=[1, -1])
        return n.centred

    def clip_normalise(self, frames, eps, target):
        """target * x / sqrt(mean over the clip's T x D values of x^2 + eps^2), per clip, with stock
        layers on (T, N, D): Power, Reduction (mean over D), a fixed 1x1 convolution (mean
        over T), Power (^-1/2), Tile, Scale."""
        c, n, L = self.cfg, self.n, self.L
        n.norm_sq = L.Power(frames, power_param=dict(power=2.0))
        n.norm_ms_tn = L.Reduction(n.norm_sq, reduction_param=dict(
            operation=self.P.Reduction.MEAN, axis=2))
        n.norm_ms_t = L.Reshape(n.norm_ms_tn, reshape_param=dict(
            shape=dict(dim=[1, c.frames, -1, 1])))
        n.norm_ms = L.Convolution(n.norm_ms_t, num_output=1, kernel_size=1, bias_term=False,
                                  weight_filler=dict(type="constant", value=1.0 / c.frames),
                                  param=[dict(lr_mult=0, decay_mult=0)])
        # (shift + scale * ms)^(-1/2) = target / sqrt(ms + eps^2)
        n.norm_inv = L.Power(n.norm_ms, power_param=dict(
            power=-0.5, scale=1.0 / target ** 2, shift=(eps / target) ** 2))
        n.norm_inv_n = L.Reshape(n.norm_inv, reshape_param=dict(shape=dict(dim=[1, -1])))
        n.norm_inv_tn = L.Tile(n.norm_inv_n, tile_param=dict(axis=0, tiles=c.frames))
        n.frames_norm = L.Scale(frames, n.norm_inv_tn, scale_param=dict(axis=0))
        return n.frames_norm

    def temporal(self, rows, cont_tn, channels):
        c, n, L = self.cfg, self.n, self.L
        D = channels * c.size * c.size
        H = _w(c, c.hidden)
        scale = c.swap_temporal_scale if c.swap else c.temporal_scale
        if scale != 1.0:
            n.temporal_in = L.Power(rows, power_param=dict(scale=scale))
            rows = n.temporal_in
        if c.temporal_centre:
            # Raw frames are mostly who the person is; the clip's mean frame is that part.
            # Removing it leaves tp unchanged (it cancels in x_t - x_{t-1}) and lets W_I see
            # the motion (docs/temporal_stream.md: the demo's PSN_temporal 0.40 -> 0.83).
            rows = self.clip_centre(rows)
        n.frames_tnd = self.L.Reshape(rows, reshape_param=dict(shape=dict(dim=[c.frames, -1, D])))
        frames = n.frames_tnd
        if c.temporal_norm == "rms":
            # Learning must not depend on how large or strong the moving content is: x/8
            # alone saturated tanh and clipped every step on large bright content and left
            # faint small content near zero (docs/temporal_stream.md: the mechanism, and the
            # grid of benchmarks/temporal_grid.py).
            frames = self.clip_normalise(frames, c.temporal_norm_eps * scale, c.temporal_norm_rms)
        elif c.temporal_norm != "none":
            raise ValueError("temporal_norm must be none or rms, got %r" % c.temporal_norm)
        bias = dict(type="constant", value=0)
        tpu_param = dict(mode=getattr(self.P.TPU, c.tpu_mode),
                         first_tp=getattr(self.P.TPU, c.first_tp))
        if c.rec_init == "tiny":
            # The first release: one N(0, 1e-4) for all weights keeps W_I x near unit scale
            # over D = 37632 gray levels but shrinks every H x H product ~4000-fold.
            rp = dict(num_output=H, weight_filler=dict(type="gaussian", std=1e-4),
                      bias_filler=bias)
        elif c.rec_init == "xavier":
            # Caffe's xavier takes each matrix's own fan-in (D for W_I, H for W_H and W_O),
            # so one filler gives unit-scale products in both: the same for Caffe's RNN.
            # W_m multiplies tp * h~, and tp is a frame difference in the input's units: W_m
            # starts at gain 1 / tp_ref (in the net's units), so that W_m (tp h~) has unit
            # scale at tp = tp_ref: tp_ref_rms times the clip's rms with the normalisation
            # (gain 8: a change of half the clip's own rms), tp_ref gray levels without.
            # In mode TP1 tp is 1 and W_m keeps xavier's unit gain.
            rp = dict(num_output=H, weight_filler=dict(type="xavier"), bias_filler=bias)
            if c.tpu_mode == "TPU":
                tpu_param["modulation_weight_filler"] = dict(
                    type="gaussian", std=1.0 / (math.sqrt(H) * tp_unit(c)))
        else:
            raise ValueError("rec_init must be tiny or xavier, got %r" % c.rec_init)
        if c.recurrent == "RNN":
            n.rnn = L.RNN(frames, cont_tn, recurrent_param=rp)
            rec = n.rnn
        else:
            n.tpu = L.TPU(frames, cont_tn, recurrent_param=rp, tpu_param=tpu_param)
            rec = n.tpu
        x = self.fc("fc_temporal", rec, _feat_dim(c), axis=2)   # T x N x 4096
        return self.reshape("temporal_rows", x, [-1, _feat_dim(c)])

    def head(self, fused, channels):
        c, n, L = self.cfg, self.n, self.L
        if c.head == "fc":
            x = self.fc("fc_fuse", fused, 64)
        else:
            self.reshape("fused_maps", fused, [0, channels // 16, 4, 4])
            x = self.conv("conv_fuse", n.fused_maps, 4, 1, 0, 1)
        n.drop_fuse = L.Dropout(x, dropout_ratio=c.dropout, in_place=True)
        n.fuse64 = L.Flatten(x) if c.head == "conv" else x
        return self.fc("fc_cls", n.fuse64, self.cfg.num_classes, relu=False)

    # -------------------------------------------------------------- nets
    def body(self, raw, sparse, cont):
        c, n, L, P = self.cfg, self.n, self.L, self.P
        spatial_in, temporal_in, temporal_ch = "sparse", "raw", 3
        if c.swap:
            spatial_in, temporal_in, temporal_ch = "raw", "sparse", 1
        use = set()
        if c.streams in ("both", "spatial"):
            use.add(spatial_in)
        if c.streams in ("both", "temporal"):
            use.update((temporal_in, "cont"))
        rows = self.inputs_to_rows(raw, sparse, cont, use)
        feats = []
        if c.streams in ("both", "spatial"):
            x = rows[spatial_in]
            if c.swap:
                n.spatial_in = L.Power(x, power_param=dict(scale=c.swap_spatial_scale))
                x = n.spatial_in
            feats.append(self.spatial(x))
        if c.streams in ("both", "temporal"):
            feats.append(self.temporal(rows[temporal_in], rows["cont"], temporal_ch))
        F = _feat_dim(c)
        if len(feats) == 1:
            fused, channels = feats[0], F
        elif c.fusion == "concat":
            n.fusion = L.Concat(*feats, concat_param=dict(axis=1))
            fused, channels = n.fusion, 2 * F
        else:
            # Eq. 10: F = F_temporal + F_spatial (SUM, PSN's own); PROD and CONCAT are
            # Table 9's alternatives.
            op = P.Eltwise.SUM if c.fusion == "sum" else P.Eltwise.PROD
            n.fusion = L.Eltwise(*feats, operation=op)
            fused, channels = n.fusion, F
        return self.head(fused, channels)

    # -------------------------------------------------------------- optical-flow baselines
    def flow_body(self, flow):
        """STSTNet or OFF-ApexNet on the flow rows (N, 3, 28, 28): u, v, strain."""
        c, n, L = self.cfg, self.n, self.L
        if c.arch == "ststnet":
            # Three streams on all three channels (its "three-dimensional" kernels), each
            # conv 3x3 + ReLU + max 3x3/3 (28 -> 10), concatenated, mean 2x2/2 (-> 5), FC.
            maps = []
            for name, k in (("a", 3), ("b", 5), ("c", 8)):
                x = self.conv("conv_%s" % name, flow, k, 3, 1, 1)
                maps.append(self.pool("pool_%s" % name, x, 3, 1, 3))
            n.streams = L.Concat(*maps, concat_param=dict(axis=1))
            x = self.pool("pool_mean", n.streams, 2, 0, 2, method="AVE")
            return self.fc("fc_cls", x, c.num_classes, relu=False)
        # OFF-ApexNet: u and v each through conv 5x5 (6) + max 2x2, conv 5x5 (16) + max 2x2
        # (28 -> 14 -> 7), flattened and joined, FC 1024, FC 1024 (dropout), FC to the classes.
        n.flow_u, n.flow_v, n.flow_strain = L.Slice(flow, slice_param=dict(axis=1), ntop=3)
        n.silence_strain = L.Silence(n.flow_strain, ntop=0)
        feats = []
        for name, x in (("u", n.flow_u), ("v", n.flow_v)):
            x = self.conv("conv1_%s" % name, x, 6, 5, 2, 1)
            x = self.pool("pool1_%s" % name, x, 2, 0, 2)
            x = self.conv("conv2_%s" % name, x, 16, 5, 2, 1)
            x = self.pool("pool2_%s" % name, x, 2, 0, 2)
            n["flat_%s" % name] = L.Flatten(x)
            feats.append(n["flat_%s" % name])
        n.joined = L.Concat(*feats, concat_param=dict(axis=1))
        x = self.fc("fc1", n.joined, 1024)
        n.drop1 = L.Dropout(x, dropout_ratio=c.dropout, in_place=True)
        x = self.fc("fc2", x, 1024)
        n.drop2 = L.Dropout(x, dropout_ratio=c.dropout, in_place=True)
        return self.fc("fc_cls", x, c.num_classes, relu=False)

    def flow_train_val(self, train_source, test_source):
        c, n, L = self.cfg, self.n, self.L
        n.flow, n.label = L.HDF5Data(
            hdf5_data_param=dict(source=train_source, batch_size=c.batch, shuffle=True),
            include=dict(phase=self.pb.TRAIN), ntop=2)
        logits = self.flow_body(n.flow)
        n.label_rows = L.Reshape(n.label, reshape_param=dict(shape=dict(dim=[-1])))
        n.loss = L.SoftmaxWithLoss(logits, n.label_rows)
        n.accuracy = L.Accuracy(logits, n.label_rows)
        return self._with_test_layer(n.to_proto(), test_source)

    def flow_deploy(self):
        c, n, L = self.cfg, self.n, self.L
        n.flow = L.Input(input_param=dict(shape=dict(dim=[c.batch, 3, c.flow_size, c.flow_size])))
        n.prob = L.Softmax(self.flow_body(n.flow))
        return n.to_proto()

    def _with_test_layer(self, net, test_source):
        """The TEST-phase data layer: the train one's tops, the held-out group's list."""
        test = copy.deepcopy(net.layer[0])
        test.name = "data_test"
        test.hdf5_data_param.source = test_source
        test.hdf5_data_param.shuffle = False
        test.include[0].phase = self.pb.TEST
        net.layer[0].name = "data"
        net.layer.insert(1, test)
        return net

    def train_val(self, train_source, test_source):
        c, n, L = self.cfg, self.n, self.L
        if reads_flow(c):
            return self.flow_train_val(train_source, test_source)
        n.raw, n.sparse, n.label, n.cont = L.HDF5Data(
            hdf5_data_param=dict(source=train_source, batch_size=c.batch, shuffle=True),
            include=dict(phase=self.pb.TRAIN), ntop=4)
        logits = self.body(n.raw, n.sparse, n.cont)
        label_rows = self.time_major("label", n.label, ())
        n.loss = L.SoftmaxWithLoss(logits, label_rows)    # Eq. 11-12, on every frame row
        n.accuracy = L.Accuracy(logits, label_rows)
        return self._with_test_layer(n.to_proto(), test_source)

    def deploy(self):
        c, n, L = self.cfg, self.n, self.L
        if reads_flow(c):
            return self.flow_deploy()
        s, T, N = c.size, c.frames, c.batch
        n.raw = L.Input(input_param=dict(shape=dict(dim=[N, T, 3, s, s])))
        n.sparse = L.Input(input_param=dict(shape=dict(dim=[N, T, 1, s, s])))
        n.cont = L.Input(input_param=dict(shape=dict(dim=[N, T])))
        logits = self.body(n.raw, n.sparse, n.cont)
        n.prob = L.Softmax(logits)
        return n.to_proto()


def tp_unit(cfg):
    """The tp (in the recurrent layer's input units) at which W_m (tp h~) starts at unit
    scale: tp_ref_rms of the clip's rms with the per-clip normalisation, tp_ref gray levels
    without (W_m's gain is its inverse)."""
    if cfg.temporal_norm == "rms":
        return cfg.tp_ref_rms * cfg.temporal_norm_rms
    scale = cfg.swap_temporal_scale if cfg.swap else cfg.temporal_scale
    return cfg.tp_ref * scale


def parse_overrides(items):
    """{field: value} from ["temporal_centre=0", "tp_ref=6.4", ...], typed by NetConfig's
    fields; ValueError naming the item for an unknown field or a value of the wrong type."""
    from dataclasses import fields
    types = {f.name: f.type for f in fields(NetConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise ValueError("--net %s: expected FIELD=VALUE with FIELD one of %s"
                             % (item, ", ".join(sorted(types))))
        # A comma list would make a text field's value swallow the fields after it.
        if any(part.partition("=")[0].strip() in types for part in value.split(",")[1:]):
            raise ValueError("--net %s: one FIELD=VALUE a flag: repeat --net for each field"
                             % item)
        kind = types[key] if isinstance(types[key], str) else types[key].__name__
        try:
            if kind == "bool":
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                out[key] = value.lower() in ("1", "true", "yes")
            elif kind == "int":
                out[key] = int(value)
            elif kind == "float":
                out[key] = float(value)
            else:
                out[key] = value
        except ValueError:
            raise ValueError("--net %s: %s takes a %s value" % (item, key, kind)) from None
    return out


# The values each NetConfig field of a fixed set may take (check_config).
CHOICES = {"backbone": ("alexnet", "vgg16", "resnet10"), "fusion": ("sum", "prod", "concat"),
           "streams": ("both", "spatial", "temporal"), "recurrent": ("TPU", "RNN"),
           "tpu_mode": ("TPU", "TP1", "RNN"), "head": ("conv", "fc"),
           "temporal_norm": ("rms", "none"), "rec_init": ("xavier", "tiny"),
           "first_tp": ("ZERO", "ONE", "NEXT"), "frame": ("all", "apex"),
           "arch": ("psn", "ststnet", "off_apexnet")}


def check_config(cfg):
    """ValueError naming the field and what it may be, for a NetConfig no net can be built
    from (a misspelt choice fell through to another branch; a count below 1 was clamped)."""
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ValueError("%s must be one of %s, got %r" % (key, ", ".join(allowed),
                                                                getattr(cfg, key)))
    for key in ("hidden", "batch", "num_classes"):
        if getattr(cfg, key) < (2 if key == "num_classes" else 1):
            raise ValueError("%s must be at least %d, got %r" % (
                key, 2 if key == "num_classes" else 1, getattr(cfg, key)))
    if not cfg.width > 0:
        raise ValueError("width must be positive, got %r" % cfg.width)
    if not 0 <= cfg.dropout < 1:
        raise ValueError("dropout must be in [0, 1), got %r" % cfg.dropout)
    if cfg.temporal_norm == "rms" and not cfg.temporal_norm_eps > 0:
        raise ValueError("temporal_norm_eps must be > 0 (gray levels; a still clip would give "
                         "0 / 0), got %r" % cfg.temporal_norm_eps)
    if cfg.frame == "apex" and (cfg.frames != 1 or cfg.streams != "spatial"):
        raise ValueError("frame=apex is the single-frame spatial net: frames=1, streams=spatial")
    if reads_flow(cfg):
        if cfg.frames != 1 or cfg.frame != "all":
            raise ValueError("arch=%s reads one flow row per clip: frames=1" % cfg.arch)
        return cfg
    if cfg.frame == "all" and cfg.frames != N_SAMPLED:
        raise ValueError("frames must be %d, the frames a shard holds per clip (or 1 with "
                         "frame=apex), got %r" % (N_SAMPLED, cfg.frames))
    return cfg


def build(model, width=1.0, batch=None, train_source=None, test_source=None, **overrides):
    """(train_val NetParameter, deploy NetParameter, SolverParameter) for a model."""
    cfg = MODELS[model] if isinstance(model, str) else model
    cfg = replace(cfg, width=width, **overrides)
    if batch:
        cfg = replace(cfg, batch=batch)
    check_config(cfg)
    name = model if isinstance(model, str) else "custom"
    tv = _Builder(cfg).train_val(train_source or "data/psn/folds/fold01/train.txt",
                                 test_source or "data/psn/folds/fold01/test.txt")
    tv.name = name
    dp = _Builder(cfg).deploy()
    dp.name = name
    pb = _caffe()[2]
    solver = pb.SolverParameter()
    for key, value in SOLVER_DEFAULTS.items():
        if key == "solver_mode":
            solver.solver_mode = pb.SolverParameter.GPU
        elif key == "test_iter":
            solver.test_iter.append(value)
        else:
            setattr(solver, key, value)
    if reads_flow(cfg) and name in OWN_SCHEDULES:
        # The checked-in solver shows the net's own optimiser, not PSN's SGD.
        for key, value in read_schedule(os.path.join(SCHEDULE_DIR, own_schedule(name, "paper")
                                                     + ".json")).items():
            setattr(solver, key, value)
    solver.net = "prototxt/%s/train_val.prototxt" % name
    solver.snapshot_prefix = "snapshots/%s" % name
    return tv, dp, solver


def header(model):
    cfg = MODELS[model]
    return ("# %s\n# Generated by `python -m psn.nets` (psn/nets.py) from MODELS['%s']: edit the\n"
            "# generator, not this file; tests/test_nets.py fails when they differ.\n"
            % (cfg.description, model))


def render(model):
    """{filename: text} for one model's checked-in files."""
    from google.protobuf import text_format
    tv, dp, solver = build(model)
    h = header(model)
    return {
        "train_val.prototxt": h + text_format.MessageToString(tv),
        "deploy.prototxt": h + text_format.MessageToString(dp),
        "solver.prototxt": h + text_format.MessageToString(solver),
    }


def main(argv=None):
    from psn.env import ensure_caffe
    ensure_caffe()  # console scripts start without the --print-env exports
    ap = argparse.ArgumentParser(description="Generate the checked-in nets in prototxt/.")
    ap.add_argument("--out", default=PROTOTXT_DIR)
    ap.add_argument("--check", action="store_true",
                    help="compare with the files in --out instead of writing; exit 1 if any differs")
    ap.add_argument("models", nargs="*", default=sorted(MODELS))
    args = ap.parse_args(argv)
    stale = []
    for model in args.models:
        for fname, text in render(model).items():
            path = os.path.join(args.out, model, fname)
            if args.check:
                try:
                    with open(path) as f:
                        same = f.read() == text
                except FileNotFoundError:
                    same = False
                if not same:
                    stale.append(path)
            else:
                from preprocessing.atomic import write_atomic
                write_atomic(path, text)
    if args.check and stale:
        print("out of date (run python -m psn.nets):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    if not args.check:
        print("wrote %d models to %s" % (len(args.models), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
