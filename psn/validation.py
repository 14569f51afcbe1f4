"""Validation groups: training groups of a fold held out of its training, on which `--select
val` chooses the snapshot whose weights are scored on the test fold (leak-free model
selection, psn.weight_selection).

With `--val-groups N`, fold k trains on its training groups less N of them: the N that follow
its test group, cyclically over the groups (under leave one subject out a group is a subject,
so the validation clips come from training subjects only). They must hold a clip of every
class, else the run is refused before training, naming the fold and the fix. The held-out
groups' augmented shards are left out of training too. N is recorded in run.json: it changes
what every fold trains on.
"""
import os

from preprocessing.layout import DataFolder
from psn.config import RunError

__all__ = ["val_groups", "check_val_groups", "split_train"]


def val_groups(plan, fold, n):
    """The n training groups of `fold` that follow its test group, cyclically."""
    entry = next((e for e in plan["folds"] if int(e["fold"]) == int(fold)), None)
    if entry is None:
        raise RunError("fold %d is not in the data's folds.json" % fold)
    train = [int(g) for g in entry["train_groups"]]
    if n >= len(train):
        raise RunError("--val-groups %d: fold %d has %d training groups, and at least one must "
                       "stay for training: give --val-groups %d or fewer"
                       % (n, fold, len(train), len(train) - 1))
    order = sorted(int(g["group"]) for g in plan["groups"])
    at = order.index(int(entry["test_group"]))
    following = order[at + 1:] + order[:at]
    return [g for g in following if g in train][:n]


def check_val_groups(data, folds, n, classes):
    """RunError, before any fold trains, for a fold whose validation groups miss a class its
    training groups hold."""
    plan = DataFolder(data).read_plan()
    counts = {int(g["group"]): g["class_counts"] for g in plan["groups"]}
    for fold in folds:
        chosen = val_groups(plan, fold, n)
        entry = next(e for e in plan["folds"] if int(e["fold"]) == int(fold))
        k = len(next(iter(counts.values())))

        def total(groups):
            return [sum(counts[int(g)][c] for g in groups) for c in range(k)]
        held, trained = total(chosen), total(entry["train_groups"])
        missing = [classes[c] if c < len(classes) else str(c) for c in range(k)
                   if trained[c] and not held[c]]
        if missing:
            raise RunError("--select val: fold %d's validation group(s) %s hold no %s clip, so "
                           "they cannot choose its weights: give a larger --val-groups (now %d), "
                           "or --select final,oracle"
                           % (fold, ", ".join(map(str, chosen)), " or ".join(missing), n))


def split_train(data, fold, n, train_shards):
    """(training shards less the validation groups' plain and augmented shards, the validation
    groups' plain shards), from the fold's training shards."""
    plan = DataFolder(data).read_plan()
    chosen = set(val_groups(plan, fold, n))
    root = os.path.abspath(data)
    held, val = set(), []
    for g in plan["groups"]:
        if int(g["group"]) in chosen:
            plain = os.path.normpath(os.path.join(root, g["shard"]))
            val.append(plain)
            held.add(plain)
            if g.get("aug_shard"):
                held.add(os.path.normpath(os.path.join(root, g["aug_shard"])))
    return [s for s in train_shards if os.path.normpath(s) not in held], val
