"""Command line of the preprocessing pipeline (tools/preprocess.py).

Each subcommand is a function that adds its parser and sets `func`; adding one is adding a
function to SUBCOMMANDS.
"""
import argparse
import re
import sys

from preprocessing.augment import DEFAULT_VARIANTS, parse_variant
from preprocessing.clips import LOADERS
from preprocessing.errors import InputError, fail
from preprocessing.labels import ALTERNATIVES, DEFAULT_ALTERNATIVES, DEFAULT_RULES, load_rules
from preprocessing import protocols
from preprocessing.table4 import differences, format_csv, table4_with_skips

DATABASE_HELP = {
    "casme": "CASME folder (Section A.xls, Section B.xls, sub01/EP01_5/...)",
    "casme2": "CASME II folder (CASME2-coding-20140508.xlsx, CASME2-RAW/ or CASME2_RAW_selected/)",
    "casme2sq": "CAS(ME)^2 folder (CAS(ME)^2code_final.xlsx, rawpic/)",
    "samm": "SAMM folder (SAMM_Micro_FACS_Codes_v2.xlsx, SAMM/006/...)",
    "smic": "SMIC folder (SMIC_all_raw/ or _cropped/: HS/s3/micro/negative/s3_ne_01/...; "
            "HS, VIS and NIR become smic-hs, smic-vis, smic-nir)",
    "casme3": "CAS(ME)^3 folder (part A: annotation/partA/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx, "
              "spNO.1/a/color/1.jpg ...; part C where its sheet CAS(ME)3_part_C_ME.xlsx is "
              "there: 01/a/color/*.jpg ..., as database casme3-c)",
}


def add_database_arguments(parser):
    """--<database> DIR per loader (any subset, at least one); --protocol, --rules, --unknown-aus,
    --alternatives."""
    group = parser.add_argument_group("databases (give at least one)")
    for name in LOADERS:
        group.add_argument(f"--{name}", metavar="DIR", help=DATABASE_HELP[name])
    parser.add_argument("--protocol", default=protocols.DEFAULT, metavar="NAME|JSON",
                        help="evaluation protocol: paper (default: 4 classes by the AU rule, the "
                             "paper's databases), megc2019 (SMIC-HS + CASME II + SAMM, 3 "
                             "classes from the emotion column, leave one subject out), or "
                             "another of preprocessing/data/protocols/ (%s), or a JSON file"
                             % ", ".join(protocols.names()))
    parser.add_argument("--rules", metavar="CSV",
                        help="AU rule table (default: preprocessing/data/au_classes.csv)")
    parser.add_argument("--unknown-aus", choices=("exclude", "keep"), default="exclude",
                        help="a clip whose AU cell holds a token that is no FACS action unit "
                             "(e.g. 'AU12x'): exclude it, naming the token (default), or drop "
                             "the token with a note and classify the rest")
    parser.add_argument("--alternatives", choices=ALTERNATIVES, default=DEFAULT_ALTERNATIVES,
                        help="an AU cell whose alternatives mean different classes ('(R6 or "
                             "R12)+R15'): agree (default) keeps a class only when all of them "
                             "give it, else Others with a note; first takes the first alternative")


def rules_of(args):
    """The AU rules the arguments ask for (None: the defaults, unknown tokens excluded,
    alternatives that must agree)."""
    if not args.rules and args.unknown_aus == "exclude" and args.alternatives == DEFAULT_ALTERNATIVES:
        return None
    return load_rules(args.rules or DEFAULT_RULES, keep_unknown_aus=args.unknown_aus == "keep",
                      alternatives=args.alternatives)


def database_roots(args, parser):
    roots = {name: getattr(args, name) for name in LOADERS if getattr(args, name)}
    if not roots:
        parser.error("give at least one of " + ", ".join(f"--{n}" for n in LOADERS))
    return roots


def _table4(subparsers):
    p = subparsers.add_parser("table4", help="count clips per class from the sheets alone (Table 4 as CSV)")
    add_database_arguments(p)

    def run(args):
        protocol = protocols.load_protocol(args.protocol)
        rows, skipped = table4_with_skips(database_roots(args, p), rules_of(args),
                                          protocol=protocol)
        for s in skipped:
            print(f"excluded {s.database} {s.subject} {s.clip}: {s.reason} ({s.source})", file=sys.stderr)
        sys.stdout.write(format_csv(rows, protocol))
        if protocol.expected:
            diff = differences(rows, protocol)
            print(f"{protocol.name}: " + ("the counts are the published ones" if not diff else
                  "differs from the published counts: " + "; ".join(diff)), file=sys.stderr)
        return 0

    p.set_defaults(func=run)


