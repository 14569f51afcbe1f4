"""The paper's tables and figures as named experiments: what each one trains, on which
preprocessing, and which writer lays out its result beside the paper's values.

    tools/run_psn.sh --experiment table9 [--quick] [--schedule paper --width 1 --gpus 0,1]
    tools/run_psn.sh --list-experiments

An experiment is a plan (a list of Need: a model of psn.nets on a RPCA setting of the preprocessing) and
a writer (psn.report.experiments). run_experiments preprocesses what the plans need (every
RPCA setting of Fig. 10 from one reading of each clip's frames and face), trains each Need
with psn.training.run_folds in a run folder named by model, width, schedule and RPCA setting, so
that a run two experiments share is trained once and a rerun finishes only what is missing,
and writes OUT/experiments/<name>/ (<name>.md, .csv, .png and the full report of its runs).
"""
import os
import time
from dataclasses import dataclass, field

from preprocessing.layout import RunFolder, run_name
from psn.config import PAPER_DATABASES
from psn.config import FIXED_LAMBDA, RunConfig, RunError, rpca_setting, rpca_setting_suffix

__all__ = ["Need", "Experiment", "Setting", "EXPERIMENTS", "FIG7_MODELS", "TABLE9_MODELS",
           "FIG10_LEVELS", "plan", "stage", "check_setting", "run_experiments",
           "describe"]

# The conditions of the paper's Fig. 7, in its order.
FIG7_MODELS = ("psn", "psn_spatial", "psn_temporal", "psn_swap", "psn_tp1", "alexnet_rnn",
               "psn_no_conv")
# Table 9's rows in its order: spatial backbone x fusion (psn is AlexNet + SUM).
TABLE9_MODELS = ("psn", "psn_prod", "psn_concat", "vgg16_sum", "vgg16_prod", "vgg16_concat",
                 "resnet10_sum", "resnet10_prod", "resnet10_concat")
# Table 5's optical-flow baselines, retrained on PSN's folds (their input: preprocess --flow).
FLOW_BASELINES = ("ststnet", "off_apexnet")
# Fig. 10's retention levels: the centre of each 10 % bin of non-zeros in E (0-10 %, ...).
FIG10_LEVELS = (0.05, 0.15, 0.25, 0.35, 0.45)
# The single-frame net sees one frame per clip: 16 clips a batch (PSN's 5 clips are 80 rows).
APEX_BATCH = 16
# The paper's Table 6 has a row for each of these.


def _options(key):
    from preprocessing.clip_chain import Options
    if key is None:
        return Options()
    return Options(sparsity=None) if key == FIXED_LAMBDA else Options(sparsity=key)


def _order(key):
    return (0, 0) if key is None else (1, 0) if key == FIXED_LAMBDA else (2, key)


@dataclass(frozen=True)
class Need:
    """One training run an experiment needs: a model on a RPCA setting of the preprocessing (rpca_setting():
    None the default preprocessing, FIXED_LAMBDA, or lambda per clip for a share)."""
    model: str
    sparsity: float | str | None = None
    batch: int | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    models: tuple = ()               # on the default preprocessing
    per_database: bool = False       # needs every database of the paper (real data)
    sweep: bool = False              # Fig. 10: the single-frame net at every level
    trains: bool = True


EXPERIMENTS = {e.name: e for e in (
    Experiment("table5", "Table 5: PSN's RR and F1 on the 650 clips, beside the paper's, and "
               "the optical-flow baselines trained here on the same folds",
               models=("psn",) + FLOW_BASELINES),
    Experiment("table6", "Table 6: UF1 and UAR per database", models=("psn",),
               per_database=True),
    Experiment("table7", "Table 7: PSN's confusion matrix over all clips", models=("psn",)),
    Experiment("fig6", "Fig. 6: RR, TPR and TNR per class for each database",
               models=("psn",), per_database=True),
    Experiment("fig7", "Fig. 7: the ablation (seven conditions and the majority class)",
               models=FIG7_MODELS),
    Experiment("table9", "Table 9: spatial backbone x fusion (RR mean, RR std, F1)",
               models=TABLE9_MODELS),
    Experiment("fig8", "Fig. 8: feature maps of conv1 and conv5 for a clip", models=("psn",)),
    Experiment("fig10", "Fig. 10: RR and F1 of the apex frame's E against RPCA retention",
               sweep=True),
    Experiment("fig3", "Fig. 3: raw frames and E of chosen clips", trains=False),
)}


