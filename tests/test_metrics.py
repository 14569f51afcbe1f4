import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from psn import metrics
from psn.metrics import (PAPER_PSN, PAPER_PSN_CONFUSION, majority_baseline, per_fold, scores,
                         scores_from_confusion, summary)

# Six clips: true 0,0,1,1,1,2; predicted 0,1,1,1,3,3. Folds: first three, last three.
Y = [0, 0, 1, 1, 1, 2]
P = [0, 1, 1, 1, 3, 3]
FOLDS = [1, 1, 1, 2, 2, 2]


def nan_equal(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), equal_nan=True)


def test_confusion_and_per_class_by_hand():
    s = scores(Y, P)
    assert s.confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert s.n == 6
    assert s.rr == pytest.approx(3 / 6)
    assert s.tp.tolist() == [1, 2, 0, 0]
    assert s.fp.tolist() == [0, 1, 0, 2]
    assert s.fn.tolist() == [1, 1, 1, 0]
    assert s.tn.tolist() == [4, 2, 5, 4]
    nan_equal(s.tpr, [1 / 2, 2 / 3, 0, math.nan])        # class 3 has no true clips
    nan_equal(s.tnr, [4 / 4, 2 / 3, 5 / 5, 4 / 6])
    nan_equal(s.precision, [1, 2 / 3, math.nan, 0])      # class 2 is never predicted
    nan_equal(s.f1, [2 / 3, 4 / 6, 0, 0])
    # UF1: class 3 is predicted (FP = 2) so F1_3 = 0 counts; UAR: class 3 has no recall.
    assert s.uf1 == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)
    assert s.uar == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)


def test_class_neither_present_nor_predicted_is_left_out_of_uf1_and_uar():
    s = scores([0, 1], [0, 1])
    assert s.uf1 == 1.0 and s.uar == 1.0  # not 0.5: classes 2 and 3 are absent
    nan_equal(s.f1, [1, 1, math.nan, math.nan])


def test_predicted_but_absent_class_counts_zero_in_uf1_only():
    s = scores([0, 0], [0, 3])
    assert s.uf1 == pytest.approx((2 / 3 + 0) / 2)
    assert s.uar == pytest.approx(1 / 2)
    nan_equal(s.tnr, [math.nan, 1, 1, 1 / 2])  # every clip is class 0: no TNR for class 0


def test_agrees_with_sklearn_when_every_class_is_present():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.5, y, rng.integers(0, 4, 200))
    s = scores(y, p)
    assert s.uf1 == pytest.approx(f1_score(y, p, average="macro"))
    assert s.uar == pytest.approx(recall_score(y, p, average="macro"))
    assert s.rr == pytest.approx(np.mean(y == p))


def test_paper_table7_pools_to_reported_rr_but_not_f1_or_uar():
    s = scores_from_confusion(PAPER_PSN_CONFUSION)
    assert s.n == 650
    assert s.support.tolist() == [55, 280, 50, 265]
    assert s.rr == pytest.approx(422 / 650)
    assert round(s.rr, 4) == pytest.approx(PAPER_PSN["rr"])
    # F1_c = 2TP/(2TP+FP+FN) from the table by hand
    f1 = [20 / (20 + 9 + 45), 452 / (452 + 120 + 54), 12 / (12 + 3 + 44), 360 / (360 + 96 + 85)]
    nan_equal(s.f1, f1)
    assert s.uf1 == pytest.approx(sum(f1) / 4)
    assert s.uar == pytest.approx((10 / 55 + 226 / 280 + 6 / 50 + 180 / 265) / 4)
    assert round(s.uf1, 4) == 0.4653 and round(s.uar, 4) == 0.4471
    assert abs(s.uf1 - PAPER_PSN["uf1"]) > 0.05  # docs/design.md §4: pooling does not reproduce F1


def test_normalised_rows_and_empty_row():
    s = scores([0, 0, 0, 1], [0, 0, 1, 1])
    n = s.normalised()
    nan_equal(n[0], [2 / 3, 1 / 3, 0, 0])
    nan_equal(n[1], [0, 1, 0, 0])
    assert np.isnan(n[2]).all() and np.isnan(n[3]).all()


def test_per_fold_and_summary_by_hand():
    folds = per_fold(Y, P, FOLDS)
    assert [f for f, _ in folds] == ["1", "2"]
    f1, f2 = folds[0][1], folds[1][1]
    assert (f1.rr, f2.rr) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    # fold 1: classes 0 and 1 only -> UF1 = (2/3 + 2/3) / 2; fold 2: classes 1, 2, 3
    assert f1.uf1 == pytest.approx(2 / 3)
    assert f2.uf1 == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert f1.uar == pytest.approx((1 / 2 + 1) / 2)
    assert f2.uar == pytest.approx((1 / 2 + 0) / 2)

    s = summary(Y, P, FOLDS)
    # One naming scheme: <metric>_pooled and <metric>_fold_mean/_fold_std/_fold_std_sample.
    assert set(s) == {"n_clips", "n_folds"} | {
        m + suffix for m in ("rr", "uf1", "uar")
        for suffix in ("_pooled", "_fold_mean", "_fold_std", "_fold_std_sample")}
    assert s["n_clips"] == 6 and s["n_folds"] == 2
    assert s["rr_pooled"] == pytest.approx(0.5)
    assert s["uf1_pooled"] == pytest.approx(1 / 3)
    assert s["uar_pooled"] == pytest.approx(7 / 18)
    assert s["rr_fold_mean"] == pytest.approx(0.5)
    assert s["rr_fold_std"] == pytest.approx(1 / 6)                   # population, ddof=0
    assert s["rr_fold_std_sample"] == pytest.approx(math.sqrt(2) / 6)  # ddof=1
    assert s["uf1_fold_mean"] == pytest.approx((2 / 3 + 2 / 9) / 2)
    assert s["uar_fold_mean"] == pytest.approx((3 / 4 + 1 / 4) / 2)


