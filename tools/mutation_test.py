#!/usr/bin/env python3
"""Mutation testing of the modules that decide the paper's results; see tests/mutation.py.

  tools/mutation_test.py                      every module (about 20 min on 2 cores)
  tools/mutation_test.py preprocessing/tim.py one module
  tools/mutation_test.py --list PATH          the mutants of PATH, without running them
  tools/mutation_test.py --survivors-of work/mutation/results.json
                                              rerun only the mutants that survived last time
  tools/mutation_test.py --rescore work/mutation/results.json
                                              recount after editing the equivalent list

Run it through `tools/run_tests.sh --mutation` on a fresh machine (that builds Caffe first:
the Python TPU layer's tests need it). Exits 1 when a module scores under --min (90 %).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import mutation  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", help="modules to mutate (default: %s)"
                    % ", ".join(mutation.TARGETS))
    ap.add_argument("--workers", type=int, default=2,
                    help="mutants run at once, one process each (default 2)")
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "mutation", "results.json"),
                    help="where the per-mutant results go (JSON)")
    ap.add_argument("--survivors-of", metavar="RESULTS",
                    help="run only the mutants that survived in this earlier results file")
    ap.add_argument("--list", action="store_true", help="print the mutants and stop")
    ap.add_argument("--rescore", metavar="RESULTS",
                    help="apply the current tests/mutation_equivalent.json to an earlier results "
                         "file and print its table (runs nothing)")
    ap.add_argument("--min", type=float, default=0.90,
                    help="the score every module must reach (default 0.90)")
    args = ap.parse_args(argv)
    paths = args.paths or list(mutation.TARGETS)
    for p in paths:
        if p not in mutation.TARGETS:
            ap.error("%s is not a mutation target; known: %s" % (p, ", ".join(mutation.TARGETS)))
    if args.list:
        for p in paths:
            for m, _ in mutation.mutants_of(p):
                print(m.describe())
                print("    key: " + m.key)
        return 0
    if args.rescore:
        with open(args.rescore) as f:
            results = mutation.rescore(json.load(f))
        print(mutation.table(results))
        return 0
    only = None
    if args.survivors_of:
        with open(args.survivors_of) as f:
            earlier = json.load(f)
        only = {e["key"] for mod in earlier["modules"].values() for e in mod["mutants"]
                if e["status"] == "survived"}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def save(results):
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.out)

    results = mutation.run(paths, workers=args.workers, only=only,
                           log=lambda s: print(s, flush=True), on_module=save)
    save(results)
    print(mutation.table(results))
    for key in results["killed_but_listed"]:
        print("note: tests/mutation_equivalent.json lists a mutant the tests kill: " + key)
    for key in results["stale_equivalent"]:
        print("note: tests/mutation_equivalent.json lists a mutant that no longer exists: " + key)
    broken = [p for p, mod in results["modules"].items() if "error" in mod]
    if broken:
        print("tests failing before any mutation: %s" % ", ".join(broken))
        return 2
    low = [p for p, mod in results["modules"].items()
           if mutation.score(mod["mutants"])["score"] < args.min]
    if low and only is None:
        print("below %.0f %%: %s" % (100 * args.min, ", ".join(low)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
