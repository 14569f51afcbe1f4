"""Mutation testing of the modules that decide the paper's results (the mutation tier).

One mutation at a time is applied to a module in a scratch copy of the repository, and the
module's tests are run there; a mutant is *killed* when a test fails (or the run exceeds its
time limit), *survives* otherwise. The score of a module is killed / (mutants - equivalent),
where the equivalent mutants are the ones listed, each with the reason it cannot change any
result, in tests/mutation_equivalent.json.

Why a script of our own and not mutmut or cosmic-ray: the paper's numbers live in a data file
(psn/data/paper_results.json) that neither tool mutates, the Python TPU layer's tests need the
Caffe build's environment in every mutant's run, and a key that names a mutant by its function
and source text (not its line number) lets the list of equivalent mutants survive edits
elsewhere in the file. The operators are the usual ones:

  compare   < <= > >= == != is in: boundary (< to <=) and negation (< to >=)
  binop     + - * / // % ** @ & |: swapped for their partner (+ to -, * to /, @ to *, & to |)
  augassign the same, on += etc.
  number    an int n becomes n+1 and n-1; a float x becomes x+1
  bool      True and False swapped
  boolop    and / or swapped
  unary     not, - and ~ removed
  delete    an assignment, an expression statement, a raise, an assert, a continue or a
            break replaced by `pass`
  return    `return X` becomes `return None`
  call      numpy and builtin reductions swapped: min/max, argmin/argmax, minimum/maximum,
            mean/median, sum/mean, floor/ceil, any/all
  data      every number of a JSON data file changed (int +1, float +0.01)

Strings, docstrings, f-strings and `if __name__ == "__main__":` blocks are not mutated.

Run:
  python tests/mutation.py                      every module (about 20 min on 2 cores)
  python tests/mutation.py preprocessing/tim.py one module
  python tests/mutation.py --list PATH          the mutants of PATH, without running them
  python tests/mutation.py --survivors-of work/mutation/results.json
                                                rerun only the mutants that survived last time
  python tests/mutation.py --rescore work/mutation/results.json
                                                recount after editing the equivalent list
with Caffe's environment set (`tools/run_tests.sh --mutation` sets it up on a fresh machine:
the Python TPU layer's tests need Caffe). Exits 1 when a module scores under --min (90 %).
The runner is here, beside the tests it runs, not in tools/: it is part of the test tiers.
"""
import argparse
import ast
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EQUIVALENT_PATH = os.path.join(ROOT, "tests", "mutation_equivalent.json")

# Each mutated file and the tests that speak for it (fast ones first: -x stops at the first
# failure). test_pipeline.py (30 s) is left out: a module's own tests must catch its mutants.
TARGETS = {
    "psn/metrics.py": ["tests/test_metrics.py", "tests/test_paper_results.py",
                       "tests/test_report.py"],
    "psn/data/paper_results.json": ["tests/test_paper_results.py", "tests/test_metrics.py"],
    "preprocessing/labels.py": ["tests/test_labels.py", "tests/test_table4.py",
                                "tests/test_loaders.py"],
    "preprocessing/folds.py": ["tests/test_folds.py"],
    "preprocessing/sampling.py": ["tests/test_sampling.py"],
    "preprocessing/tim.py": ["tests/test_tim.py"],
    "preprocessing/rpca.py": ["tests/test_rpca.py"],
    "layers/psn_layers/tpu.py": ["tests/test_tpu_layer.py"],
}

COMPARE_SWAPS = {
    ast.Lt: (ast.LtE, ast.GtE), ast.LtE: (ast.Lt, ast.Gt), ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,), ast.In: (ast.NotIn,), ast.NotIn: (ast.In,),
}
BINOP_SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.MatMult: ast.Mult,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
}
CALL_SWAPS = {
    "min": "max", "max": "min", "amin": "amax", "amax": "amin", "argmin": "argmax",
    "argmax": "argmin", "minimum": "maximum", "maximum": "minimum", "mean": "median",
    "median": "mean", "sum": "mean", "floor": "ceil", "ceil": "floor", "any": "all",
    "all": "any",
}
DELETABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Raise, ast.Assert,
             ast.Continue, ast.Break)


class Mutant:
    __slots__ = ("path", "index", "line", "qualname", "op", "before", "after", "key")

    def __init__(self, path, index, line, qualname, op, before, after):
        self.path, self.index, self.line = path, index, line
        self.qualname, self.op, self.before, self.after = qualname, op, before, after
        self.key = None

    def describe(self):
        return "%s:%d %s: %s -> %s" % (self.path, self.line, self.op, self.before, self.after)


def _text(node):
    return " ".join(ast.unparse(node).split())