def _run(subparsers):
    p = subparsers.add_parser(
        "run", help="clips -> faces -> TIM -> RPCA -> HDF5 shards, fold lists, manifest",
        description="Preprocess the databases into Caffe's HDF5 inputs under --out "
                    "(see preprocessing/pipeline.py for the layout). Resumable: rerun the same "
                    "command after an interruption.")
    add_database_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (no spaces)")
    proto = p.add_mutually_exclusive_group()
    proto.add_argument("--n-folds", type=int, metavar="K",
                       help="K stratified groups, leave one group out (default 10, the paper's)")
    # The old name: run_folds.py's --folds takes fold numbers, so a count is --n-folds here.
    p.add_argument("--folds", dest="old_folds", help=argparse.SUPPRESS)
    proto.add_argument("--loso", action="store_true", help="leave one subject out instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratified groups (default 0)")
    p.add_argument("--interp", choices=("tim", "linear"), default="tim",
                   help="temporal normalisation to 150 frames (default tim)")
    rp = p.add_mutually_exclusive_group()
    rp.add_argument("--lam", metavar="L",
                    help="a fixed RPCA lambda for every clip; 'standard' = 1/sqrt(12544)")
    rp.add_argument("--sparsity", type=float, metavar="S",
                    help="choose lambda per clip so E has this share of non-zeros (default "
                         "0.25: Fig. 10's best band, 20-30 %%)")
    p.add_argument("--rpca-tol", type=float, default=1e-7, metavar="T",
                   help="RPCA stops at relative residual T (default 1e-7)")
    p.add_argument("--rpca-max-iter", type=int, default=1000, metavar="N",
                   help="RPCA iteration cap; a clip not converged by then is excluded (default 1000)")
    p.add_argument("--augment", metavar="LIST",
                   help="training augmentation: comma-separated flip, rot+N, rot-N (rotN = rot+N), "
                        "flip_rot+N, or none (default flip,rot-10,rot-5,rot+5,rot+10)")
    p.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores)")
    p.add_argument("--face", choices=("landmarks", "haar"), default="landmarks",
                   help="how the face is found and levelled on each clip's onset frame: dlib's "
                        "68 landmarks (default; falls back to haar with a note) or OpenCV's "
                        "Haar cascades")
    p.add_argument("--face-box", metavar="X,Y,W,H",
                   help="crop box in frame pixels for clips where no face is found (else excluded)")
    p.add_argument("--register", choices=("ecc", "none"), default="ecc",
                   help="each frame registered on the onset frame (rigid: shift and roll, "
                        "OpenCV's ECC) before TIM and RPCA, so head drift does not fill E "
                        "(default ecc; none: the one onset box alone, as before)")
    p.add_argument("--shard-compression", choices=("none", "gzip"), default="none",
                   help="how the HDF5 shards store frames: none (default; Caffe's HDF5Data "
                        "gunzips on the training thread, and a GPU iteration ran 2.6-3.3x "
                        "faster on plain shards, measured on an H200) or gzip (31-40%% "
                        "less disk)")
    p.add_argument("--flow", nargs="?", const="default", choices=("default", "fine"), metavar="SETTING",
                   help="also the onset-to-apex TV-L1 optical flow and strain, 28 x 28, one flow "
                        "shard per group (shards/groupKK_flow.h5): the input of STSTNet and "
                        "OFF-ApexNet. SETTING: default (OpenCV's TV-L1 parameters) or fine "
                        "(more scales and warps); docs/flow.md. Needs opencv-contrib-python-headless")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N clips (a quick trial)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(args):
        # Imported on use: `table4` reads sheets only and need not load OpenCV, dlib, scipy.
        from preprocessing.clip_chain import Options
        from preprocessing.pipeline import run as run_pipeline
        if args.workers is not None and args.workers < 1:
            p.error("--workers must be at least 1")
        if args.limit is not None and args.limit < 1:
            p.error("--limit must be at least 1")
        options = Options(interp=args.interp, face=args.face, register=args.register,
                          face_box=parse_face_box(args.face_box), tol=args.rpca_tol,
                          max_iter=args.rpca_max_iter, **rpca_choice(args.lam, args.sparsity))
        rules = rules_of(args)
        evaluation = protocols.load_protocol(args.protocol)
        if args.old_folds is not None:
            p.error("the fold count is --n-folds K (--folds is run_folds.py's list of fold numbers)")
        if evaluation.folds == "loso" and args.n_folds is not None:
            p.error(f"protocol {evaluation.name} is leave one subject out: --n-folds does not apply")
        try:
            run_pipeline(database_roots(args, p), args.out,
                         n_folds=10 if args.n_folds is None else args.n_folds,
                         loso=args.loso, protocol=args.protocol,
                         seed=args.seed, options=options, augment=parse_augment(args.augment),
                         workers=args.workers, limit=args.limit, rules=rules,
                         shard_compression=args.shard_compression,
                         flow=flow_setting(args.flow), progress=not args.no_progress)
        except KeyboardInterrupt:
            print("\ninterrupted: finished clips are cached; run the same command again to "
                  "resume", file=sys.stderr)
            return 130
        return 0

    p.set_defaults(func=run)


