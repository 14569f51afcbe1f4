"""The whole pipeline in one command: data -> preprocessing -> 10-fold training -> report.

    tools/run_psn.sh                       # synthetic database, PSN on CPU, short schedule
    tools/run_psn.sh --casme2 DIR --samm DIR ... --schedule paper --width 1 --gpus 0,1,2,3

Without database flags it generates the synthetic CASME II-format database (once) and runs the
demo settings (PSN at 1/8 width, the `demo` schedule) sized for a 2-core CPU. Every stage is
resumable: rerunning the command redoes only what is missing.
"""
import argparse
import os
import sys
import time

from preprocessing.clips import LOADERS
from preprocessing.layout import RunFolder, run_name
from psn.nets import DEMO_WIDTH
from psn.experiments import EXPERIMENTS, FIG10_LEVELS, FIG7_MODELS, stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="run_psn.sh", description=__doc__.splitlines()[0])
    data = ap.add_argument_group("your databases (none given: the synthetic database)")
    for name in LOADERS:
        data.add_argument("--" + name, metavar="DIR")
    ap.add_argument("--out", default=os.path.join(ROOT, "work"),
                    help="working folder (default: work/ in the checkout)")
    ap.add_argument("--models", default="psn",
                    help="comma-separated models of prototxt/ to train, e.g. "
                         "psn,psn_spatial,psn_temporal (default psn)")
    ap.add_argument("--ablation", action="store_true",
                    help="the paper's Fig. 7 ablation: " + ", ".join(FIG7_MODELS) +
                         " (replaces --models); the report's comparison is Fig. 7")
    exp = ap.add_argument_group("the paper's tables and figures (psn/experiments.py)")
    exp.add_argument("--experiment", metavar="NAMES",
                     help="comma-separated experiments to run and write into OUT/experiments/: "
                          + ", ".join(EXPERIMENTS) + " (replaces --models and --ablation)")
    exp.add_argument("--list-experiments", action="store_true",
                     help="print each experiment and what it trains, then exit")
    exp.add_argument("--quick", action="store_true",
                     help="train fold 1 only of every run: a fast look, not a result (a later "
                          "run without --quick trains the other folds)")
    exp.add_argument("--levels", default=",".join("%g" % v for v in FIG10_LEVELS),
                     help="fig10: shares of non-zeros in E to sweep (default %(default)s: the "
                          "centres of the 0-10 %%, ..., 40-50 %% bins)")
    exp.add_argument("--clips", metavar="NAMES",
                     help="fig3 / fig8: clip names or SUBJECT/CLIP (default: one per class; "
                          "fig8 uses the first)")
    exp.add_argument("--fold", type=int, default=1, help="fig8: the trained fold shown (default 1)")
    exp.add_argument("--partial", action="store_true",
                     help="table6 / fig6: report the databases given, not all four")
    ap.add_argument("--net", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a field of every model's net configuration (run_folds "
                         "--net), e.g. temporal_centre=0")
    ap.add_argument("--jobs", type=int,
                    help="CPU: folds trained at once, one BLAS thread each (default: the "
                         "number of cores, at most 4)")
    ap.add_argument("--schedule", help="solver schedule (default: demo on the synthetic data, "
                                       "paper on yours)")
    ap.add_argument("--width", type=float,
                    help="channel multiplier (default: %g on the synthetic data, 1 on yours)"
                         % DEMO_WIDTH)
    ap.add_argument("--gpus", help="GPU ids for training as nvidia-smi numbers them, e.g. 0,1,2,3 "
                                    "(default CPU)")
    ap.add_argument("--per-gpu", default="1", metavar="K|auto",
                    help="folds at once on each of --gpus (default 1; auto: as many as fit)")
    ap.add_argument("--loso", action="store_true", help="leave-one-subject-out folds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, help="preprocessing processes (default: all cores)")
    ap.add_argument("--protocol", default="paper", metavar="NAME|JSON",
                    help="evaluation protocol (preprocessing/data/protocols, or a JSON file "
                         "in their format): paper (default), "
                         "megc2019 (SMIC-HS + CASME II + SAMM, 3 classes, leave one subject out; "
                         "without databases: synthetic trees in those three formats), casme3 "
                         "(CAS(ME)^3 part A) or casme3_ac (parts A and C)")
    ap.add_argument("--subjects", type=int,
                    help="synthetic database: subjects (default 12; 4 per database with "
                         "--protocol megc2019)")
    ap.add_argument("--clips-per-subject", type=int, default=10,
                    help="synthetic database: clips per subject")
    ap.add_argument("--synthetic", metavar="FORMATS",
                    help="synthetic databases to make, by on-disk format: casme2 (default), or "
                         "casme2,casme for a two-database run (other identities in each); with "
                         "--protocol megc2019: casme2,samm,smic")
    args = ap.parse_args(argv)
    from preprocessing import protocols
    from preprocessing.errors import InputError, fail
    try:
        # Before Caffe is looked for and any database made: a bad protocol file is one line.
        args.evaluation = protocols.load_protocol(args.protocol)
    except InputError as e:
        raise SystemExit(fail("run_psn: error: ", e)) from None
    megc = args.evaluation.name == "megc2019"
    if args.synthetic is None:
        args.synthetic = "casme2,samm,smic" if megc else "casme2"
    if args.subjects is None:
        args.subjects = 4 if megc else 12
    if args.evaluation.name != protocols.DEFAULT and (args.experiment or args.ablation):
        ap.error("--experiment and --ablation are the paper's tables and figures: they run "
                 "under --protocol paper")
    try:
        args.levels = tuple(float(v) for v in args.levels.split(",") if v.strip())
    except ValueError:
        ap.error("--levels: give shares like 0.05,0.15,0.25, got %r" % args.levels)
    from synthetic import FORMATS
    args.synthetic = [f.strip() for f in args.synthetic.split(",") if f.strip()]
    bad = [f for f in args.synthetic if f not in FORMATS]
    if bad or not args.synthetic or len(set(args.synthetic)) != len(args.synthetic):
        ap.error(f"--synthetic: give distinct formats of {', '.join(FORMATS)}, got {bad or args.synthetic}")
    return args


def make_synthetic(out, formats, subjects, clips_per_subject, seed):
    """{format: folder} of the synthetic databases (made once; reused when already there)."""
    import synthetic
    roots = {}
    for i, fmt in enumerate(formats):
        db = os.path.join(out, "synthetic_" + fmt)
        stage("1/4 synthetic %s-format database (%d subjects x %d clips) -> %s"
              % (fmt, subjects, clips_per_subject, db))
        # Another seed per format: other identities, so no face is two subjects.
        s = synthetic.generate(db, subjects, clips_per_subject, seed + i, progress=True, fmt=fmt)
        print("%s: %d clips (%s)" % (db, s["clips"], "already there" if s["skipped"] else
                                      "written in %.0f s" % s["seconds"]))
        roots[fmt] = db
    return roots


def run_named(args, out, roots, schedule, width, overrides):
    """--experiment: psn.experiments.run_experiments with this command's settings."""
    from dataclasses import replace
    from preprocessing.errors import InputError, fail
    from psn.config import RunError
    from psn.experiments import Setting, check_setting, run_experiments
    from psn.report import PredictionsError, ReportError
    t0 = time.time()
    names = [n.strip() for n in args.experiment.split(",") if n.strip()]
    try:
        setting = Setting(
            out=out, roots=roots, synthetic=not roots, schedule=schedule, width=width,
            gpus=tuple(int(g) for g in args.gpus.split(",")) if args.gpus else (),
            jobs=args.jobs or min(4, os.cpu_count() or 1), seed=args.seed, loso=args.loso,
            workers=args.workers, net_overrides=overrides, quick=args.quick,
            levels=args.levels, clips=tuple(c.strip() for c in (args.clips or "").split(",")
                                            if c.strip()),
            fold=args.fold, partial=args.partial)
        check_setting(names, setting)      # before the synthetic database is made
        if not roots:
            setting = replace(setting, roots=make_synthetic(
                out, args.synthetic, args.subjects, args.clips_per_subject, args.seed))
        written = run_experiments(names, setting)
    except KeyboardInterrupt:
        print("\ninterrupted: finished clips and folds are kept; run the same command again "
              "to resume", file=sys.stderr)
        return 130
    except (InputError, RunError, PredictionsError, ReportError, ValueError, OSError) as e:
        return fail("run_psn: error: ", e)
    print("\n%s(%.1f min in all)" % ("".join("%-7s %s\n" % kv for kv in written.items()),
                                      (time.time() - t0) / 60))
    return 0 if len(written) == len(names) else 1


def main(argv=None):
    args = parse_args(argv)
    if args.list_experiments:
        from psn.experiments import describe
        print("\n".join(describe()))
        return 0
    from psn.env import ensure_caffe
    ensure_caffe(cuda=bool(args.gpus))
    from preprocessing.errors import InputError
    from preprocessing.errors import fail
    from preprocessing.pipeline import run as preprocess
    from psn import report, training
    from psn.config import RunConfig, RunError, parse_per_gpu
    from psn.nets import parse_overrides

    t0 = time.time()
    out = os.path.abspath(args.out)
    roots = {n: getattr(args, n) for n in LOADERS if getattr(args, n)}
    synthetic = not roots
    schedule = args.schedule or ("demo" if synthetic else "paper")
    width = args.width if args.width is not None else (DEMO_WIDTH if synthetic else 1.0)
    models = FIG7_MODELS if args.ablation else [m.strip() for m in args.models.split(",")
                                                  if m.strip()]
    # Another protocol labels the clips otherwise: its own data, run and report folders.
    suffix = "" if args.evaluation.name == "paper" else "_" + args.evaluation.name
    data = os.path.join(out, "data" + suffix)
    if args.experiment:
        try:
            overrides = parse_overrides(args.net)
        except ValueError as e:
            return fail("run_psn: error: ", e)
        return run_named(args, out, roots, schedule, width, overrides)
    try:
        overrides = parse_overrides(args.net)
        # Every run's settings are checked before the first stage starts.
        configs = [(m, RunConfig(
            data=data, out=os.path.join(out, "runs", run_name(m, width, schedule, suffix)),
            model=m, schedule=schedule, width=width, net_overrides=overrides, seed=args.seed,
            gpus=[int(g) for g in args.gpus.split(",")] if args.gpus else (),
            per_gpu=parse_per_gpu(args.per_gpu),
            jobs=args.jobs or min(4, os.cpu_count() or 1))) for m in models]
        if synthetic:
            roots = make_synthetic(out, args.synthetic, args.subjects, args.clips_per_subject,
                                   args.seed)
        else:
            stage("1/4 databases: " + ", ".join("%s=%s" % kv for kv in roots.items()))
        stage("2/4 preprocessing -> %s" % data)
        from preprocessing.flow import FlowParams
        from psn.nets import MODELS, reads_flow
        # The optical-flow baselines read the onset-to-apex flow: computed beside E when asked.
        flow = any(m in MODELS and reads_flow(MODELS[m]) for m in models)
        preprocess(roots, data, loso=args.loso, seed=args.seed, workers=args.workers,
                   protocol=args.protocol, flow=FlowParams() if flow else None)
    except KeyboardInterrupt:
        print("\ninterrupted: finished clips are cached; run the same command again to resume",
              file=sys.stderr)
        return 130
    except (InputError, RunError, ValueError, FileExistsError, OSError) as e:
        return fail("run_psn: error: ", e)

    runs = []
    for model, cfg in configs:
        stage("3/4 training %s (width %g, schedule %s) on every fold -> %s"
              % (model, width, schedule, cfg.out))
        if training.run_folds(cfg):
            print("run_psn: training %s had failing folds (see above); the report uses the "
                  "folds that finished" % model, file=sys.stderr)
        if os.path.exists(RunFolder(cfg.out).predictions):
            runs.append((model, cfg.out))
    if not runs:
        print("run_psn: no predictions to report", file=sys.stderr)
        return 1

    report_dir = os.path.join(out, "report" + suffix)
    stage("4/4 report -> %s" % report_dir)
    if args.evaluation.name == "megc2019":
        try:
            report.make_megc_report(
                [RunFolder(r).predictions for _, r in runs], report_dir,
                names=[m for m, _ in runs],
                note=("**Synthetic data** (CASME II, SAMM and SMIC-HS trees drawn by synthetic/): "
                      "our row shows the pipeline works, it is not comparable with the published "
                      "rows." if synthetic else ""))
        except (report.PredictionsError, report.ReportError, OSError) as e:
            return fail("run_psn: error: ", e)
        md = os.path.join(report_dir, "megc2019.md")    # every run's row, beside the published
        with open(md) as f:
            print(f.read())
        print("\nreport: %s  (%.1f min in all)" % (md, (time.time() - t0) / 60))
        return 0
    try:
        report.make_report([RunFolder(r).predictions for _, r in runs], report_dir,
                           names=[m for m, _ in runs], logs=["%s=%s" % (m, r) for m, r in runs])
    except (report.PredictionsError, report.ReportError, OSError) as e:
        return fail("run_psn: error: ", e)
    with open(os.path.join(report_dir, "report.md")) as f:
        text = f.read()
    print(text[:3000])
    print("\nreport: %s/report.md  (%.1f min in all)" % (report_dir, (time.time() - t0) / 60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