def _window(before, after, limit=80):
    """The two texts, cut to the part around their first difference when they are long."""
    if max(len(before), len(after)) <= limit:
        return before, after
    p = 0
    while p < min(len(before), len(after)) and before[p] == after[p]:
        p += 1
    start = max(0, p - limit // 2)
    cut = lambda t: ("..." if start else "") + t[start:start + limit] + (
        "..." if start + limit < len(t) else "")
    return cut(before), cut(after)


def _is_docstring(stmt, parent_body):
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str) and parent_body and parent_body[0] is stmt)


def _is_main_guard(node):
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


class _Sites:
    """Walks a module in a fixed order and lists (node, op, make) for every mutation."""

    def __init__(self, tree):
        self.sites = []
        self._walk(tree, "<module>", None, None)

    def _walk(self, node, qualname, body_of, parent):
        if _is_main_guard(node) or isinstance(node, ast.JoinedStr):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qualname = node.name if qualname == "<module>" else qualname + "." + node.name
        self._parent = parent
        self._visit(node, qualname, body_of)
        for field, value in ast.iter_fields(node):
            if field in ("decorator_list", "returns", "annotation"):
                continue
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self._walk(item, qualname,
                                   value if isinstance(item, ast.stmt) else None, node)
            elif isinstance(value, ast.AST):
                self._walk(value, qualname, None, node)

    def _add(self, node, qualname, op, make):
        # A constant is shown (and keyed) with the expression around it: `n - 1`, not `1`.
        shown = node
        if isinstance(node, ast.Constant) and isinstance(self._parent, (
                ast.expr, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.keyword, ast.Return,
                ast.arguments)):
            shown = self._parent
        self.sites.append((node, qualname, op, make, shown))

    def _visit(self, node, qualname, body_of):
        if isinstance(node, ast.Compare):
            for i, cmp_op in enumerate(node.ops):
                for new in COMPARE_SWAPS.get(type(cmp_op), ()):
                    self._add(node, qualname, "compare",
                              lambda n, i=i, new=new: n.ops.__setitem__(i, new()))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            new = BINOP_SWAPS.get(type(node.op))
            if new:
                self._add(node, qualname, "binop" if isinstance(node, ast.BinOp) else "augassign",
                          lambda n, new=new: setattr(n, "op", new()))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            self._add(node, qualname, "boolop", lambda n, new=new: setattr(n, "op", new()))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub,
                                                                     ast.Invert)):
            self._add(node, qualname, "unary", "unwrap")
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                self._add(node, qualname, "bool",
                          lambda n: setattr(n, "value", not n.value))
            elif isinstance(value, int):
                self._add(node, qualname, "number", lambda n: setattr(n, "value", n.value + 1))
                self._add(node, qualname, "number", lambda n: setattr(n, "value", n.value - 1))
            elif isinstance(value, float):
                self._add(node, qualname, "number", lambda n: setattr(n, "value", n.value + 1))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else (
                func.id if isinstance(func, ast.Name) else None)
            if name in CALL_SWAPS and (isinstance(func, ast.Attribute) or name in ("min", "max",
                                                                                  "sum", "any",
                                                                                  "all")):
                new = CALL_SWAPS[name]
                if isinstance(func, ast.Name) and new not in ("min", "max", "any", "all"):
                    return
                attr = "attr" if isinstance(func, ast.Attribute) else "id"
                self._add(node, qualname, "call",
                          lambda n, attr=attr, new=new: setattr(n.func, attr, new))
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            self._add(node, qualname, "return", lambda n: setattr(n, "value", None))
        if (isinstance(node, DELETABLE) and body_of is not None
                and not _is_docstring(node, body_of) and qualname != "<module>"):
            self._add(node, qualname, "delete", "delete")


def _apply(tree, index):
    """Applies site `index` to a fresh tree; returns (before, after, line) snippets."""
    sites = _Sites(tree).sites
    node, qualname, op, make, shown = sites[index]
    before = _text(shown)
    line = node.lineno
    if make == "delete":
        parent_list = _parent_body(tree, node)
        parent_list[parent_list.index(node)] = ast.Pass()
        after = "pass"
    elif make == "unwrap":
        _replace(tree, node, node.operand)
        after = _text(node.operand)
    else:
        make(node)
        after = _text(shown)
    before, after = _window(before, after)
    return qualname, op, before, after, line


def _parent_body(tree, target):
    for node in ast.walk(tree):
        for value in ast.iter_fields(node):
            if isinstance(value[1], list) and any(item is target for item in value[1]):
                return value[1]
    raise LookupError("statement not found")


