"""The data folder and the run folder: the one module that names what is in them.

A data folder is what `tools/preprocess.py run --out DATA` writes and every later stage reads:

    DATA/manifest.csv            every clip the loaders gave (preprocessing.manifest)
    DATA/skipped.csv             what the loaders left out, and why
    DATA/protocol.json           the evaluation protocol, with the class names
    DATA/folds.json              the fold plan, the options and the pipeline version
    DATA/contact_sheet.png       a few clips' frames and E, for a look by eye
    DATA/cache/<clip>.npz        one clip's arrays (the clip cache)
    DATA/shards/groupKK.h5       the HDF5 shard of fold group KK (and groupKK_aug.h5)
    DATA/folds/foldKK/{train,test}.txt   the shards of fold KK, relative to DATA

A run folder is what `tools/run_folds.py --out RUN` writes:

    RUN/run.json                 what made the run (psn.training: the run record)
    RUN/predictions.csv          every fold's held-out clips, joined
    RUN/apex_shards/             single-frame copies of the shards (the apex nets)
    RUN/foldKK/                  {train_val,deploy,solver}.prototxt, {train,test}.txt,
                                 train.log, snapshots/, DONE, predictions.csv

Readers and writers (preprocessing.pipeline, psn.training, psn.probe_tasks, the reports, the
tests) take paths from here, so a name is spelled once. Errors are InputError, one line
naming the file and the fix.
"""
import os
import re

from preprocessing.errors import InputError

__all__ = ["DataFolder", "RunFolder", "fold_name", "run_name"]

_FOLD = re.compile(r"fold(\d+)$")


def fold_name(fold):
    """'fold01': a fold's folder, in the data folder's folds/ and in a run folder."""
    return "fold%02d" % int(fold)