@dataclass(frozen=True)
class Setting:
    """What the experiments of one invocation share (psn.main builds it from its flags)."""
    out: str                         # working folder: data*/, runs/, experiments/
    roots: dict                      # {database: folder} (the synthetic ones on the demo)
    synthetic: bool = False
    schedule: str = "paper"
    width: float = 1.0
    gpus: tuple = ()
    jobs: int = 1
    seed: int = 0
    loso: bool = False
    workers: int | None = None
    net_overrides: dict = field(default_factory=dict)
    quick: bool = False              # one fold per run: a fast look, not a result
    levels: tuple = FIG10_LEVELS     # fig10
    clips: tuple = ()                # fig3 / fig8: clip names (default: chosen by class)
    fold: int = 1                    # fig8: the trained fold whose weights are shown
    partial: bool = False            # table6 / fig6 with fewer databases than the paper's

    def data_dir(self, sparsity=None):
        return os.path.join(self.out, "data" + rpca_setting_suffix(rpca_setting(sparsity)))

    def run_dir(self, need):
        return os.path.join(self.out, "runs", run_name(need.model, self.width, self.schedule,
                                                       rpca_setting_suffix(rpca_setting(need.sparsity))))

    def run_config(self, need):
        kw = {"batch": need.batch} if need.batch else {}
        return RunConfig(data=self.data_dir(need.sparsity), out=self.run_dir(need),
                         model=need.model, schedule=self.schedule, width=self.width,
                         net_overrides=self.net_overrides, seed=self.seed, gpus=self.gpus,
                         jobs=self.jobs, folds=(1,) if self.quick else None, **kw)


def plan(name, setting):
    """The Needs of one experiment, in the order its writer lays them out."""
    exp = EXPERIMENTS[name]
    needs = [Need(m) for m in exp.models]
    if exp.sweep:
        # The fixed lambda's apex run is the reference beside the levels.
        needs = [Need("spatial_apex", FIXED_LAMBDA, APEX_BATCH)]
        needs += [Need("spatial_apex", rpca_setting(level), APEX_BATCH) for level in setting.levels]
    return needs


def describe():
    """One line per experiment: name, title, what it trains."""
    lines = []
    for e in EXPERIMENTS.values():
        what = ("no training" if not e.trains else
                "spatial_apex at %s non-zeros in E" % ", ".join("%d %%" % round(100 * v)
                                                                  for v in FIG10_LEVELS)
                if e.sweep else ", ".join(e.models))
        lines.append("%-7s %s [%s]" % (e.name, e.title, what))
    return lines


def check_setting(names, setting):
    """RunError (one line) for an unknown experiment, a missing database, a bad level or
    fold, before anything runs."""
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown or not names:
        raise RunError("unknown experiment %s: choose from %s (tools/run_psn.sh "
                       "--list-experiments)" % (", ".join(map(repr, unknown)) or "''",
                                                ", ".join(EXPERIMENTS)))
    for name in names:
        if EXPERIMENTS[name].per_database and not setting.synthetic and not setting.partial:
            missing = [d for d in PAPER_DATABASES if d not in setting.roots]
            if missing:
                raise RunError("%s compares the paper's databases one by one and needs %s too: "
                               "add %s, or give --partial to report only the databases given"
                               % (name, ", ".join(missing),
                                  " ".join("--%s DIR" % d for d in missing)))
    bad = [v for v in setting.levels if not 0 < v < 1]
    if bad or len(set(setting.levels)) != len(setting.levels) or not setting.levels:
        raise RunError("--levels: give distinct shares of non-zeros in E between 0 and 1 "
                       "(e.g. 0.05,0.15,0.25), got %s" % ",".join("%g" % v for v in setting.levels))
    if setting.fold < 1 or (setting.quick and setting.fold != 1):
        raise RunError("--fold %d: fig8 shows a trained fold; --quick trains fold 1 only"
                       % setting.fold)


