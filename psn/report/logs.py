"""Caffe training logs of a run: found by their content, parsed into .train/.test tables
and drawn as training curves (Fig. 9)."""
import math
import os
import re

from psn import caffe_log
from psn.report.errors import ReportError


_SKIP_EXT = (".caffemodel", ".solverstate", ".h5", ".hdf5", ".png", ".jpg", ".jpeg", ".npy",
             ".npz", ".csv", ".train", ".test", ".prototxt", ".json", ".md", ".py", ".txt~")


def find_logs(directory):
    """Caffe training logs under ``directory`` (or the file itself), sorted: a run folder's
    foldKK/train.log (preprocessing.layout.RunFolder), else any file whose content is one."""
    from preprocessing.layout import RunFolder
    run_logs = RunFolder(directory).logs() if os.path.isdir(directory) else {}
    if run_logs:
        return [path for _, path in sorted(run_logs.items())]
    if os.path.isfile(directory):
        candidates = [directory]
    elif os.path.isdir(directory):
        candidates = []
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            candidates.extend(os.path.join(root, f) for f in sorted(files))
    else:
        raise ReportError("--logs %s: no such file or folder" % directory)
    logs = []
    for path in candidates:
        if path.lower().endswith(_SKIP_EXT) or os.path.getsize(path) == 0:
            continue
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 20).decode("utf-8", errors="replace")
        except OSError:
            continue
        if caffe_log.is_training_log(head):
            logs.append(path)
    return logs


def _pick(row_keys, exact, contains):
    if exact in row_keys:
        return exact
    for k in row_keys:
        if contains in k.lower() and not re.search(r"_net\d+$", k):
            return k
    return None


def logs_of(log_dir):
    """find_logs, but an empty result is an error: the user asked for these curves."""
    logs = find_logs(log_dir)
    if not logs:
        raise ReportError(
            "--logs %s: no Caffe training logs found (looked for glog lines with "
            "'Solving' or 'Iteration N'); point --logs at the folder run_folds wrote" % log_dir)
    return logs


def run_curves(name, log_dir, logs, run_dir):
    """Parse the logs of one run into <run_dir>/logs/*.train|.test and curves.png."""
    base_dir = log_dir if os.path.isdir(log_dir) else os.path.dirname(log_dir)
    curves, entries = [], []
    for path in logs:
        rel = os.path.relpath(path, base_dir)
        train, test = caffe_log.parse_log(path)
        stem = rel.replace(os.sep, "__")
        tr_csv, te_csv = caffe_log.save_csv_files(path, os.path.join(run_dir, "logs"), train,
                                                  test, basename=stem)
        keys = caffe_log.columns(test)
        acc_key = _pick(keys, "accuracy", "acc")
        loss_key = _pick(keys, "loss", "loss")
        tr_loss_key = _pick(caffe_log.columns(train), "loss", "loss")
        curves.append({
            "label": rel,
            "test_iters": [r["NumIters"] for r in test if acc_key in r or loss_key in r],
            "test_acc": [r.get(acc_key, math.nan) for r in test
                         if acc_key in r or loss_key in r] if acc_key else [],
            "test_loss": [r.get(loss_key, math.nan) for r in test
                          if acc_key in r or loss_key in r] if loss_key else [],
            "train_iters": [r["NumIters"] for r in train],
            "train_loss": [r.get(tr_loss_key, math.nan) for r in train] if tr_loss_key else [],
        })
        last = test[-1] if test else {}
        # Relative to the run's report folder, which is written elsewhere and then moved.
        tr_csv, te_csv = (os.path.relpath(c, run_dir) for c in (tr_csv, te_csv))
        entries.append({"log": os.path.abspath(path), "label": rel, "train_csv": tr_csv, "test_csv": te_csv,
                        "train_rows": len(train), "test_rows": len(test),
                        "last_iteration": max([r["NumIters"] for r in train + test], default=None),
                        "last_test_accuracy": last.get(acc_key) if acc_key else None,
                        "last_test_loss": last.get(loss_key) if loss_key else None})
    from psn import plots
    png = plots.training_curves(curves, os.path.join(run_dir, "curves.png"),
                                "%s: training curves (cf. Fig. 9)" % name)
    return entries, png


def log_map(log_args, names):
    """--logs entries -> {run name: dir}; 'NAME=DIR', or plain DIRs one per run in order."""
    if not log_args:
        return {}
    explicit = [a for a in log_args if "=" in a and a.split("=", 1)[0] in names]
    plain = [a for a in log_args if a not in explicit]
    mapping = {}
    for a in explicit:
        n, d = a.split("=", 1)
        mapping[n] = d
    if plain:
        free = [n for n in names if n not in mapping]
        if len(plain) != len(free):
            raise ReportError(
                "--logs: %d folder(s) for %d run(s); give one folder per run in the order of "
                "the predictions files, or NAME=DIR with NAME one of %s"
                % (len(plain), len(free), ", ".join(names)))
        mapping.update(zip(free, plain))
    return mapping
