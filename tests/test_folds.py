"""Fold groups: stratified and seeded, leave-one-subject-out, and the list files of a fold."""
import warnings

import numpy as np
import pytest

from preprocessing.errors import InputError
from preprocessing.folds import (assign_groups, check_fold_count, fold_plan, list_lines, fold_scheme_name,
                                 stratified_groups, subject_groups)

# Table 4 of the paper: the 650 clips per class.
PAPER_COUNTS = (55, 280, 50, 265)


def paper_labels(seed=1):
    labels = np.repeat(np.arange(4), PAPER_COUNTS)
    np.random.default_rng(seed).shuffle(labels)
    return labels


def test_paper_split_is_ten_groups_of_65_with_the_whole_sets_class_shares():
    labels = paper_labels()
    groups = stratified_groups(labels, 10, seed=0)
    assert sorted(set(groups.tolist())) == list(range(1, 11))
    for g in range(1, 11):
        sel = groups == g
        assert sel.sum() == 65
        counts = np.bincount(labels[sel], minlength=4)
        # Stratified: each class within one clip of its share of 65.
        assert np.all(np.abs(counts - np.array(PAPER_COUNTS) / 10) <= 1), (g, counts)


def test_groups_are_deterministic_given_the_seed_and_change_with_it():
    labels = paper_labels()
    a = stratified_groups(labels, 10, seed=0)
    b = stratified_groups(labels, 10, seed=0)
    c = stratified_groups(labels, 10, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.int64 and a.shape == labels.shape


def test_too_few_clips_for_the_groups_is_a_clear_error():
    with pytest.raises(InputError, match="only 3 clips are included; 10 fold groups"):
        stratified_groups([0, 1, 2], 10)
    with pytest.raises(InputError, match="at least 2 groups"):
        stratified_groups([0, 1, 2], 1)


def test_loso_group_is_the_subject():
    subjects = ["samm/006", "casme2/sub02", "casme2/sub01", "samm/006", "casme2/sub02"]
    groups = subject_groups(subjects)
    assert groups.tolist() == [3, 2, 1, 3, 2]   # sorted subject ids numbered from 1
    assert np.array_equal(assign_groups([0] * 5, subjects, loso=True), groups)
    for g in set(groups.tolist()):
        assert len({s for s, h in zip(subjects, groups) if h == g}) == 1
    with pytest.raises(InputError, match="at least 2 subjects"):
        subject_groups(["a", "a"])


def test_fold_plan_counts_and_train_groups():
    labels = paper_labels()
    subjects = [f"s{i % 30:02d}" for i in range(labels.size)]
    groups = stratified_groups(labels, 10, seed=0)
    plan = fold_plan(groups, labels, subjects, fold_scheme_name(10), seed=0, n_augment=5)
    assert plan["fold_scheme"] == "groups10" and plan["n_folds"] == 10 and plan["n_clips"] == 650
    assert plan["class_counts"] == list(PAPER_COUNTS)
    for fold in plan["folds"]:
        g = fold["test_group"]
        assert g not in fold["train_groups"]
        assert sorted(fold["train_groups"] + [g]) == list(range(1, 11))
        test, train = fold["class_counts"]["test"], fold["class_counts"]["train"]
        assert [a + b for a, b in zip(test, train)] == list(PAPER_COUNTS)
        assert fold["n_test"] == 65 and fold["n_train"] == 585
        assert fold["n_train_augmented"] == 585 * 5
    loso = fold_plan(subject_groups(subjects), labels, subjects, "loso", seed=0)
    assert loso["n_folds"] == 30
    assert [f["test_subject"] for f in loso["folds"]] == sorted(set(subjects))


def test_list_lines_test_never_in_train_and_no_augmented_shard_in_test():
    plain = {g: f"/data/shards/group{g:02d}.h5" for g in (1, 2, 3)}
    aug = {g: f"/data/shards/group{g:02d}_aug.h5" for g in (1, 2, 3)}
    plan = fold_plan([1, 2, 3, 1, 2, 3], [0, 1, 2, 3, 0, 1], list("abcdef"), "groups3", 0)
    for fold in plan["folds"]:
        train, test = list_lines(fold, plain, aug)
        g = fold["test_group"]
        assert test == [plain[g]]
        assert plain[g] not in train and aug[g] not in train
        assert not any(p in aug.values() for p in test)
        others = [h for h in (1, 2, 3) if h != g]
        assert train == [p for h in others for p in (plain[h], aug[h])]
    train, test = list_lines(plan["folds"][0], plain, {})
    assert train == [plain[2], plain[3]]


def test_list_lines_reject_paths_caffe_cannot_read():
    plan = fold_plan([1, 2], [0, 1], ["a", "b"], "groups2", 0)
    with pytest.raises(InputError, match="whitespace"):
        list_lines(plan["folds"][0], {1: "/my data/group01.h5", 2: "/d/group02.h5"}, {})
    with pytest.raises(ValueError, match="absolute"):
        list_lines(plan["folds"][0], {1: "shards/group01.h5", 2: "/d/group02.h5"}, {})


def test_class_counts_always_have_the_four_classes():
    """A plan without Others still lists its (zero) count: folds.json has one column per class."""
    labels = [0, 1, 2] * 4
    groups = [1, 2] * 6
    plan = fold_plan(groups, labels, ["s%d" % i for i in range(12)], "groups2", 0)
    assert plan["class_counts"] == [4, 4, 4, 0]
    assert all(len(g["class_counts"]) == 4 for g in plan["groups"])


def test_fold_scheme_names():
    assert fold_scheme_name() == "groups10" and fold_scheme_name(5) == "groups5"
    assert fold_scheme_name(5, loso=True) == "loso"


def test_check_fold_count_refuses_what_no_stratified_split_can_make():
    with pytest.raises(InputError, match="--n-folds 1: need at least 2 groups"):
        check_fold_count([0, 1, 2, 3], 1)
    # Every class below the group count: refused, with the largest workable count named.
    with pytest.raises(InputError, match=r"no class has 5 clips .*Fix: --n-folds 3 or fewer"):
        check_fold_count([0, 0, 0, 1, 1, 2], 5)
    notes = []
    check_fold_count([0] * 5 + [1] * 2, 5, log=notes.append)      # largest class == groups
    assert notes == ["note: negative (2 clips) cannot appear in every one of the 5 fold groups"]
    check_fold_count([0] * 5 + [1] * 5, 5, log=notes.append)      # every class fits: no note
    assert len(notes) == 1
    check_fold_count([0] * 5 + [1] * 2, 5)                         # no log: silent


def test_stratified_groups_checks_the_class_counts_and_stays_quiet():
    with pytest.raises(InputError, match="no class has 5 clips"):
        stratified_groups([0, 1, 2, 3] * 2, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # sklearn's "least populated class" warning
        groups = stratified_groups([0] * 6 + [1] * 2, 3)
    assert sorted(np.bincount(groups)[1:].tolist()) == [2, 3, 3]


def test_two_subjects_are_enough_for_loso():
    assert subject_groups(["b", "a", "b"]).tolist() == [2, 1, 2]


def test_assign_groups_defaults_to_the_papers_ten_stratified_groups():
    labels = paper_labels()
    subjects = ["s%d" % (i % 7) for i in range(labels.size)]
    assert np.array_equal(assign_groups(labels, subjects), stratified_groups(labels, 10, 0))


def test_fold_plan_group_sizes_and_no_augmentation_by_default():
    plan = fold_plan([1, 1, 1, 2, 3, 3], [0, 1, 2, 3, 0, 1], list("abcdef"), "groups3", 0)
    assert [g["n_clips"] for g in plan["groups"]] == [3, 1, 2]
    assert [g["subjects"] for g in plan["groups"]] == [["a", "b", "c"], ["d"], ["e", "f"]]
    assert all(f["n_train_augmented"] == 0 for f in plan["folds"])
    assert [f["n_train"] for f in plan["folds"]] == [3, 5, 4]


def test_boundaries_of_the_group_count():
    check_fold_count([0, 0, 1, 1], 2)                          # two groups are enough
    assert sorted(stratified_groups([0] * 5, 5).tolist()) == [1, 2, 3, 4, 5]  # one clip each
    labels = paper_labels()
    assert np.array_equal(stratified_groups(labels), stratified_groups(labels, 10, seed=0))
