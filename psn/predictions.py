"""predictions.csv: its schema, the clip-level probabilities it holds, reading and writing.

One row per test clip, written by run_folds (psn.training), read by the report (psn.report):

    database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2,prob_3

label and pred are classes 0 Positive, 1 Negative, 2 Surprise, 3 Others; prob_k is the clip's
softmax averaged over its 16 frames (clip_probabilities: the deploy net classifies every frame
row, a clip's answer is the mean of its rows), and pred its argmax. Under another protocol
(MEGC 2019: 0 negative, 1 positive, 2 surprise) there is one prob_k per class of the
preprocessing folder's protocol.json, and the file has as many.
"""
import csv
import io
import math
import re
from dataclasses import dataclass

import numpy as np

from preprocessing.atomic import atomic_path
from preprocessing.labels import N_CLASSES

ID_COLUMNS = ("database", "subject", "clip", "fold", "label", "pred")


def prediction_columns(n_classes=N_CLASSES):
    return ID_COLUMNS + tuple("prob_%d" % c for c in range(n_classes))


PREDICTION_COLUMNS = prediction_columns()
_CLASS_TEXT = re.compile(r"^\s*(\d+)(?:\.0*)?\s*$")
_PROB_SUM_TOL = 0.01
# pred may lose to another class by this much (ties, and probabilities written rounded).
_PRED_TOL = 1e-5


class PredictionsError(ValueError):
    """A malformed predictions.csv; the message names the file, the line and the fix."""


@dataclass
class Predictions:
    path: str
    database: np.ndarray   # str
    subject: np.ndarray    # str
    clip: np.ndarray       # str
    fold: np.ndarray       # str (fold ids as written)
    label: np.ndarray      # int64
    pred: np.ndarray       # int64
    prob: np.ndarray       # (n, 4) float

    def __len__(self):
        return len(self.label)


# ---------------------------------------------------------------- the clip's probabilities


def clip_probabilities(net, raw=None, sparse=None, cont=None, **inputs):
    """Frame-averaged softmax per clip, (K, C), from a deploy net of batch N clips.

    raw/sparse/cont (or, for the flow nets, flow=): (K, T, ...) clip-major arrays or h5py
    datasets (read one batch at a time), those the net has as inputs; the last batch is padded
    by repeating its first clip. The net's rows are time-major (row = t*N + n).
    """
    inputs.update(raw=raw, sparse=sparse, cont=cont)
    feeds = [(name, inputs[name]) for name in net.inputs]
    missing = [name for name, source in feeds if source is None]
    if missing:
        raise ValueError("the net's input(s) %s were not given" % ", ".join(missing))
    N = net.blobs[net.inputs[0]].data.shape[0]
    K = feeds[0][1].shape[0]
    out = []
    for start in range(0, K, N):
        n = min(K, start + N) - start
        for name, source in feeds:
            data = source[start:start + n]
            if n < N:
                data = np.concatenate([data] + [data[:1]] * (N - n))
            net.blobs[name].data[...] = data
        prob = net.forward()["prob"]
        out.append(prob.reshape(-1, N, prob.shape[-1]).mean(axis=0)[:n])
    return np.concatenate(out)


# ---------------------------------------------------------------- reading


def _class_value(text, column, where, n_classes=N_CLASSES):
    m = _CLASS_TEXT.match(text or "")
    if not m or int(m.group(1)) >= n_classes:
        raise PredictionsError(
            "%s: %s %r is not a class; use an integer 0..%d (%s)" % (
                where, column, text, n_classes - 1,
                "0 Positive, 1 Negative, 2 Surprise, 3 Others" if n_classes == N_CLASSES
                else "one per prob_ column"))
    return int(m.group(1))


def n_prob_columns(header):
    """How many classes a header's prob_0, prob_1, ... columns give (consecutive from 0)."""
    k = 0
    while "prob_%d" % k in header:
        k += 1
    return k


