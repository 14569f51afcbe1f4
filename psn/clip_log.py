"""Per-clip prediction logs in the field's plain format, and scores recomputed from one.

The composite's papers ship (when they ship anything) a text log with one clip per line:
its name, database, subject, true class and predicted class. run_folds writes such a log,
RUN/per_clip.txt, beside predictions.csv, so that anyone can recompute the scores with their
own code; `tools/score.py LOG` recomputes UF1 and UAR, overall and per database, from this
project's log or another project's.

Format: one clip per line, `clip database subject truth prediction`, separated by
whitespace, commas or tabs; classes as names of the protocol's classes (any case) or as their
indices 0..K-1; an optional header line (`clip,database,subject,truth,prediction`); lines
starting with '#' are comments.
"""
from __future__ import annotations

import os
import re

from preprocessing.atomic import write_atomic
from preprocessing.layout import RunFolder

__all__ = ["LOG_NAME", "COLUMNS", "LogError", "write_clip_log", "log_predictions", "read_clip_log",
           "score_log"]

LOG_NAME = RunFolder.CLIP_LOG
COLUMNS = ("clip", "database", "subject", "truth", "prediction")


class LogError(ValueError):
    """A per-clip log that cannot be scored: the message names file:line and the fix."""


def write_clip_log(predictions, out_path, classes):
    """The per-clip log of a psn.predictions.Predictions, classes named (label k = classes[k])."""
    lines = ["# " + " ".join(COLUMNS) + " (psn-caffe per-clip log; classes: %s)\n"
             % ", ".join(classes)]
    for i in range(len(predictions.label)):
        fields = (predictions.clip[i], predictions.database[i], predictions.subject[i],
                  classes[int(predictions.label[i])], classes[int(predictions.pred[i])])
        if any(re.search(r"[\s,]", str(f)) for f in fields):
            raise LogError("%s: clip %r has a field with a space or comma: it cannot be written "
                           "in the plain per-clip format" % (out_path, fields[0]))
        lines.append(" ".join(str(f) for f in fields) + "\n")
    write_atomic(out_path, "".join(lines))
    return out_path


def log_predictions(predictions_csv, out_path, classes, log):
    """out_path: the per-clip log of a run's predictions csv (psn.predictions), classes as the
    data's protocol names them; returns out_path, or None (said through log) where a clip
    cannot be written in the plain format: the run's scores stand without it."""
    from psn.predictions import read_predictions
    try:
        write_clip_log(read_predictions(predictions_csv, len(classes)), out_path, classes)
    except LogError as e:
        log("no %s: %s" % (os.path.basename(out_path), e))
        return None
    log("wrote %s (clip database subject truth prediction; tools/score.py recomputes the "
        "scores from it)" % out_path)
    return out_path


def _class(value, classes, where, what):
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        k = int(text)
        if k < len(classes):
            return k
    else:
        names = [c.lower() for c in classes]
        if text.lower() in names:
            return names.index(text.lower())
    raise LogError("%s: %s %r is not one of the classes %s (or 0..%d): give the protocol "
                   "the log was made under (--protocol)" % (where, what, value, ", ".join(classes),
                                                           len(classes) - 1))


def read_clip_log(path, classes):
    """(clips, databases, subjects, truths, predictions) of a per-clip log; LogError naming
    file:line for a malformed line, an unknown class or a clip listed twice."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise LogError("%s is not text (byte %d): give a per-clip log" % (path, exc.start)) from None
    out = ([], [], [], [], [])
    seen = {}
    for n, line in enumerate(text.splitlines(), 1):
        where = "%s:%d" % (path, n)
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f for f in re.split(r"[\s,]+", stripped) if f]
        if [f.lower() for f in fields] == list(COLUMNS):
            continue
        if len(fields) != len(COLUMNS):
            raise LogError("%s: %d fields, expected %d (%s)" % (where, len(fields), len(COLUMNS),
                                                                " ".join(COLUMNS)))
        clip, database, subject = fields[:3]
        key = (database, subject, clip)
        if key in seen:
            raise LogError("%s: clip %s/%s/%s already on line %d: each clip once"
                           % (where, database, subject, clip, seen[key]))
        seen[key] = n
        for column, value in zip(out, (clip, database, subject,
                                       _class(fields[3], classes, where, "truth"),
                                       _class(fields[4], classes, where, "prediction"))):
            column.append(value)
    if not out[0]:
        raise LogError("%s holds no clips" % path)
    return out


def score_log(path, classes):
    """{part: psn.metrics.Scores} for the composite and each database of a per-clip log."""
    from psn import metrics
    _, databases, _, truths, preds = read_clip_log(path, classes)
    return metrics.by_database(truths, preds, databases, len(classes))


def main(argv=None):
    import argparse
    from preprocessing.errors import InputError, fail
    from preprocessing.protocols import load_protocol, names
    ap = argparse.ArgumentParser(
        description="UF1 and UAR, overall and per database, recomputed from a per-clip log "
                    "(clip database subject truth prediction per line): this project's "
                    "RUN/per_clip.txt or another project's.")
    ap.add_argument("log", help="the per-clip log")
    ap.add_argument("--protocol", default="megc2019", metavar="NAME|JSON",
                    help="the classes the log's truth and prediction name (default megc2019: "
                         "negative, positive, surprise); one of %s or a JSON file" % ", ".join(names()))
    args = ap.parse_args(argv)
    try:
        classes = list(load_protocol(args.protocol).classes)
        parts = score_log(args.log, classes)
    except (LogError, InputError, OSError) as exc:
        return fail("score: error: ", exc)
    print("%-12s %6s %8s %8s" % ("part", "clips", "UF1", "UAR"))
    for part, s in parts.items():
        print("%-12s %6d %8.4f %8.4f" % (part, s.n, s.uf1, s.uar))
    return 0
