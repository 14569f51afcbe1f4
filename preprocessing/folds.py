"""Fold groups (docs/design.md §1, "folds") and the per-fold train/test list files.

Two protocols:
  groups<K> (default K = 10, the paper's): the included clips are split into K stratified
      groups (650 clips -> 10 groups of 65, each with the class shares of the whole set) by
      scikit-learn's StratifiedKFold(shuffle=True, random_state=seed); fold k tests group k and
      trains on the others. Same clips in the same order and the same seed -> same groups.
  loso: leave one subject out; group g = the g-th subject in sorted order of subject ids.

Groups are numbered from 1; 0 means "in no group" (an excluded clip).

No data is copied per fold: each group has one plain shard (and one augmented shard for
training); a fold is two list files naming shards, which is what Caffe's HDF5Data reads.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from preprocessing.errors import InputError
from preprocessing.labels import CLASSES, N_CLASSES

__all__ = ["check_fold_count", "stratified_groups", "subject_groups", "assign_groups", "fold_scheme_name",
           "fold_plan", "list_lines"]



def fold_scheme_name(n_folds=10, loso=False):
    """How the folds are made ('groups10', 'loso'): not the evaluation protocol
    (preprocessing.protocols), which decides classes and labels."""
    return "loso" if loso else f"groups{int(n_folds)}"


def check_fold_count(labels, n_groups, log=None, classes=CLASSES):
    """Refuse (InputError) a stratified split scikit-learn cannot make: every class has fewer
    clips than groups. Say so (through log) when some classes are too small to appear in
    every group. Called on the loaders' clips before any clip is computed, and again on the
    included ones. `classes` names the labels (the evaluation protocol's)."""
    if n_groups < 2:
        raise InputError(f"--n-folds {n_groups}: need at least 2 groups")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    present = {(classes[c] if c < len(classes) else "class %d" % c): int(n)
               for c, n in enumerate(counts) if n}
    if present and max(present.values()) < n_groups:
        raise InputError(f"--n-folds {n_groups}: no class has {n_groups} clips ({present}), so no "
                         f"stratified split into {n_groups} groups exists. Fix: --n-folds "
                         f"{max(2, max(present.values()))} or fewer, or --loso")
    small = {k: v for k, v in present.items() if v < n_groups}
    if small and log is not None:
        log(f"note: {', '.join(f'{k} ({v} clips)' for k, v in small.items())} cannot appear in "
            f"every one of the {n_groups} fold groups")


def stratified_groups(labels, n_groups=10, seed=0):
    """Group number (1..n_groups) of each clip, stratified by label; int array like labels."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=np.int64)
    if labels.size < n_groups:
        raise InputError(f"only {labels.size} clips are included; {n_groups} fold groups need at "
                         f"least {n_groups} (fix: --n-folds {max(2, labels.size)} or more data)")
    check_fold_count(labels, n_groups)
    groups = np.zeros(labels.size, dtype=np.int64)
    skf = StratifiedKFold(n_splits=n_groups, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class has only n members": reported by fold_plan's counts.
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, test) in enumerate(skf.split(np.zeros(labels.size), labels)):
            groups[test] = k + 1
    return groups


def subject_groups(subjects):
    """Leave-one-subject-out: group g (1-based) = the g-th distinct subject in sorted order."""
    order = {s: i + 1 for i, s in enumerate(sorted(set(subjects)))}
    if len(order) < 2:
        raise InputError(f"leave-one-subject-out needs at least 2 subjects with included clips, "
                         f"got {len(order)}")
    return np.array([order[s] for s in subjects], dtype=np.int64)


def assign_groups(labels, subjects, n_folds=10, loso=False, seed=0):
    """Groups of the included clips under the chosen fold scheme."""
    if loso:
        return subject_groups(subjects)
    return stratified_groups(labels, n_folds, seed)


def _counts(labels):
    return [int(c) for c in np.bincount(np.asarray(labels, dtype=np.int64), minlength=N_CLASSES)]


def fold_plan(groups, labels, subjects, fold_scheme, seed, n_augment=0):
    """The folds.json content (without file paths): per group and per fold, clips and class
    counts. n_augment: augmented copies per training clip (they are counted separately)."""
    groups = np.asarray(groups, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    ids = sorted(int(g) for g in set(groups.tolist()))
    per_group = []
    for g in ids:
        sel = groups == g
        subj = sorted(set(np.asarray(subjects, dtype=object)[sel].tolist()))
        per_group.append({"group": g, "n_clips": int(sel.sum()), "class_counts": _counts(labels[sel]),
                          "subjects": subj})
    folds = []
    for g in ids:
        test = groups == g
        entry = {"fold": g, "test_group": g, "train_groups": [h for h in ids if h != g],
                 "class_counts": {"test": _counts(labels[test]), "train": _counts(labels[~test])},
                 "n_test": int(test.sum()), "n_train": int((~test).sum()),
                 "n_train_augmented": int((~test).sum()) * int(n_augment)}
        if fold_scheme == "loso":
            (entry["test_subject"],) = per_group[ids.index(g)]["subjects"]  # one per group
        folds.append(entry)
    return {"fold_scheme": fold_scheme, "seed": int(seed), "n_folds": len(ids), "n_clips": int(groups.size),
            "class_counts": _counts(labels), "groups": per_group, "folds": folds}


def list_lines(fold, plain_shards, aug_shards):
    """(train lines, test lines) of one fold entry of fold_plan.

    plain_shards / aug_shards: {group: absolute path}; aug_shards may be empty (no
    augmentation). The test list is the test group's plain shard only; augmented data never
    appears in it.
    """
    for path in list(plain_shards.values()) + list(aug_shards.values()):
        if not os.path.isabs(path):
            raise ValueError(f"shard paths in list files must be absolute, got {path}")
        if any(ch.isspace() for ch in path):
            # Caffe's HDF5Data reads its source file with `>>`, one whitespace-separated token
            # per shard path.
            raise InputError(f"shard path {path!r} contains whitespace, which Caffe's HDF5Data "
                             "cannot read from a list file; choose an --out folder without spaces")
    test = [plain_shards[fold["test_group"]]]
    train = []
    for g in fold["train_groups"]:
        train.append(plain_shards[g])
        if g in aug_shards:
            train.append(aug_shards[g])
    return train, test
