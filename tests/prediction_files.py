"""Small predictions.csv files for the tests of psn.predictions and psn.report: run A, six
clips over two folds whose numbers tests/test_metrics.py works out by hand."""

# The on-disk header, spelled out: a change to the columns must fail the tests.
HEADER = "database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2,prob_3"
# Run A: true 0,0,1,1,1,2 / predicted 0,1,1,1,3,3, folds 1,1,1,2,2,2. Predicting LABELS
# instead gives the same clips all right (test_report.py's run B).
LABELS = [0, 0, 1, 1, 1, 2]
PRED_A = [0, 1, 1, 1, 3, 3]
FOLDS = [1, 1, 1, 2, 2, 2]
DBS = ["casme", "samm", "casme2", "samm", "casme", "samm"]


def write_csv(path, preds, labels=LABELS, folds=FOLDS, dbs=DBS, extra_rows=()):
    """Six rows (lines 2..7) whose pred is their most probable class, then extra_rows; path is
    a pathlib.Path. Returns it as a string."""
    lines = [HEADER]
    for i, (y, p, f, d) in enumerate(zip(labels, preds, folds, dbs)):
        probs = [0.1] * 4
        probs[p] = 0.7
        lines.append("%s,%s/s%d,clip%d,%s,%d,%d,%s" % (d, d, i % 2, i, f, y, p,
                                                     ",".join("%.2f" % v for v in probs)))
    lines.extend(extra_rows)
    path.write_text("\n".join(lines) + "\n")
    return str(path)