def test_fold_ids_sort_numerically():
    assert metrics.fold_order(["10", "2", "1"]) == ["1", "2", "10"]
    assert metrics.fold_order(["b", "a"]) == ["a", "b"]


def test_one_fold_has_zero_population_std_and_no_sample_std():
    s = summary(Y, P, [0] * 6)
    assert s["n_folds"] == 1 and s["rr_fold_std"] == 0.0 and math.isnan(s["rr_fold_std_sample"])
    assert s["rr_fold_mean"] == pytest.approx(s["rr_pooled"])


def test_majority_baseline_uses_the_other_folds():
    y = [0, 0, 1, 1, 1, 2, 3, 3]
    folds = [1, 1, 1, 1, 2, 2, 2, 2]
    # fold 1's training set is fold 2 (1, 2, 3, 3) -> 3; fold 2's is fold 1 (0, 0, 1, 1):
    # a tie, broken towards the lower class -> 0.
    assert majority_baseline(y, folds).tolist() == [3, 3, 3, 3, 0, 0, 0, 0]
    # one fold: no training set, the overall majority
    assert majority_baseline(y, [0] * 8).tolist() == [1] * 8


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="classes 0..3"):
        scores([0, 4], [0, 1])
    with pytest.raises(ValueError, match="differ in length"):
        scores([0, 1], [0])
    with pytest.raises(ValueError, match="no clips"):
        scores([], [])
    with pytest.raises(ValueError, match="4x4"):
        scores_from_confusion(np.ones((3, 3), dtype=int))


@pytest.mark.parametrize("bad", [[0, 1, -1], [0, 4, 1], [0.5, 1, 2]])
def test_labels_outside_the_four_classes_are_refused(bad):
    with pytest.raises(ValueError, match="integer classes 0..3"):
        metrics.scores(bad, [0, 1, 2])
    with pytest.raises(ValueError, match="integer classes 0..3"):
        metrics.scores([0, 1, 2], bad)


def test_two_dimensional_labels_are_refused():
    with pytest.raises(ValueError, match="one-dimensional"):
        scores([[0, 1]], [[0, 1]])


def test_confusion_given_as_nested_lists_and_negative_counts():
    # paper_results.json holds Table 7 as lists of lists.
    s = scores_from_confusion([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])
    assert s.n == 4 and s.rr == pytest.approx(3 / 4)
    for bad in ([[-1, 0, 0, 0]] + [[0, 0, 0, 0]] * 3, [[3, 0, 0, 0]] * 3 + [[0, 0, 0, -1]]):
        with pytest.raises(ValueError, match="non-negative"):
            scores_from_confusion(np.array(bad))


def test_length_mismatches_with_folds_are_refused():
    with pytest.raises(ValueError, match="labels, preds and folds differ in length"):
        per_fold([0, 1], [0, 1], [1])
    with pytest.raises(ValueError, match="labels and folds differ in length"):
        majority_baseline([0, 1, 1], [1, 2])


def test_undefined_values_are_nan_without_numpy_warnings():
    """Absent classes, empty confusion rows and a single fold are normal in per-fold and
    per-database tables: NaN, and no RuntimeWarning on the user's screen."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = scores([0, 0, 1], [0, 3, 1])
        nan_equal(s.tpr, [1 / 2, 1, math.nan, math.nan])
        assert np.isnan(s.normalised()[2]).all()
        one = summary(Y, P, [7] * 6)
    assert math.isnan(one["rr_fold_std_sample"]) and math.isnan(one["uf1_fold_std_sample"])


def test_every_fold_averaged_figure_has_its_spreads():
    s = summary(Y, P, FOLDS)
    # fold UF1s 2/3 and 2/9, fold UARs 3/4 and 1/4 (test_per_fold_and_summary_by_hand)
    assert s["uf1_fold_std"] == pytest.approx((2 / 3 - 2 / 9) / 2)
    assert s["uf1_fold_std_sample"] == pytest.approx((2 / 3 - 2 / 9) / math.sqrt(2))
    assert s["uar_fold_std"] == pytest.approx(1 / 4)
    assert s["uar_fold_std_sample"] == pytest.approx(1 / 2 / math.sqrt(2))