def read_predictions(path, n_classes=None):
    """Read and validate a predictions.csv; raises PredictionsError naming file and line.
    n_classes: the classes the file must have (None: as many as its prob_ columns, at least 2;
    a header with fewer is held to the paper's 4)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as exc:
        raise PredictionsError("cannot read predictions file %s: %s" % (path, exc))
    except UnicodeDecodeError as exc:
        raise PredictionsError("%s is not text (byte %d: %s): give a predictions.csv that "
                               "run_folds wrote" % (path, exc.start, exc.reason)) from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise PredictionsError("%s is empty; expected the header %s"
                               % (path, ",".join(PREDICTION_COLUMNS)))
    header = [h.strip() for h in header]
    if n_classes is None:
        n_classes = n_prob_columns(header)
        if n_classes < 2:   # the paper's file, with its four, is what a broken header is held to
            n_classes = N_CLASSES
    columns = prediction_columns(n_classes)
    missing = [c for c in columns if c not in header]
    if missing:
        raise PredictionsError(
            "%s:1: missing column(s) %s; the header must contain %s (as tools/run_folds.py "
            "writes it)" % (path, ", ".join(missing), ",".join(columns)))
    dup = sorted({h for h in header if header.count(h) > 1 and h in columns})
    if dup:
        raise PredictionsError("%s:1: column(s) %s appear twice" % (path, ", ".join(dup)))
    idx = {c: header.index(c) for c in columns}
    cols = {c: [] for c in columns}
    seen = {}
    for row in reader:
        line = reader.line_num
        where = "%s:%d" % (path, line)
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise PredictionsError("%s: %d fields, the header has %d" % (where, len(row), len(header)))
        rec = {c: row[i].strip() for c, i in idx.items()}
        for c in ("database", "subject", "clip", "fold"):
            if not rec[c]:
                raise PredictionsError("%s: empty %s" % (where, c))
        label = _class_value(rec["label"], "label", where, n_classes)
        pred = _class_value(rec["pred"], "pred", where, n_classes)
        probs = []
        for k in range(n_classes):
            c = "prob_%d" % k
            try:
                v = float(rec[c])
            except ValueError:
                v = float("nan")
            if not (math.isfinite(v) and -1e-6 <= v <= 1 + 1e-6):
                raise PredictionsError("%s: %s %r is not a probability in [0, 1]"
                                       % (where, c, rec[c]))
            probs.append(v)
        if abs(sum(probs) - 1.0) > _PROB_SUM_TOL:
            raise PredictionsError(
                "%s: prob_0..prob_%d sum to %.4f, not 1; write the clip's (frame-averaged) "
                "softmax, not raw scores" % (where, n_classes - 1, sum(probs)))
        best = max(range(n_classes), key=lambda k: probs[k])
        if probs[pred] < probs[best] - _PRED_TOL:
            # Scored from pred, such a row would count an answer its probabilities do not give.
            raise PredictionsError(
                "%s: pred %d is not the most probable class (prob_%d %.6g < prob_%d %.6g): the "
                "file was edited or mixes two runs; pred must be the argmax of prob_0..prob_%d"
                % (where, pred, pred, probs[pred], best, probs[best], n_classes - 1))
        key = (rec["database"], rec["subject"], rec["clip"])
        if key in seen:
            raise PredictionsError(
                "%s: clip %s/%s/%s already predicted on line %d; each test clip must appear "
                "once" % (where, key[0], key[1], key[2], seen[key]))
        seen[key] = line
        for c in ("database", "subject", "clip", "fold"):
            cols[c].append(rec[c])
        cols["label"].append(label)
        cols["pred"].append(pred)
        cols["prob_0"].append(probs)
    if not cols["label"]:
        raise PredictionsError("%s has a header but no clips" % path)
    return Predictions(
        path=path,
        database=np.array(cols["database"], dtype=object),
        subject=np.array(cols["subject"], dtype=object),
        clip=np.array(cols["clip"], dtype=object),
        fold=np.array(cols["fold"], dtype=object),
        label=np.array(cols["label"], dtype=np.int64),
        pred=np.array(cols["pred"], dtype=np.int64),
        prob=np.array(cols["prob_0"], dtype=float),
    )


# ---------------------------------------------------------------- writing


def write_predictions(path, rows, n_classes=None):
    """Rows in prediction_columns order (as many prob_ columns as the rows hold), atomically."""
    if n_classes is None:
        n_classes = len(rows[0]) - len(ID_COLUMNS) if rows else N_CLASSES
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(prediction_columns(n_classes))
        w.writerows(rows)


def join_predictions(paths, out_path):
    """Concatenates the folds' predictions.csv files; returns the number of clips."""
    rows, n_classes = [], None
    for p in paths:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            k = n_prob_columns(reader.fieldnames or [])
            if n_classes not in (None, k):
                raise PredictionsError("%s has %d prob_ columns, the folds before it %d: the "
                                       "folds were trained for different classes" % (p, k, n_classes))
            n_classes = k
            rows.extend([r[c] for c in prediction_columns(k)] for r in reader)
    write_predictions(out_path, rows, n_classes)
    return len(rows)
