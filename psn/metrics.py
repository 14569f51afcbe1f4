"""Recognition metrics of the paper (RR, F1/UF1, UAR, TPR/TNR, confusion matrices), pooled
and per fold, plus the majority-class baseline and the paper's own numbers.

Classes: 0 Positive, 1 Negative, 2 Surprise, 3 Others (docs/design.md §1). Confusion matrices have
true classes in rows and predicted classes in columns (the layout of Tables 7–8).

Definitions (for one confusion matrix; docs/design.md §4, the MEGC convention):

* RR = correct / clips.
* Per class c: TPR_c (= recall) = TP/(TP+FN); TNR_c = TN/(TN+FP);
  precision_c = TP/(TP+FP); F1_c = 2TP/(2TP+FP+FN).
* UF1 = mean of F1_c, UAR = mean of TPR_c.
* A class with no true clips *and* no predictions (2TP+FP+FN = 0) has no F1_c: it is left
  out of UF1's mean (not counted as 0). A class with no true clips has no TPR_c: it is left
  out of UAR's mean. A class that is predicted but has no true clips has F1_c = 0 and counts
  in UF1. Undefined values are NaN (null in JSON). Pooled over all 650 clips every class is
  present, so this only matters for per-fold and per-database values.
* The paper's "F1" is UF1: Table 5's F1 column equals Table 6's combined UF1 for every
  method (PSN: 0.5211 in both).

Pooled = one confusion matrix over all folds' test clips. Fold-averaged = the value computed
on each fold's test clips, then the mean over folds. Pooling Table 7's PSN matrix gives RR
64.92 % (as reported) but UF1 0.4653 and UAR 0.4471, not the reported 0.5211 / 0.4871, so the
paper likely averaged F1 and UAR per fold (docs/design.md §4); both are reported, each labelled.

Spread over folds: ``*_std`` is the population standard deviation (ddof = 0, numpy's
default: the folds are the whole set of folds, not a sample of them); ``*_std_sample``
(ddof = 1) is given beside it. Table 9's RR_std (0.084 for PSN) is a fraction, not percent
points: with 65 clips per fold, one clip is already 1.5 points.
"""
import json
import os
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix

from preprocessing.labels import CLASSES as LABEL_NAMES
from preprocessing.labels import N_CLASSES

CLASSES = tuple(range(N_CLASSES))
CLASS_NAMES = tuple(name.capitalize() for name in LABEL_NAMES)   # "Positive", ...
CLASS_SHORT = ("P", "N", "S", "O")

# The paper's numbers, typed once into a data file (tests/test_paper_results.py holds the file
# to the paper's tables); the report prints them beside a run's results.
PAPER_RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                  "paper_results.json")
with open(PAPER_RESULTS_PATH) as _f:
    PAPER = json.load(_f)
# Table 7, PSN: rows true P, N, S, O; columns predicted P, N, S, O.
PAPER_PSN_CONFUSION = np.array(PAPER["table7_psn_confusion"], dtype=np.int64)
# The figures the paper reports for PSN (Tables 5, 6, 9). Fractions, like everything here.
# Table 5's STSTNet row (the paper quotes it; it was not trained on the paper's folds).
PAPER_STSTNET = dict(PAPER["table5_ststnet"])
PAPER_PSN = {
    "rr": PAPER["table5_psn"]["rr"],                 # Table 5 (= Table 9 RR_mean)
    "f1": PAPER["table5_psn"]["f1"],                 # Table 5 F1 = Table 6 combined UF1
    "uf1": PAPER["table6_psn"]["combined"]["uf1"],
    "uar": PAPER["table6_psn"]["combined"]["uar"],
    "rr_std": next(r["rr_std"] for r in PAPER["table9"]
                   if (r["backbone"], r["fusion"]) == ("AlexNet", "SUM")),
}
# Table 6, PSN per database (UAR, UF1); keys as in preprocessing.clips.Clip.database.
PAPER_PSN_BY_DATABASE = {db: dict(v) for db, v in PAPER["table6_psn"].items() if db != "combined"}
# Table 9: (backbone, fusion) -> RR_mean, RR_std, F1.
PAPER_TABLE9 = {(r["backbone"], r["fusion"]): {k: r[k] for k in ("rr_mean", "rr_std", "f1")}
                for r in PAPER["table9"]}


@dataclass(frozen=True)
class Scores:
    """Metrics of one confusion matrix. Per-class arrays are indexed by class 0..3."""
    confusion: np.ndarray      # (4, 4) int counts, rows true, columns predicted
    n: int
    rr: float
    uf1: float
    uar: float
    support: np.ndarray        # true clips per class
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    tpr: np.ndarray            # recall; NaN where support = 0
    tnr: np.ndarray            # NaN where every clip is of this class
    precision: np.ndarray      # NaN where the class is never predicted
    f1: np.ndarray             # NaN where 2TP+FP+FN = 0

    def normalised(self):
        """Row-normalised confusion matrix (Table 8); a row without clips is NaN."""
        return _ratio(self.confusion, self.confusion.sum(axis=1, keepdims=True))