def _fig3(subparsers):
    p = subparsers.add_parser(
        "fig3", help="the paper's Fig. 3 for clips you name: their 16 face crops and RPCA's E",
        description="Draw the raw frames and E (the sparse part RPCA leaves) of the named clips "
                    "side by side, from the cache of an earlier `run` in --data.")
    p.add_argument("--data", metavar="DIR", help="the --out of `run` (read; required)")
    # --out names what a tool writes; this folder is read (the picture goes to --png).
    p.add_argument("--out", dest="old_out", help=argparse.SUPPRESS)
    p.add_argument("--clips", required=True, metavar="NAMES",
                   help="comma-separated clip names, or SUBJECT/CLIP (e.g. casme2/sub01/EP02_01f)")
    p.add_argument("--png", metavar="PATH", help="where to write it (default DATA/fig3.png)")

    def run(args):
        if args.old_out is not None:
            p.error("fig3 reads the folder of `run` from --data (--out is what a tool writes; "
                    "the picture goes to --png)")
        if args.data is None:
            p.error("the following arguments are required: --data")
        # Imported on use, like `run`'s: OpenCV and the pipeline are not needed by `table4`.
        from preprocessing.pipeline import write_fig3
        names = [n.strip() for n in args.clips.split(",") if n.strip()]
        png = write_fig3(args.data, names, args.png)
        print(f"wrote {png} ({len(names)} clips)")
        return 0

    p.set_defaults(func=run)


SUBCOMMANDS = [_table4, _run, _fig3]


def build_parser():
    parser = argparse.ArgumentParser(prog="preprocess.py", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, OSError) as exc:
        return fail("error: ", exc)


# ---------------------------------------------------------------- flags shared with predict.py

def flow_setting(name):
    """preprocessing.flow.FlowParams of a --flow SETTING, None without --flow."""
    if name is None:
        return None
    from preprocessing.flow import FLOW_SETTINGS
    return FLOW_SETTINGS[name]


def rpca_choice(lam=None, sparsity=None):
    """Options' RPCA keywords from the command line's --lam and --sparsity: --lam L a fixed
    lambda (--lam standard: 1/sqrt(12544), the textbook 1/sqrt(max(m, n))); --sparsity S
    lambda per clip for that share of non-zeros; neither: the default share
    (DEFAULT_SPARSITY). InputError for a bad value."""
    if lam is not None and sparsity is not None:
        raise InputError("give --lam or --sparsity, not both")
    if lam is not None:
        word = str(lam).strip().lower()
        if word == "standard":
            return {"lam": None, "sparsity": None}
        if word == "default":
            # Its old name: it is not the default (that is λ per clip for DEFAULT_SPARSITY).
            raise InputError("--lam default is now --lam standard (the fixed 1/sqrt(12544)); "
                             "the default is λ per clip for a share of non-zeros in E (--sparsity)")
        try:
            return {"lam": float(lam), "sparsity": None}
        except ValueError:
            raise InputError(f"--lam takes a number or 'standard' (1/sqrt(12544)), got {lam!r}") from None
    return {} if sparsity is None else {"sparsity": float(sparsity)}


def parse_augment(text):
    """'none' -> (); 'flip,rot5,rot-5' -> ('flip', 'rot+5', 'rot-5'); None -> the defaults."""
    if text is None:
        return tuple(DEFAULT_VARIANTS)
    if text.strip().lower() in ("", "none"):
        return ()
    out = []
    for name in (t.strip() for t in text.split(",")):
        # 'rot5' reads as 'rot+5'.
        name = re.sub(r"rot(\d)", r"rot+\1", name)
        try:
            parse_variant(name)
        except ValueError as exc:
            raise InputError(f"--augment: {exc}") from None
        if name in out:
            raise InputError(f"--augment: {name} given twice")
        out.append(name)
    return tuple(out)


def parse_face_box(text):
    """'x,y,w,h' (pixels of the original frame) -> (x, y, w, h) ints."""
    if text is None:
        return None
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise InputError(f"--face-box {text!r}: give x,y,w,h in pixels with w, h > 0, e.g. 160,80,320,320")
    return box
