"""One configuration: the paper's constants and the typed settings of a training run.

The constants are defined once, by the module that owns each (the preprocessing stage that
produces a quantity defines it), and gathered here so that a reader finds them in one place:

    CLASSES          the 4 classes of Table 3 (preprocessing.labels)
    PAPER_DATABASES  the databases of Table 4: the paper protocol's (preprocessing.protocols)
    N_FRAMES         150 time-normalised frames per clip (preprocessing.sampling)
    T                16 frames the nets see per clip (preprocessing.sampling)
    CROP             112 x 112 pixels per frame (preprocessing.sampling)
    CLIPS_PER_BATCH  5 clips per batch, 80 rows of frames (psn.nets)

RunConfig holds everything that decides how `caffe train` runs on the folds of one
preprocessing output. tools/run_folds.py builds it from its flags (RunConfig.from_flags),
psn.main builds it for the demo, psn.training.run_folds takes it, and the run folder records
it (run.json: RunConfig.record plus the data's fingerprint and the provenance).
"""
import os
from dataclasses import dataclass, field, replace

from preprocessing.protocols import load_protocol
from preprocessing.labels import CLASSES
from preprocessing.rpca import DEFAULT_SPARSITY
from preprocessing.sampling import CROP, N_FRAMES
from preprocessing.sampling import N_SAMPLED as T
from psn import nets

__all__ = ["CLASSES", "PAPER_DATABASES", "N_FRAMES", "T", "CROP", "CLIPS_PER_BATCH", "RunConfig",
           "RunError", "load_schedule", "SCHEDULE_DIR", "TPU_IMPLS", "LAUNCHERS",
           "DEFAULT_SPARSITY", "FIXED_LAMBDA", "rpca_setting", "rpca_setting_suffix"]

PAPER_DATABASES = load_protocol("paper").databases
CLIPS_PER_BATCH = nets.CLIPS_PER_BATCH
TPU_IMPLS = ("cpp", "python")
LAUNCHERS = ("local", "slurm")
# --select: the ways of choosing a fold's scored weights (psn.weight_selection says each).
SELECT_MODES = ("final", "val", "oracle")
SCHEDULE_DIR = nets.SCHEDULE_DIR


# Fig. 10's reference preprocessing: RPCA with the fixed lambda 1/sqrt(12544) of the first
# releases (the default is lambda per clip for DEFAULT_SPARSITY non-zeros in E).
FIXED_LAMBDA = "lambda"


def rpca_setting(sparsity):
    """A RPCA setting of the preprocessing's canonical key: None for the pipeline's default (lambda per
    clip for DEFAULT_SPARSITY, which a level of that share is too), FIXED_LAMBDA, or a share."""
    if sparsity is None or sparsity == FIXED_LAMBDA:
        return sparsity
    return None if float(sparsity) == DEFAULT_SPARSITY else float(sparsity)


def rpca_setting_suffix(key):
    """'' for the default preprocessing, '_lambda', or '_sparsityNN': the suffix of the data
    and run folders of an RPCA setting."""
    if key is None:
        return ""
    return "_lambda" if key == FIXED_LAMBDA else "_sparsity%02d" % round(100 * key)


class RunError(Exception):
    """A run cannot go on; the message names the file or setting and the fix."""


def load_schedule(name_or_path):
    """A schedule's SolverParameter overrides: a name in prototxt/schedules or a JSON file."""
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(SCHEDULE_DIR, name_or_path + ".json")
    if not os.path.exists(path):
        names = sorted(os.path.splitext(f)[0] for f in os.listdir(SCHEDULE_DIR))
        raise RunError("unknown schedule %r: give a JSON file or one of %s" % (name_or_path, names))
    try:
        return nets.read_schedule(path)
    except ValueError as e:
        raise RunError("%s is not a JSON schedule (%s): fix it, or give one of %s"
                       % (path, e, sorted(os.path.splitext(f)[0] for f in os.listdir(SCHEDULE_DIR))))