def _preprocess(setting, sparsities, log, flow=False):
    """Every RPCA setting of the preprocessing the plans need (with the optical flow where a flow
    net is among them); {setting key: InputError} for those that produced nothing (a level
    whose every clip was excluded)."""
    from preprocessing.flow import FlowParams
    from preprocessing.pipeline import run, run_rpca_settings
    kw = dict(loso=setting.loso, seed=setting.seed, workers=setting.workers)
    if sparsities == {None}:
        run(setting.roots, setting.data_dir(), flow=FlowParams() if flow else None, **kw)
        return {}
    order = sorted(sparsities, key=_order)
    settings = [(setting.data_dir(s), _options(s)) for s in order]
    results = run_rpca_settings(setting.roots, settings, log=log, **kw)
    if flow:
        # The flow nets read the default preprocessing only: its folder gets the flow (every
        # clip's E is cached by now), the other levels' do not.
        results[os.path.abspath(setting.data_dir())] = run(
            setting.roots, setting.data_dir(), log=log, flow=FlowParams(), **kw)
    failed = {}
    for s in order:
        res = results[os.path.abspath(setting.data_dir(s))]
        if isinstance(res, Exception):
            if s is None:
                raise res
            failed[s] = res
    return failed


def stage(title):
    """The banner that opens each stage of run_psn.sh's output."""
    print("\n=== %s [%s]" % (title, time.strftime("%H:%M:%S")), flush=True)


def run_experiments(names, setting, log=print):
    """Preprocess, train and write the named experiments; returns {name: folder written}.
    A run with failing folds is reported and the experiment written from the folds that
    finished; a Fig. 10 level that leaves no clip is named and left out of the figure."""
    from psn import training
    from psn.report.experiments import WRITERS
    check_setting(names, setting)
    needs, seen = [], set()
    for name in names:
        for need in plan(name, setting):
            if need not in seen:
                seen.add(need)
                needs.append(need)
    # Every run's configuration is checked before the first stage starts.
    configs = {need: setting.run_config(need) for need in needs}
    sparsities = {None} | {n.sparsity for n in needs}
    stage("preprocessing -> %s" % ", ".join(
        setting.data_dir(s) for s in sorted(sparsities, key=_order)))
    from psn.nets import MODELS, reads_flow
    failed_levels = _preprocess(setting, sparsities, log,
                                flow=any(reads_flow(MODELS[n.model]) for n in needs))
    for s, exc in sorted(failed_levels.items(), key=lambda kv: _order(kv[0])):
        print("fig10: the level %s leaves no clip: %s"
              % ("with the fixed lambda" if s == FIXED_LAMBDA else "%g" % s, exc), flush=True)
    runs = {}
    for need in needs:
        if need.sparsity in failed_levels:
            continue
        cfg = configs[need]
        stage("training %s%s (width %g, schedule %s)%s -> %s" % (
            need.model, "" if need.sparsity is None else " with the fixed lambda"
            if need.sparsity == FIXED_LAMBDA else " at %g non-zeros" % need.sparsity,
            setting.width, os.path.basename(setting.schedule),
            " [quick: fold 1 only]" if setting.quick else "", cfg.out))
        if training.run_folds(cfg):
            print("experiments: %s had failing folds (see above); the experiment uses the "
                  "folds that finished" % cfg.out, flush=True)
        if os.path.exists(RunFolder(cfg.out).predictions):
            runs[need] = cfg.out
    written = {}
    for name in names:
        out_dir = os.path.join(setting.out, "experiments", name)
        stage("writing %s -> %s" % (name, out_dir))
        mine = {n: runs[n] for n in plan(name, setting) if n in runs}
        if EXPERIMENTS[name].trains and not mine:
            print("experiments: %s has no finished run to write from" % name, flush=True)
            continue
        written[name] = WRITERS[name](setting, mine, out_dir,
                                      failed={n: failed_levels[n] for n in failed_levels})
        print("wrote %s" % written[name], flush=True)
    return written