def _folds_in(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(int(m.group(1)) for d in os.listdir(folder) for m in [_FOLD.match(d)]
                  if m and os.path.isdir(os.path.join(folder, d)))


class DataFolder:
    MANIFEST = "manifest.csv"
    SKIPPED = "skipped.csv"
    PROTOCOL = "protocol.json"
    PLAN = "folds.json"
    CONTACT_SHEET = "contact_sheet.png"
    CACHE = "cache"
    SHARDS = "shards"
    FOLDS = "folds"
    SPLITS = ("train", "test")

    def __init__(self, root):
        self.root = root

    def __repr__(self):
        return "DataFolder(%r)" % self.root

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def manifest(self):
        return self.path(self.MANIFEST)

    @property
    def skipped(self):
        return self.path(self.SKIPPED)

    @property
    def protocol_file(self):
        return self.path(self.PROTOCOL)

    @property
    def plan(self):
        return self.path(self.PLAN)

    @property
    def contact_sheet(self):
        return self.path(self.CONTACT_SHEET)

    @property
    def cache_dir(self):
        return self.path(self.CACHE)

    @property
    def shard_dir(self):
        return self.path(self.SHARDS)

    @property
    def folds_dir(self):
        return self.path(self.FOLDS)

    @staticmethod
    def shard_name(group, aug=False):
        return "group%02d%s.h5" % (int(group), "_aug" if aug else "")

    def shard(self, group, aug=False):
        return self.path(self.SHARDS, self.shard_name(group, aug))

    @staticmethod
    def flow_shard_name(group):
        return "group%02d_flow.h5" % int(group)

    @staticmethod
    def flow_shard_of(shard):
        """The flow shard of a group's shard (plain or augmented): shards/groupKK_flow.h5."""
        head, name = os.path.split(shard)
        m = re.fullmatch(r"group(\d+)(_aug|_flow)?\.h5", name)
        if not m:
            raise InputError("%s is not a group shard (groupKK.h5) of a data folder" % shard)
        return os.path.join(head, DataFolder.flow_shard_name(int(m.group(1))))

    def fold_dir(self, fold):
        return self.path(self.FOLDS, fold_name(fold))

    def fold_list(self, fold, split):
        """folds/foldKK/train.txt or test.txt."""
        return os.path.join(self.fold_dir(fold), split + ".txt")

    def relative(self, path):
        """A path inside the folder as its lists and folds.json hold it (so it can move)."""
        return os.path.relpath(path, self.root)

    # ------------------------------------------------------------ reading

    def check(self):
        """InputError unless this is a data folder (it has a manifest)."""
        if not os.path.isfile(self.manifest):
            raise InputError("%s not found: --data must be the --out folder of "
                             "`tools/preprocess.py run`" % self.manifest)
        return self

    def manifest_rows(self):
        """The manifest's rows as dicts of strings, in order (row i has index i); InputError for
        a missing manifest or one with other columns."""
        from preprocessing.manifest import read_manifest
        self.check()
        try:
            return read_manifest(self.manifest)
        except ValueError as e:
            raise InputError(str(e)) from None

    def manifest_by_index(self):
        """{clip index (int): manifest row}."""
        return {int(r["index"]): r for r in self.manifest_rows()}

    def folds(self):
        """The fold numbers of folds/ (sorted); InputError when there are none."""
        folds = _folds_in(self.folds_dir)
        if not folds:
            raise InputError("no %s/foldKK folders in %s: run tools/preprocess.py run first"
                             % (self.FOLDS, self.root))
        return folds

    def fold_shards(self, fold):
        """{'train'|'test': [absolute shard paths]} of one fold. The lists hold paths relative
        to the folder (older folders: absolute); a missing list, an empty one or a missing
        shard is an InputError naming the list."""
        root = os.path.abspath(self.root)
        out = {}
        for split in self.SPLITS:
            path = self.fold_list(fold, split)
            try:
                with open(path) as f:
                    lines = [line.strip() for line in f if line.strip()]
            except FileNotFoundError:
                raise InputError("%s not found: fold %d is not in %s (rerun tools/preprocess.py "
                                 "run)" % (path, fold, self.root)) from None
            shards = [os.path.normpath(os.path.join(root, line)) for line in lines]
            missing = [s for s in shards if not os.path.exists(s)]
            if not shards or missing:
                raise InputError("%s lists %s: rerun tools/preprocess.py run to rebuild the "
                                 "shards" % (path, "no shard" if not shards else
                                             "missing shards " + ", ".join(missing)))
            out[split] = shards
        return out

    def caffe_lists(self, fold, into):
        """{'train'|'test': (list file, [absolute shard paths])}: the fold's lists rewritten
        into the folder `into` with absolute paths, as Caffe's HDF5Data needs them (it reads a
        list's lines from its own working directory, and cannot read a path with spaces)."""
        from preprocessing.atomic import write_atomic
        out = {}
        for split, shards in self.fold_shards(fold).items():
            spaced = [s for s in shards if any(ch.isspace() for ch in s)]
            if spaced:
                raise InputError("shard path %r contains whitespace, which Caffe's HDF5Data "
                                 "cannot read from a list file: move the data folder to a path "
                                 "without spaces" % spaced[0])
            path = write_atomic(os.path.join(into, split + ".txt"),
                                "".join(s + "\n" for s in shards))
            out[split] = (path, shards)
        return out

    def read_plan(self):
        """folds.json: the fold plan ({'groups': [...], 'folds': [...], ...}); InputError for a
        folder without a readable one."""
        import json
        try:
            with open(self.plan) as f:
                plan = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError("%s cannot be read (%s): run tools/preprocess.py run on %s again"
                             % (self.plan, e, self.root)) from None
        if not isinstance(plan, dict) or "groups" not in plan or "folds" not in plan:
            raise InputError("%s has no groups or folds: run tools/preprocess.py run on %s again"
                             % (self.plan, self.root))
        return plan

    def write_protocol(self, protocol):
        """protocol.json: the protocol (preprocessing.protocols.Protocol) the folder's labels
        follow; run_folds gives the nets one output per class of it."""
        import json
        from preprocessing.atomic import write_atomic
        write_atomic(self.protocol_file, json.dumps(
            {"name": protocol.name, "classes": list(protocol.classes),
             "folds": protocol.folds, "file": protocol.path}, indent=1) + "\n")

    def protocol(self):
        """The protocol the folder was labelled under: {'name', 'classes', 'folds', ...}; the
        paper's for a folder written before protocols existed."""
        import json
        try:
            with open(self.protocol_file) as f:
                return json.load(f)
        except FileNotFoundError:
            from preprocessing.protocols import load_protocol
            paper = load_protocol()
            return {"name": paper.name, "classes": list(paper.classes), "folds": paper.folds}

    def classes(self):
        """The class names of the folder's labels, label 0 first."""
        return list(self.protocol()["classes"])

    # ------------------------------------------------------------ writing

    def write_fold_list(self, fold, split, shards):
        """Write folds/foldKK/<split>.txt with the shards relative to the folder; returns the
        relative lines."""
        from preprocessing.atomic import write_atomic
        lines = [self.relative(p) for p in shards]
        write_atomic(self.fold_list(fold, split), "".join(p + "\n" for p in lines))
        return lines

    def write_plan(self, plan):
        """Write folds.json atomically."""
        import json
        from preprocessing.atomic import write_atomic
        write_atomic(self.plan, json.dumps(plan, indent=1, sort_keys=True) + "\n")


class RunFolder:
    RECORD = "run.json"
    PREDICTIONS = "predictions.csv"
    APEX_SHARDS = "apex_shards"
    DONE = "DONE"
    LOG = "train.log"
    SNAPSHOTS = "snapshots"
    BY_ITERATION = "by_iteration"
    CLIP_LOG = "per_clip.txt"

    def __init__(self, root):
        self.root = root

    def __repr__(self):
        return "RunFolder(%r)" % self.root

    def selected_predictions(self, mode):
        """predictions.csv for the final weights, predictions_<mode>.csv for another way of
        choosing them (psn.weight_selection)."""
        return self.predictions if mode == "final" else self.path("predictions_%s.csv" % mode)

    def clip_log(self, mode="final"):
        """The per-clip log of a way of choosing the weights (psn.clip_log)."""
        return self.path(self.CLIP_LOG if mode == "final" else "per_clip_%s.txt" % mode)

    def selection_record(self, mode):
        """Which iteration each fold's weights came from, and why (psn.weight_selection)."""
        return self.path("selection_%s.json" % mode)

    def iteration_predictions(self, fold, iteration, split="test"):
        """A fold's test (or validation) clips through its weights of one snapshot iteration
        (cached)."""
        name = ("iter_%07d.csv" if split == "test" else split + "_iter_%07d.csv") % iteration
        return self.fold_file(fold, os.path.join(self.BY_ITERATION, name))

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def record(self):
        return self.path(self.RECORD)

    @property
    def predictions(self):
        return self.path(self.PREDICTIONS)

    @property
    def apex_dir(self):
        return self.path(self.APEX_SHARDS)

    def fold_dir(self, fold):
        return self.path(fold_name(fold))

    def fold_file(self, fold, name):
        return os.path.join(self.fold_dir(fold), name)

    def done(self, fold):
        return self.fold_file(fold, self.DONE)

    def log(self, fold):
        return self.fold_file(fold, self.LOG)

    def fold_predictions(self, fold):
        return self.fold_file(fold, self.PREDICTIONS)

    def snapshot_dir(self, fold):
        return self.fold_file(fold, self.SNAPSHOTS)

    def folds(self):
        """The fold numbers that have a folder here (sorted; none: [])."""
        return _folds_in(self.root)

    def logs(self):
        """{fold: train.log path} of the folds that have one."""
        return {k: self.log(k) for k in self.folds() if os.path.isfile(self.log(k))}

    def classes(self):
        """The class names the run's nets output, label 0 first, from its run record (which
        run_folds writes from the data folder's protocol.json); None when the record has
        none (a run made before records carried them, or not a run folder)."""
        import json
        try:
            with open(self.record) as f:
                names = json.load(f).get("classes")
        except (OSError, ValueError, AttributeError):
            return None
        return list(names) if isinstance(names, list) else None


def run_name(model, width, schedule, suffix=""):
    """The folder name of a model's run under OUT/runs/ (the main job and the experiments):
    model, width and the schedule's name (a schedule file: its name without .json)."""
    name = os.path.basename(str(schedule))
    if name.endswith(".json"):
        name = name[:-len(".json")]
    return "%s_w%g_%s%s" % (model, width, name, suffix)