def parse_per_gpu(text):
    """--per-gpu: a number of folds, or auto (0)."""
    if str(text).strip().lower() == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise RunError("--per-gpu takes a number of folds or auto, got %r" % text) from None


def _int_list(flag, text):
    """A comma-separated list of integers given to `flag`; RunError naming the flag."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise RunError("%s %s: give comma-separated whole numbers, e.g. %s 1,2,3"
                       % (flag, text, flag)) from None


@dataclass(frozen=True)
class RunConfig:
    """How one run trains and predicts. Paths are made absolute; `schedule` is a name in
    prototxt/schedules or a JSON file; `solver` (computed) is its SolverParameter overrides
    with max_iter applied; `net_overrides` are typed psn.nets.NetConfig fields."""
    data: str
    out: str
    model: str = "psn"
    schedule: str = "paper"
    max_iter: int | None = None
    width: float = 1.0
    batch: int | None = None     # None: the model's own (psn.nets: PSN's 5 clips, STSTNet's 256)
    net_overrides: dict = field(default_factory=dict)
    tpu_impl: str = "cpp"
    seed: int = 0
    gpus: tuple = ()
    multi_gpu: bool = False
    # Folds at once on each of `gpus` (0: as many as fit, psn.gpu_memory); changes no result.
    per_gpu: int = 1
    jobs: int = 1
    folds: tuple | None = None
    launcher: str = "local"
    train: bool = True
    predict: bool = True
    # Ways of choosing the scored weights besides the final ones (psn.weight_selection); they
    # change no training, so the run record does not hold them.
    select: tuple = ("final",)
    # Training groups of each fold held out to choose its weights on (psn.validation).
    val_groups: int = 0
    solver: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)   # noqa: E731 (frozen)
        set_("data", os.path.abspath(self.data))
        set_("out", os.path.abspath(self.out))
        set_("gpus", tuple(int(g) for g in self.gpus))
        if os.path.exists(self.schedule):        # a JSON file: found from any folder later
            set_("schedule", os.path.abspath(self.schedule))
        if self.folds is not None:
            set_("folds", tuple(int(f) for f in self.folds))
        if self.tpu_impl not in TPU_IMPLS:
            raise RunError("tpu_impl must be one of %s, got %r" % (TPU_IMPLS, self.tpu_impl))
        if self.launcher not in LAUNCHERS:
            raise RunError("launcher must be one of %s, got %r" % (LAUNCHERS, self.launcher))
        if self.multi_gpu and len(self.gpus) < 2:
            raise RunError("--multi-gpu needs at least two --gpus")
        if int(self.per_gpu) != 1:
            if int(self.per_gpu) < 0:
                raise RunError("--per-gpu takes a number of folds (1 or more) or auto, got %s"
                               % self.per_gpu)
            if not self.gpus or self.multi_gpu or self.launcher != "local":
                raise RunError("--per-gpu trains several folds on each of --gpus at once: it "
                               "needs --gpus, and neither --multi-gpu nor --launcher slurm "
                               "(a SLURM task trains one fold)")
        base = nets.MODELS.get(self.model)
        if self.batch is None:
            set_("batch", base.batch if base is not None else CLIPS_PER_BATCH)
        # The flow nets train with their own optimiser where PSN's paper or demo schedule is asked.
        if not os.path.exists(self.schedule):
            set_("schedule", nets.own_schedule(self.model, self.schedule))
        if self.jobs < 1 or self.batch < 1 or not self.width > 0:
            raise RunError("jobs and batch must be at least 1 and width positive, got "
                           "jobs %s, batch %s, width %s" % (self.jobs, self.batch, self.width))
        set_("select", tuple(self.select))
        unknown = [m for m in self.select if m not in SELECT_MODES]
        if unknown or not self.select:
            raise RunError("--select %s: choose from %s (comma-separated)"
                           % (",".join(self.select), ", ".join(SELECT_MODES)))
        if int(self.val_groups) < 0:
            raise RunError("--val-groups must be 0 or more, got %s" % self.val_groups)
        if "val" in self.select and not self.val_groups:
            raise RunError("--select val needs training groups held out to choose on: give "
                           "--val-groups 1 (or more)")
        if not (self.train or self.predict):
            raise RunError("a run that neither trains nor predicts does nothing")
        if self.folds is not None:
            twice = sorted({f for f in self.folds if self.folds.count(f) > 1})
            if twice or not self.folds or min(self.folds) < 1:
                raise RunError("--folds %s: give fold numbers from 1, each once"
                               % ",".join(map(str, self.folds)))
        if self.max_iter is not None and int(self.max_iter) < 1:
            raise RunError("--max-iter must be at least 1, got %s" % self.max_iter)
        checked_in = os.path.join(nets.PROTOTXT_DIR, str(self.model), "train_val.prototxt")
        if self.model not in nets.MODELS and not os.path.isfile(checked_in):
            known = sorted(set(nets.MODELS) | {d for d in os.listdir(nets.PROTOTXT_DIR)
                                              if os.path.isfile(os.path.join(nets.PROTOTXT_DIR, d,
                                                                             "train_val.prototxt"))})
            raise RunError("unknown model %r: give one of %s (the nets of psn.nets and "
                           "prototxt/)" % (self.model, ", ".join(known)))
        base = nets.MODELS.get(self.model)
        if base is not None:
            try:
                nets.check_config(replace(base, width=self.width, batch=self.batch,
                                          **self.net_overrides))
            except (ValueError, TypeError) as e:
                raise RunError("--net: %s" % e) from None
        solver = load_schedule(self.schedule)
        if self.max_iter is not None:
            solver["max_iter"] = int(self.max_iter)
        set_("solver", solver)

    @classmethod
    def from_flags(cls, args):
        """From tools/run_folds.py's parsed flags (psn.training.parse_args)."""
        return cls(data=args.data, out=args.out, model=args.model, schedule=args.schedule,
                   max_iter=args.max_iter, width=args.width, batch=args.batch,
                   net_overrides=nets.parse_overrides(args.net), tpu_impl=args.tpu_impl,
                   seed=args.seed,
                   gpus=_int_list("--gpus", args.gpus) if args.gpus else (),
                   multi_gpu=args.multi_gpu, per_gpu=parse_per_gpu(args.per_gpu), jobs=args.jobs,
                   folds=_int_list("--folds", args.folds) if args.folds else None,
                   launcher=args.launcher, train=not args.predict_only,
                   predict=not args.no_predict,
                   select=tuple(m.strip() for m in args.select.split(",") if m.strip()),
                   val_groups=args.val_groups)

    def flags(self):
        """tools/run_folds.py flags that rebuild this configuration, without the ones a SLURM
        array task sets itself (--folds, --gpus, --launcher, --no-predict, --predict-only)."""
        out = ["--data", self.data, "--model", self.model, "--out", self.out,
               "--schedule", self.schedule, "--width", repr(self.width), "--batch",
               str(self.batch), "--tpu-impl", self.tpu_impl, "--seed", str(self.seed)]
        if self.max_iter:
            out += ["--max-iter", str(self.max_iter)]
        for key, value in sorted(self.net_overrides.items()):
            out += ["--net", "%s=%s" % (key, value)]
        if self.val_groups:
            out += ["--val-groups", str(self.val_groups)]
        return out

    def record(self):
        """The settings that decide a run's results (run.json compares them on a rerun)."""
        return {"model": self.model, "width": self.width, "batch": self.batch,
                "schedule": self.solver, "net_overrides": dict(self.net_overrides),
                "tpu_impl": self.tpu_impl, "seed": self.seed,
                # only when set: runs recorded before it existed held out nothing
                **({"val_groups": int(self.val_groups)} if self.val_groups else {})}
