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

from preprocessing.clips import DATABASES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The conditions of the paper's Fig. 7, in its order.
FIG7_MODELS = ("psn", "psn_spatial", "psn_temporal", "psn_swap", "psn_tp1", "alexnet_rnn",
               "psn_no_conv")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="run_psn.sh", description=__doc__.splitlines()[0])
    data = ap.add_argument_group("your databases (none given: the synthetic database)")
    for name in DATABASES:
        data.add_argument("--" + name, metavar="DIR")
    ap.add_argument("--out", default=os.path.join(ROOT, "work"),
                    help="working folder (default: work/ in the checkout)")
    ap.add_argument("--models", default="psn",
                    help="comma-separated models of prototxt/ to train, e.g. "
                         "psn,psn_spatial,psn_temporal (default psn)")
    ap.add_argument("--ablation", action="store_true",
                    help="the paper's Fig. 7 ablation: " + ", ".join(FIG7_MODELS) +
                         " (replaces --models); the report's comparison is Fig. 7")
    ap.add_argument("--net", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a field of every model's net configuration (run_folds "
                         "--net), e.g. temporal_centre=0")
    ap.add_argument("--jobs", type=int,
                    help="CPU: folds trained at once, one BLAS thread each (default: the "
                         "number of cores, at most 4)")
    ap.add_argument("--schedule", help="solver schedule (default: demo on the synthetic data, "
                                       "paper on yours)")
    ap.add_argument("--width", type=float,
                    help="channel multiplier (default: 0.125 on the synthetic data, 1 on yours)")
    ap.add_argument("--gpus", help="GPU ids for training, e.g. 0,1,2,3 (default CPU)")
    ap.add_argument("--loso", action="store_true", help="leave-one-subject-out folds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, help="preprocessing processes (default: all cores)")
    ap.add_argument("--subjects", type=int, default=12, help="synthetic database: subjects")
    ap.add_argument("--clips-per-subject", type=int, default=10,
                    help="synthetic database: clips per subject")
    ap.add_argument("--synthetic", default="casme2", metavar="FORMATS",
                    help="synthetic databases to make, by on-disk format: casme2 (default), or "
                         "casme2,casme for a two-database run (other identities in each)")
    args = ap.parse_args(argv)
    from preprocessing.synthetic import FORMATS
    args.synthetic = [f.strip() for f in args.synthetic.split(",") if f.strip()]
    bad = [f for f in args.synthetic if f not in FORMATS]
    if bad or not args.synthetic or len(set(args.synthetic)) != len(args.synthetic):
        ap.error(f"--synthetic: give distinct formats of {', '.join(FORMATS)}, got {bad or args.synthetic}")
    return args


def stage(title):
    print("\n=== %s [%s]" % (title, time.strftime("%H:%M:%S")), flush=True)


def main(argv=None):
    args = parse_args(argv)
    from psn.env import ensure_caffe
    ensure_caffe(cuda=bool(args.gpus))
    t0 = time.time()
    out = os.path.abspath(args.out)
    roots = {n: getattr(args, n) for n in DATABASES if getattr(args, n)}
    synthetic = not roots
    if synthetic:
        from preprocessing import synthetic as synth
        roots = {}
        for i, fmt in enumerate(args.synthetic):
            db = os.path.join(out, "synthetic_" + fmt)
            stage("1/4 synthetic %s-format database (%d subjects x %d clips) -> %s"
                  % (fmt, args.subjects, args.clips_per_subject, db))
            # Another seed per format: other identities, so no face is two subjects.
            rc = synth.main(["--out", db, "--subjects", str(args.subjects),
                             "--clips-per-subject", str(args.clips_per_subject),
                             "--seed", str(args.seed + i), "--format", fmt])
            if rc:
                return rc
            roots[fmt] = db
    else:
        stage("1/4 databases: " + ", ".join("%s=%s" % kv for kv in roots.items()))
    schedule = args.schedule or ("demo" if synthetic else "paper")
    width = args.width if args.width is not None else (0.125 if synthetic else 1.0)

    from preprocessing import cli as preprocess_cli
    data = os.path.join(out, "data")
    stage("2/4 preprocessing -> %s" % data)
    pre_argv = ["run", "--out", data, "--seed", str(args.seed)]
    for name, root in roots.items():
        pre_argv += ["--" + name, root]
    if args.loso:
        pre_argv.append("--loso")
    if args.workers:
        pre_argv += ["--workers", str(args.workers)]
    rc = preprocess_cli.main(pre_argv)
    if rc:
        return rc

    from psn import training
    runs = []
    models = FIG7_MODELS if args.ablation else [m.strip() for m in args.models.split(",")
                                                  if m.strip()]
    jobs = args.jobs or min(4, os.cpu_count() or 1)
    for model in models:
        run = os.path.join(out, "runs", "%s_w%g_%s" % (model, width, schedule))
        stage("3/4 training %s (width %g, schedule %s) on every fold -> %s"
              % (model, width, schedule, run))
        train_argv = ["--data", data, "--model", model, "--out", run, "--schedule", schedule,
                      "--width", str(width), "--seed", str(args.seed)]
        for item in args.net:
            train_argv += ["--net", item]
        if args.gpus:
            train_argv += ["--gpus", args.gpus]
        else:
            train_argv += ["--jobs", str(jobs)]
        rc = training.main(train_argv)
        if rc:
            print("run_psn: training %s had failing folds (see above); the report uses the "
                  "folds that finished" % model, file=sys.stderr)
        if os.path.exists(os.path.join(run, "predictions.csv")):
            runs.append((model, run))
    if not runs:
        print("run_psn: no predictions to report", file=sys.stderr)
        return 1

    from psn import report
    report_dir = os.path.join(out, "report")
    stage("4/4 report -> %s" % report_dir)
    rep_argv = [os.path.join(r, "predictions.csv") for _, r in runs]
    rep_argv += ["--names"] + [m for m, _ in runs]
    rep_argv += ["--logs"] + ["%s=%s" % (m, r) for m, r in runs]
    rep_argv += ["--out", report_dir]
    rc = report.main(rep_argv)
    if rc:
        return rc
    with open(os.path.join(report_dir, "report.md")) as f:
        text = f.read()
    print(text[:3000])
    print("\nreport: %s/report.md  (%.1f min in all)" % (report_dir, (time.time() - t0) / 60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