def _replace(tree, target, new):
    for node in ast.walk(tree):
        for field, value in ast.iter_fields(node):
            if value is target:
                setattr(node, field, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is target:
                        value[i] = new
                        return
    raise LookupError("node not found")


def python_mutants(path, source):
    """Every mutant of a Python module: a list of (Mutant, mutated source)."""
    count = len(_Sites(ast.parse(source)).sites)
    out = []
    for index in range(count):
        tree = ast.parse(source)
        qualname, op, before, after, line = _apply(tree, index)
        if before == after:
            continue
        out.append((Mutant(path, index, line, qualname, op, before, after),
                    ast.unparse(ast.fix_missing_locations(tree)) + "\n"))
    _assign_keys([m for m, _ in out])
    return out


def data_mutants(path, text):
    """Every number of a JSON file changed once: int +1, float +0.01."""
    data = json.loads(text)
    out = []

    def walk(value, where):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            yield where, value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, where + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, where + (i,))

    for index, (where, value) in enumerate(list(walk(data, ()))):
        mutated = copy.deepcopy(data)
        holder = mutated
        for step in where[:-1]:
            holder = holder[step]
        new = value + 1 if isinstance(value, int) else round(value + 0.01, 6)
        holder[where[-1]] = new
        name = "/".join(str(w) for w in where)
        m = Mutant(path, index, 0, name, "data", repr(value), repr(new))
        out.append((m, json.dumps(mutated, indent=1) + "\n"))
    _assign_keys([m for m, _ in out])
    return out


def _assign_keys(mutants):
    """A key that survives edits elsewhere in the file: function, operator, source text, and
    the occurrence number among mutants that share all three."""
    seen = Counter()
    for m in mutants:
        base = "%s::%s::%s::%s -> %s" % (m.path, m.qualname, m.op, m.before, m.after)
        seen[base] += 1
        m.key = base if seen[base] == 1 else "%s #%d" % (base, seen[base])


def mutants_of(path, root=ROOT):
    with open(os.path.join(root, path)) as f:
        text = f.read()
    return data_mutants(path, text) if path.endswith(".json") else python_mutants(path, text)


def load_equivalent():
    """{key: reason} of the mutants set aside as equivalent."""
    with open(EQUIVALENT_PATH) as f:
        entries = json.load(f)["equivalent"]
    return {e["mutant"]: e["why"] for e in entries}


# ------------------------------------------------------------------------- running them

def _tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def make_copy(dest):
    """A scratch copy of the checkout's tracked files (the mutants are written into it)."""
    for rel in _tracked_files():
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src):
            continue
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    return dest


