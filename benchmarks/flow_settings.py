"""How well does each TV-L1 setting of `preprocess.py run --flow` measure a known movement, and
at what cost? Measures and prints.

    python benchmarks/flow_settings.py [--pairs 3] [--doc docs/flow_measurements.md]

Frame pairs of psn.flow_probe's direction task (a face-like texture; a patch of radius sigma
moved by `shift` px at its centre; sensor noise; no drift, so the true flow is known
everywhere), at 112 x 112 as the preprocessing computes it. For each setting of
preprocessing.flow.FLOW_SETTINGS: the end-point error against the true displacement inside the
patch (where it moves by at least a tenth of `shift`) and over the whole crop, the share of
patch pixels whose vertical flow has the true sign, and the seconds per pair (one thread).
"""
import argparse
import datetime
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

SHIFTS = (0.25, 0.5, 1.0, 2.0)
SIGMAS = (6, 12, 24)
NOISES = (1.0, 4.0)


def measure(params, shift, sigma, noise, pairs, seed=0):
    import cv2
    from preprocessing.flow import tvl1_flow
    from psn import flow_probe
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:flow_probe.SIZE, 0:flow_probe.SIZE].astype(np.float64)
    epe_in, epe_all, sign, secs = [], [], [], []
    for _ in range(pairs):
        bg = flow_probe._texture(rng)
        c = flow_probe.CENTRE
        w = np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2.0 * sigma ** 2))
        apex = flow_probe._moved(bg, c, sigma, shift)
        a, b = (np.clip(np.rint(f + rng.normal(0, noise, f.shape)), 0, 255) / 255.0
                for f in (bg, apex))
        cv2.setNumThreads(1)
        t0 = time.perf_counter()
        u, v = tvl1_flow(a, b, params)
        secs.append(time.perf_counter() - t0)
        # apex(p) = onset(p - d(p)) with d = (0, shift w): onset(p) = apex(p + d) to first order,
        # so TV-L1's flow (apex(p + f) ~ onset(p)) is f ~ d.
        err = np.hypot(u, v - shift * w)
        inside = w > 0.1
        epe_in.append(err[inside].mean())
        epe_all.append(err.mean())
        sign.append((np.sign(v[inside]) == 1).mean())
    return {"epe_patch": float(np.mean(epe_in)), "epe_all": float(np.mean(epe_all)),
            "sign": float(np.mean(sign)), "seconds": float(np.median(secs))}


def main(argv=None):
    from preprocessing.flow import FLOW_SETTINGS, check_tvl1
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3, help="frame pairs per cell (default 3)")
    ap.add_argument("--doc", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    check_tvl1()
    rows = []
    for noise in NOISES:
        for sigma in SIGMAS:
            for shift in SHIFTS:
                cells = [measure(FLOW_SETTINGS[name], shift, sigma, noise, args.pairs)
                         for name in FLOW_SETTINGS]
                rows.append(((noise, sigma, shift), cells))
                print("noise %g sigma %2d shift %4g  " % (noise, sigma, shift) + "   ".join(
                    "%s: EPE patch %.3f all %.3f sign %.2f %.2f s" % (
                        name, c["epe_patch"], c["epe_all"], c["sign"], c["seconds"])
                    for name, c in zip(FLOW_SETTINGS, cells)), flush=True)
    names = list(FLOW_SETTINGS)
    head = ("| noise | σ (px) | shift (px) | " + " | ".join(
        "%s: EPE patch / all, right sign" % n for n in names) + " |")
    lines = [head, "|" + "---|" * (3 + len(names))]
    for (noise, sigma, shift), cells in rows:
        lines.append("| %g | %d | %g | %s |" % (noise, sigma, shift, " | ".join(
            "%.3f / %.3f, %.2f" % (c["epe_patch"], c["epe_all"], c["sign"]) for c in cells)))
    summary = []
    for k, name in enumerate(names):
        cs = [cells[k] for _, cells in rows]
        summary.append("%s (%s): median %.3f s a pair; EPE in the patch %.3f px on average, right "
                       "sign %.2f" % (name, ", ".join("%s %g" % kv for kv in sorted(
                           vars(FLOW_SETTINGS[name]).items())), np.median([c["seconds"] for c in cs]),
                           np.mean([c["epe_patch"] for c in cs]), np.mean([c["sign"] for c in cs])))
    text = "\n".join(lines) + "\n\n" + "\n".join("- " + s for s in summary) + "\n"
    print("\n" + text)
    if args.doc:
        from preprocessing.atomic import write_atomic
        cmd = "python benchmarks/flow_settings.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_atomic(args.doc, "# TV-L1 settings measured against a known movement\n\nWritten by "
                     "`%s` on %s: %d frame pairs a cell of psn.flow_probe's direction task at "
                     "112 x 112 (no drift), one thread. EPE: mean end-point error (px) against "
                     "the true displacement, inside the patch (where it moves by at least a tenth "
                     "of the shift) and over the whole crop; right sign: share of patch pixels "
                     "whose vertical flow points the true way. docs/flow.md says which setting "
                     "is the default and why.\n\n%s"
                     % (cmd.strip(), datetime.date.today().isoformat(), args.pairs, text))
        print("wrote", args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
