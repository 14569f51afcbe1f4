"""Which weights of a fold are scored: the ways the field picks them, side by side.

    final    the schedule's last iteration (run_folds' predictions.csv). Nothing about the
             test fold chooses the model: a held-out score.
    val      for each fold, the snapshot iteration with the best accuracy on its validation
             groups (training groups held out of its training, --val-groups; psn.validation),
             scored on the test fold: leak-free model selection.
    oracle   for each fold, the snapshot iteration with the best accuracy on that fold's own
             test clips (the earliest of equals): what the MEGC 2019 composite's top results
             report (HTNet, CausalNet keep the best test epoch per left-out subject). The test
             fold chooses the model, so the score is optimistic; the gap to `final` shows how
             much of such a score is selection.

Each snapshot's weights are run over the fold's test clips once and the predictions cached
(foldKK/by_iteration/, psn.fold_predict.predict_iterations): choosing another way retrains
nothing. A mode's files carry its name: RUN/predictions_<mode>.csv, RUN/per_clip_<mode>.txt
and RUN/selection_<mode>.json (each fold's iteration, and every iteration's test accuracy).
"""
import json

from preprocessing.atomic import write_atomic
from preprocessing.layout import DataFolder, RunFolder
from psn.config import SELECT_MODES as MODES, RunError

__all__ = ["MODES", "DEFAULT_MODE", "choose_iteration", "select_run"]

DEFAULT_MODE = "final"


def choose_iteration(accuracy, mode):
    """The iteration `mode` scores, from {iteration: test accuracy}."""
    if not accuracy:
        raise RunError("no snapshot to choose from")
    if mode == "final":
        return max(accuracy)
    if mode in ("oracle", "val"):
        best = max(accuracy.values())
        return min(i for i, a in accuracy.items() if a == best)
    raise RunError("--select %r: choose from %s" % (mode, ", ".join(MODES)))


def select_run(cfg, folds, mode, manifest, log):
    """RUN/predictions_<mode>.csv, per_clip_<mode>.txt and selection_<mode>.json over the
    folds; returns the predictions path."""
    from psn.clip_log import log_predictions
    from psn.fold_predict import predict_iterations
    from psn.predictions import join_predictions, read_predictions
    run = RunFolder(cfg.out)
    classes = DataFolder(cfg.data).classes()
    chosen, record = [], {"mode": mode, "folds": {}}
    def accuracy_of(paths):
        out = {}
        for iteration, path in paths.items():
            p = read_predictions(path, len(classes))
            out[iteration] = float((p.label == p.pred).mean())
        return out

    for fold in folds:
        paths = predict_iterations(cfg, fold, manifest, log)
        accuracy = accuracy_of(paths)
        if not accuracy:
            raise RunError("fold %d has no snapshots in %s to choose from"
                           % (fold, run.snapshot_dir(fold)))
        entry = {"test_accuracy_by_iteration": {str(i): a for i, a in sorted(accuracy.items())}}
        if mode == "val":
            val = accuracy_of(predict_iterations(cfg, fold, manifest, log, split="val"))
            iteration = choose_iteration(val, mode)
            entry["val_accuracy_by_iteration"] = {str(i): a for i, a in sorted(val.items())}
        else:
            iteration = choose_iteration(accuracy, mode)
        chosen.append(paths[iteration])
        entry.update(iteration=iteration, test_accuracy=accuracy[iteration])
        record["folds"]["%02d" % fold] = entry
    out = run.selected_predictions(mode)
    n = join_predictions(chosen, out)
    log_predictions(out, run.clip_log(mode), classes, log)
    write_atomic(run.selection_record(mode), json.dumps(record, indent=1, sort_keys=True) + "\n")
    log("wrote %s (%d clips; weights chosen %s: iterations %s)"
        % (out, n, mode, ", ".join("%s:%d" % (k, v["iteration"]) for k, v in record["folds"].items())))
    return out