def test_env():
    env = dict(os.environ)
    env.update({"PSN_VENV": os.environ.get("PSN_VENV", os.path.join(ROOT, ".venv")),
                "PSN_REQUIRE_CAFFE": "1", "GLOG_minloglevel": "2", "MPLBACKEND": "Agg",
                "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "PYTHONDONTWRITEBYTECODE": "1"})
    env.pop("PYTHONPATH", None)
    return env


def run_tests(copy_dir, tests, timeout):
    """(outcome, seconds, the output's tail): outcome 'passed', 'failed' or 'timeout'."""
    start = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                              "-o", "addopts=", *tests], cwd=copy_dir, env=test_env(),
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, ""
    outcome = "passed" if out.returncode == 0 else "failed"
    return outcome, time.monotonic() - start, out.stdout[-3000:] + out.stderr[-2000:]


class Worker:
    def __init__(self, scratch):
        self.dir = make_copy(tempfile.mkdtemp(prefix="mutant-", dir=scratch))

    def run(self, path, text, tests, timeout):
        target = os.path.join(self.dir, path)
        with open(target) as f:
            original = f.read()
        try:
            with open(target, "w") as f:
                f.write(text)
            outcome, seconds, _ = run_tests(self.dir, tests, timeout)
            if outcome == "timeout":
                # A loaded machine can slow a sound mutant past the limit: a timeout counts as
                # a kill only when it recurs with three times the time.
                outcome, seconds, _ = run_tests(self.dir, tests, 3 * timeout)
        finally:
            with open(target, "w") as f:
                f.write(original)
        return outcome, seconds


def run(paths, workers=2, only=None, log=print, scratch=None, on_module=None):
    """Runs every mutant of `paths`; returns the results as a dict (see table). A module
    whose tests fail before any mutation is recorded with the failure and skipped (its score
    would mean nothing); on_module(results) is called after each module (to save progress)."""
    equivalent = load_equivalent()
    scratch = scratch or tempfile.mkdtemp(prefix="psn-mutation-")
    pool = [Worker(scratch) for _ in range(workers)]
    results = {"modules": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        for path in paths:
            tests = TARGETS[path]
            outcome, base_seconds, output = run_tests(pool[0].dir, tests, timeout=900)
            if outcome != "passed":
                log("[mutation] %s: its tests fail before any mutation (%s); fix them first:\n%s"
                    % (path, " ".join(tests), output))
                results["modules"][path] = {"tests": tests, "error": output[-3000:]}
                if on_module:
                    on_module(results)
                continue
            timeout = 3 * base_seconds + 10
            mutants = mutants_of(path, pool[0].dir)   # the copy: edits made meanwhile wait
            if only is not None:
                mutants = [(m, t) for m, t in mutants if m.key in only]
            log("[mutation] %s: %d mutants, tests %.1f s (%s)"
                % (path, len(mutants), base_seconds, " ".join(tests)))
            free = list(pool)
            entries = []

            def one(item):
                m, text = item
                worker = free.pop()
                try:
                    return m, worker.run(path, text, tests, timeout)
                finally:
                    free.append(worker)

            with ThreadPoolExecutor(max_workers=workers) as ex:
                for m, (outcome, seconds) in ex.map(one, mutants):
                    status = {"passed": "survived", "failed": "killed",
                              "timeout": "timeout"}[outcome]
                    if status == "survived" and m.key in equivalent:
                        status = "equivalent"
                    entries.append({"key": m.key, "line": m.line, "status": status,
                                    "seconds": round(seconds, 2), "describe": m.describe()})
                    if status == "survived":
                        log("  survived  " + m.describe())
            results["modules"][path] = {"tests": tests, "mutants": entries,
                                        "source_sha256": _sha(path, pool[0].dir)}
            if on_module:
                on_module(results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    unused = set(equivalent) - {e["key"] for mod in results["modules"].values()
                                for e in mod.get("mutants", ())}
    results["killed_but_listed"] = sorted(
        e["key"] for mod in results["modules"].values() for e in mod.get("mutants", ())
        if e["status"] in ("killed", "timeout") and e["key"] in equivalent)
    results["stale_equivalent"] = sorted(k for k in unused
                                         if k.split("::")[0] in results["modules"]
                                         and only is None)
    return results


def _sha(path, root):
    with open(os.path.join(root, path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rescore(results):
    """Applies the current list of equivalent mutants to earlier results (no mutant is run):
    after the list was edited, a survivor it now names counts as equivalent, and back."""
    equivalent = load_equivalent()
    for mod in results["modules"].values():
        for e in mod.get("mutants", ()):
            if e["status"] in ("survived", "equivalent"):
                e["status"] = "equivalent" if e["key"] in equivalent else "survived"
    return results


def score(entries):
    counts = Counter(e["status"] for e in entries)
    killed = counts["killed"] + counts["timeout"]
    considered = len(entries) - counts["equivalent"]
    return {"mutants": len(entries), "killed": killed, "timeout": counts["timeout"],
            "survived": counts["survived"], "equivalent": counts["equivalent"],
            "score": killed / considered if considered else 1.0}


def table(results):
    """The per-module scores as a Markdown table (the README's)."""
    lines = ["| module | mutants | killed | equivalent | survived | score |",
             "|---|---:|---:|---:|---:|---:|"]
    for path, mod in results["modules"].items():
        if "error" in mod:
            lines.append("| `%s` | its tests fail unmutated | | | | |" % path)
            continue
        s = score(mod["mutants"])
        lines.append("| `%s` | %d | %d | %d | %d | %.1f %% |" % (
            path, s["mutants"], s["killed"], s["equivalent"], s["survived"], 100 * s["score"]))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", help="modules to mutate (default: %s)"
                    % ", ".join(TARGETS))
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
    paths = args.paths or list(TARGETS)
    for p in paths:
        if p not in TARGETS:
            ap.error("%s is not a mutation target; known: %s" % (p, ", ".join(TARGETS)))
    if args.list:
        for p in paths:
            for m, _ in mutants_of(p):
                print(m.describe())
                print("    key: " + m.key)
        return 0
    if args.rescore:
        with open(args.rescore) as f:
            results = rescore(json.load(f))
        print(table(results))
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

    results = run(paths, workers=args.workers, only=only,
                           log=lambda s: print(s, flush=True), on_module=save)
    save(results)
    print(table(results))
    for key in results["killed_but_listed"]:
        print("note: tests/mutation_equivalent.json lists a mutant the tests kill: " + key)
    for key in results["stale_equivalent"]:
        print("note: tests/mutation_equivalent.json lists a mutant that no longer exists: " + key)
    broken = [p for p, mod in results["modules"].items() if "error" in mod]
    if broken:
        print("tests failing before any mutation: %s" % ", ".join(broken))
        return 2
    low = [p for p, mod in results["modules"].items()
           if score(mod["mutants"])["score"] < args.min]
    if low and only is None:
        print("below %.0f %%: %s" % (100 * args.min, ", ".join(low)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