def _check(values, what, n_classes=N_CLASSES):
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError("%s must be one-dimensional, got shape %s" % (what, arr.shape))
    if arr.size and (not np.issubdtype(arr.dtype, np.integer)
                     or arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError("%s must be integer classes 0..%d" % (what, n_classes - 1))
    return arr.astype(np.int64)


def _ratio(num, den):
    """num / den (numpy arrays, den broadcast), NaN where den is 0, without a warning."""
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores(labels, preds, n_classes=N_CLASSES):
    """Scores of clips with true ``labels`` and predicted ``preds`` (ints 0..n_classes-1; the
    paper's 4 by default, MEGC 2019's 3 under that protocol)."""
    y = _check(labels, "labels", n_classes)
    p = _check(preds, "preds", n_classes)
    if y.shape != p.shape:
        raise ValueError("labels and preds differ in length: %d vs %d" % (len(y), len(p)))
    if y.size == 0:
        raise ValueError("no clips to score")
    cm = confusion_matrix(y, p, labels=list(range(n_classes)))
    mcm = multilabel_confusion_matrix(y, p, labels=list(range(n_classes)))  # [[tn, fp], [fn, tp]]
    tn, fp, fn, tp = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1]
    tpr, f1 = _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
    # The exclusion rule of the module docstring: a class whose F1_c (TPR_c) is undefined is
    # NaN and left out of the mean (sklearn's macro averages would count it as 0). A scored
    # set has at least one clip, so each mean has at least one term.
    return Scores(
        confusion=cm, n=int(y.size), rr=float(np.mean(y == p)),
        uf1=float(np.nanmean(f1)), uar=float(np.nanmean(tpr)),
        support=tp + fn, tp=tp, fp=fp, fn=fn, tn=tn,
        tpr=tpr, tnr=_ratio(tn, tn + fp), precision=_ratio(tp, tp + fp), f1=f1,
    )


def scores_from_confusion(cm):
    """Scores of a confusion matrix given as counts (e.g. PAPER_PSN_CONFUSION)."""
    cm = np.asarray(cm)
    if cm.shape != (N_CLASSES, N_CLASSES) or (cm < 0).any() or not np.issubdtype(cm.dtype, np.integer):
        raise ValueError("a confusion matrix must be 4x4 non-negative integer counts")
    y, p = np.nonzero(np.ones_like(cm))
    reps = cm.ravel()
    return scores(np.repeat(y, reps), np.repeat(p, reps))


def by_database(labels, preds, databases, n_classes=N_CLASSES):
    """{'composite': Scores of all clips, <database>: Scores of its clips}: MEGC's way, where
    each database's scores come from the same pooled predictions restricted to its clips (not
    from models trained per database). Databases in order of first appearance."""
    y = _check(labels, "labels", n_classes)
    p = _check(preds, "preds", n_classes)
    d = np.asarray([str(x) for x in databases])
    if not (len(y) == len(p) == len(d)):
        raise ValueError("labels, preds and databases differ in length")
    out = {"composite": scores(y, p, n_classes)}
    for db in dict.fromkeys(d.tolist()):
        out[db] = scores(y[d == db], p[d == db], n_classes)
    return out


def fold_order(folds):
    """Distinct fold ids, numerically when they all are integers, else as text."""
    ids = sorted(set(folds), key=str)
    try:
        return sorted(ids, key=lambda f: int(str(f)))
    except ValueError:
        return ids


def _spread(values):
    """Mean and spread of per-fold values (never NaN: every fold has clips to score)."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=0)),
            "std_sample": float(v.std(ddof=1)) if v.size > 1 else float("nan")}


def per_fold(labels, preds, folds):
    """[(fold id, Scores)] in fold_order."""
    y = _check(labels, "labels")
    p = _check(preds, "preds")
    f = np.asarray([str(x) for x in folds])
    if not (len(y) == len(p) == len(f)):
        raise ValueError("labels, preds and folds differ in length")
    return [(fid, scores(y[f == str(fid)], p[f == str(fid)])) for fid in fold_order(f)]


def summary(labels, preds, folds):
    """Pooled and fold-averaged RR, UF1, UAR (see the module docstring for the definitions).

    One naming scheme: <metric>_pooled for one confusion matrix over all clips,
    <metric>_fold_mean / _fold_std (ddof 0) / _fold_std_sample (ddof 1) over the folds'
    values; plus n_clips, n_folds. (The paper's Table 9 calls rr_fold_mean and rr_fold_std
    RR_mean and RR_std.)
    """
    pooled = scores(labels, preds)
    folds_ = per_fold(labels, preds, folds)
    out = {"n_clips": pooled.n, "n_folds": len(folds_)}
    for key in ("rr", "uf1", "uar"):
        sp = _spread([getattr(s, key) for _, s in folds_])
        out[key + "_pooled"] = getattr(pooled, key)
        out[key + "_fold_mean"] = sp["mean"]
        out[key + "_fold_std"] = sp["std"]
        out[key + "_fold_std_sample"] = sp["std_sample"]
    return out


def majority_baseline(labels, folds):
    """Predictions of the majority-class baseline.

    Each fold's test clips get the most frequent class among the *other* folds' clips (its
    training set under leave-one-group-out). With a single fold there is no training set to
    look at, so the most frequent class over all clips is used (slightly optimistic: it has
    seen the test labels). Ties go to the lower class index.
    """
    y = _check(labels, "labels")
    f = np.asarray([str(x) for x in folds])
    if len(y) != len(f):
        raise ValueError("labels and folds differ in length")
    preds = np.empty_like(y)
    ids = fold_order(f)
    for fid in ids:
        test = f == str(fid)
        train = y[~test] if len(ids) > 1 else y
        preds[test] = int(np.argmax(np.bincount(train, minlength=N_CLASSES)))
    return preds
