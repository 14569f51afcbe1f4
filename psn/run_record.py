"""RUN/run.json: what decides a run's results (model, net, width, batch, schedule, seed, the
data's fingerprint), written on a new run and compared on every rerun, so that finished folds
are never reused under other settings; plus the provenance (commit, Caffe build, package
versions), recorded, not compared."""
import json
import os
import subprocess
import time

from preprocessing.atomic import write_atomic
from preprocessing.layout import DataFolder, RunFolder
from psn.config import RunError
from psn.fold_setup import fold_nets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



RECORD = RunFolder.RECORD


# What does not change a fold's result: where things are, how many run at once.
NOT_RECORDED = ("created", "data_path", "note", "provenance", "command", "classes")


def _manifest_without_location(path):
    """manifest.csv's text less its `source` column (where the database lies), as CSV."""
    import csv
    import io
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0] if rows else []) if name != "source"]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[r[i] for i in keep if i < len(r)] for r in rows])
    return out.getvalue().encode()


def data_fingerprint(data_dir, location=False):
    """sha256 of a data folder's manifest, its fold lists (paths relative to the folder) and
    each listed shard's content key: changes when the clips, labels, folds or shards do,
    not when the data folder or the database moves (the manifest's `source` column, the
    database's absolute path, is left out). location=True: the fingerprint of runs recorded
    before, which hashed the whole manifest."""
    import hashlib
    from preprocessing.hdf5_shards import stored_key
    folder = DataFolder(data_dir)
    h = hashlib.sha256()
    if location:
        with open(folder.manifest, "rb") as f:
            h.update(f.read())
    else:
        h.update(_manifest_without_location(folder.manifest))
    keys = {}           # a shard is listed by many folds: its key is read once
    for fold in folder.folds():
        for split, shards in sorted(folder.fold_shards(fold).items()):
            for shard in shards:
                if shard not in keys:
                    keys[shard] = stored_key(shard)
                h.update(("%d %s %s %s\n" % (fold, split, os.path.relpath(shard, data_dir),
                                             keys[shard])).encode())
    return h.hexdigest()


def flow_fingerprint(data_dir):
    """sha256 of the content keys of a data folder's flow shards (shards/groupKK_flow.h5)."""
    import glob
    import hashlib
    from preprocessing.hdf5_shards import stored_key
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(DataFolder(data_dir).shard_dir, "group*_flow.h5"))):
        h.update(("%s %s\n" % (os.path.basename(path), stored_key(path))).encode())
    return h.hexdigest()


def _net_sha256(tv):
    import hashlib
    from google.protobuf import text_format
    return hashlib.sha256(text_format.MessageToString(tv).encode()).hexdigest()


def _legacy_net_sha256(cfg):
    """The net hash records written before the record hashed the data's class count held: of
    the net with the run's own --net overrides only (the same net under the paper's 4 classes)."""
    tv, _, _ = fold_nets(cfg.model, cfg.width, cfg.batch, "TRAIN_LIST", "TEST_LIST",
                         cfg.tpu_impl, cfg.net_overrides)
    return _net_sha256(tv)


def run_record(cfg, tv):
    """What decides a run's results: model and its net `tv` (fold_setup.run_train_net), width,
    batch, schedule, seed, data."""
    record = dict(cfg.record(), net_sha256=_net_sha256(tv), data_sha256=data_fingerprint(cfg.data))
    # W_m's gain is written per fold from its training clips, after this net text: the rule is
    # recorded, so that a run made with the fixed gain is not resumed under the data's.
    from dataclasses import replace
    from psn import nets, tp_gain
    base = nets.MODELS.get(cfg.model)
    if base is not None and tp_gain.applies(replace(base, **(cfg.net_overrides or {}))):
        record["tpu_wm_gain"] = "median tp of each fold's training clips (psn.tp_gain)"
    if base is not None and nets.reads_flow(replace(base, **(cfg.net_overrides or {}))):
        # The flow shards are not in data_fingerprint (PSN's shards are): a flow made again
        # (another --flow setting) must not be resumed on.
        record["flow_sha256"] = flow_fingerprint(cfg.data)
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def provenance():
    """How to rebuild what made a run: the project's commit, the Caffe build, package versions
    (recorded, not compared: another machine may reproduce a run with other versions)."""
    import platform
    out = {"python": platform.python_version(),
           "caffe_home": os.path.basename(os.environ.get("PSN_CAFFE_HOME", "")) or None}
    try:
        git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
        out["commit"] = git.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["commit"] = None
    for module in ("numpy", "scipy", "h5py", "cv2", "google.protobuf", "sklearn"):
        try:
            out[module] = __import__(module, fromlist=["__version__"]).__version__
        except Exception:       # a missing or broken package is recorded as such
            out[module] = None
    return out


def check_run_record(cfg, log, tv):
    """Write RUN/run.json on a new run; on a rerun refuse (RunError) when anything that decides
    the results differs from what the folder was made with. tv: the run's train net
    (fold_setup.run_train_net)."""
    path = RunFolder(cfg.out).record
    new = run_record(cfg, tv)
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except ValueError as e:
            raise RunError("%s is damaged (%s): delete it only if you know the run's folds were "
                           "made with these settings" % (path, e))
        if old.get("data_sha256") != new["data_sha256"] and \
                old.get("data_sha256") == data_fingerprint(cfg.data, location=True):
            new["data_sha256"] = old["data_sha256"]     # recorded before the location was left out
        if old.get("net_sha256") != new["net_sha256"] and \
                old.get("net_sha256") == _legacy_net_sha256(cfg):
            new["net_sha256"] = old["net_sha256"]       # recorded before the class count was
        diff = [k for k in sorted(set(old) | set(new))
                if k not in NOT_RECORDED and old.get(k) != new.get(k)]
        if diff:
            show = lambda r, k: json.dumps(r.get(k), sort_keys=True)[:120]  # noqa: E731
            raise RunError("%s was made with other settings or data; finished folds would be "
                           "reused silently, so nothing is run. Differences: %s. Use a new "
                           "--out for these settings, or delete %s to start over."
                           % (cfg.out, "; ".join("%s: was %s, now %s" % (k, show(old, k), show(new, k))
                                                   for k in diff), cfg.out))
        return old
    if RunFolder(cfg.out).folds():
        log("%s has folds but no %s (made before run records): recording the current settings; "
            "its finished folds are assumed to match them" % (cfg.out, RECORD))
    # The class names travel with the run (tools/predict.py names a fold's outputs with
    # them); the labels themselves are in the data's fingerprint.
    record = dict(new, created=time.strftime("%Y-%m-%d %H:%M:%S"), data_path=cfg.data,
                  classes=DataFolder(cfg.data).classes(),
                  command=["tools/run_folds.py"] + cfg.flags(),
                  note="what made this run; run_folds refuses a rerun that differs",
                  provenance=provenance())
    write_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
