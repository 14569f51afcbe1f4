"""psn.predictions: predictions.csv written, read back and validated (every refusal names the
file and the line), the folds' files joined, and clip_probabilities' frame averaging over a
deploy net's time-major rows (with a stand-in net: the arithmetic needs no Caffe)."""
import os

import h5py
import numpy as np
import pytest

from prediction_files import HEADER, PRED_A, write_csv
from psn.predictions import (PREDICTION_COLUMNS, PredictionsError, clip_probabilities,
                             join_predictions, n_prob_columns, prediction_columns,
                             read_predictions, write_predictions)


def rows_of(n_classes, n=3, fold="1"):
    """n rows for write_predictions whose pred is the argmax of their probabilities."""
    rows = []
    for i in range(n):
        probs = [0.1 / (n_classes - 1)] * n_classes
        probs[i % n_classes] = 0.9
        rows.append(["casme2", "casme2/sub%02d" % i, "EP%02d_%s" % (i, fold), fold,
                     (i + 1) % n_classes, i % n_classes] + probs)
    return rows


# ---------------------------------------------------------------- writing and reading back


def test_written_rows_read_back_as_they_were(tmp_path):
    path = str(tmp_path / "predictions.csv")
    rows = rows_of(4, n=5)
    write_predictions(path, rows)
    p = read_predictions(path)
    assert len(p) == 5 and p.path == path
    assert p.clip.tolist() == [r[2] for r in rows] and p.fold.tolist() == ["1"] * 5
    assert p.label.tolist() == [r[4] for r in rows] and p.label.dtype == np.int64
    assert p.pred.tolist() == [r[5] for r in rows]
    np.testing.assert_allclose(p.prob, [r[6:] for r in rows])
    # Atomic: nothing but the file itself is left in the folder.
    assert os.listdir(str(tmp_path)) == ["predictions.csv"]


def test_the_class_count_follows_the_rows_or_the_argument(tmp_path):
    three = str(tmp_path / "three.csv")
    write_predictions(three, rows_of(3))
    with open(three) as f:
        assert f.readline().strip() == ",".join(prediction_columns(3))
    assert read_predictions(three).prob.shape == (3, 3)
    # No rows: the paper's four classes, unless told otherwise.
    empty = str(tmp_path / "empty.csv")
    write_predictions(empty, [])
    with open(empty) as f:
        assert f.read().strip() == HEADER
    write_predictions(empty, [], n_classes=3)
    with open(empty) as f:
        assert f.read().strip() == ",".join(prediction_columns(3))


def test_columns_are_found_by_name(tmp_path):
    """Another column order, an extra column, spaces around the names, a byte-order mark and
    blank lines (or rows of empty cells, as spreadsheets save them) are read."""
    p = tmp_path / "preds.csv"
    p.write_bytes(("\ufeffnote, prob_3,prob_2 ,prob_1,prob_0,pred,label,fold,clip,subject,database\n"
                   "x,0.1,0.1,0.7,0.1,1,0,2,c1,s1,samm\n"
                   "\n"
                   ", ,,,,,,,,,\n"
                   "y,0.6,0.2,0.1,0.1,3,3,2,c2,s1,samm\n").encode("utf-8"))
    pr = read_predictions(str(p))
    assert pr.clip.tolist() == ["c1", "c2"] and pr.database.tolist() == ["samm", "samm"]
    assert pr.pred.tolist() == [1, 3] and pr.label.tolist() == [0, 3]
    np.testing.assert_allclose(pr.prob[1], [0.1, 0.1, 0.2, 0.6])


def test_probabilities_may_stray_from_0_and_1_by_rounding(tmp_path):
    p = tmp_path / "preds.csv"
    p.write_text(HEADER + "\nsamm,s1,c1,1,0,0,1.000001,0,0,-0.000001\n")
    np.testing.assert_allclose(read_predictions(str(p)).prob, [[1.000001, 0, 0, -1e-6]])


def test_two_classes_are_a_file_of_their_own(tmp_path):
    """Fewer than two prob_ columns is held to the paper's four; two are two classes."""
    p = tmp_path / "preds.csv"
    p.write_text("database,subject,clip,fold,label,pred,prob_0,prob_1\nsamm,s1,c1,1,1,1,0.2,0.8\n")
    assert read_predictions(str(p)).prob.shape == (1, 2)


def test_a_tie_within_rounding_is_a_valid_pred(tmp_path):
    p = tmp_path / "preds.csv"
    p.write_text(HEADER + "\nsamm,s1,c1,1,0,1,0.4,0.4,0.1,0.1\n"
                          "samm,s1,c2,1,0,0,0.399999,0.400001,0.1,0.1\n")
    assert read_predictions(str(p)).pred.tolist() == [1, 0]


# ---------------------------------------------------------------- refusals


def test_missing_column_names_the_file(tmp_path):
    p = tmp_path / "preds.csv"
    p.write_text("database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2\n")
    with pytest.raises(PredictionsError, match=r"preds\.csv:1: missing column\(s\) prob_3"):
        read_predictions(str(p), n_classes=4)
    p.write_text("database,subject,clip,fold,label,pred,prob_0\n")
    with pytest.raises(PredictionsError, match=r"preds\.csv:1: missing column\(s\) prob_1, prob_2, prob_3"):
        read_predictions(str(p))


def test_a_column_given_twice_is_refused(tmp_path):
    p = tmp_path / "preds.csv"
    p.write_text(HEADER + ",prob_0\nsamm,s1,c1,1,0,0,0.7,0.1,0.1,0.1,0.7\n")
    with pytest.raises(PredictionsError, match=r"preds\.csv:1: column\(s\) prob_0 appear twice"):
        read_predictions(str(p))


def test_a_three_class_file_reads_as_three_classes(tmp_path):
    """MEGC 2019's predictions: prob_0..prob_2; a class index 3 is then no class."""
    p = tmp_path / "preds.csv"
    p.write_text("database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2\n"
                 "samm,samm/006,a,1,2,0,0.5,0.2,0.3\n")
    pr = read_predictions(str(p))
    assert pr.prob.shape == (1, 3) and (pr.label[0], pr.pred[0]) == (2, 0)
    p.write_text("database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2\n"
                 "samm,samm/006,a,1,3,0,0.5,0.2,0.3\n")
    with pytest.raises(PredictionsError, match=r"preds\.csv:2: label '3' is not a class; use an integer "
                                               r"0..2 \(one per prob_ column\)"):
        read_predictions(str(p))


@pytest.mark.parametrize("row,message", [
    ("samm,samm/s9,clipX,2,1,4,0.1,0.7,0.1,0.1", r":8: pred '4' is not a class; use an integer "
                                                 r"0..3 \(0 Positive, 1 Negative, 2 Surprise, "
                                                 r"3 Others\)"),
    ("samm,samm/s9,clipX,2,1,1,2.0,0.7,0.1,0.1", r":8: prob_0 '2.0' is not a probability"),
    ("samm,samm/s9,clipX,2,1,1,0.5,0.7,0.1,0.1", r":8: prob_0..prob_3 sum to 1.4000"),
    ("samm,samm/s1,clip5,2,1,1,0.1,0.7,0.1,0.1", r":8: clip samm/samm/s1/clip5 already "
                                                 r"predicted on line 7"),
    ("samm,,clipX,2,1,1,0.1,0.7,0.1,0.1", r":8: empty subject"),
    # Scored from pred, a row whose pred is not its most probable class counted an answer the
    # probabilities do not give.
    ("samm,samm/s9,clipX,2,1,2,0.1,0.7,0.1,0.1", r":8: pred 2 is not the most probable class "
                                                 r"\(prob_2 0.1 < prob_1 0.7\): the file was edited "
                                                 r"or mixes two runs; pred must be the argmax of "
                                                 r"prob_0..prob_3$"),
    ("samm,samm/s9,clipX,2,1,1,0.8,0.7,0.1,-0.6", r":8: prob_3 '-0.6' is not a probability"),
    ("samm,samm/s9,clipX,2,1,1,nan,0.7,0.1,0.1", r":8: prob_0 'nan' is not a probability"),
    ("samm,samm/s9,clipX,2,1,1,abc,0.7,0.1,0.1", r":8: prob_0 'abc' is not a probability"),
    ("samm,samm/s9,clipX,2,1,1,0.1,0.7,0.2", r":8: 9 fields, the header has 10"),
    ("samm,samm/s9,clipX,2,-1,1,0.1,0.7,0.1,0.1", r":8: label '-1' is not a class"),
])
def test_malformed_rows(tmp_path, row, message):
    p = write_csv(tmp_path / "preds.csv", PRED_A, extra_rows=[row])
    with pytest.raises(PredictionsError, match=r"preds\.csv" + message):
        read_predictions(p)


def test_a_blank_line_does_not_shift_the_line_named(tmp_path):
    p = write_csv(tmp_path / "preds.csv", PRED_A,
                  extra_rows=["", "samm,samm/s9,clipX,2,1,2,0.1,0.7,0.1,0.1"])
    with pytest.raises(PredictionsError, match=r"preds\.csv:9: pred 2"):
        read_predictions(p)


def test_class_written_as_float_is_accepted(tmp_path):
    p = tmp_path / "preds.csv"
    p.write_text(HEADER + "\ncasme,casme/s1,c1,0,2.0,2,0,0,1,0\n")
    assert read_predictions(str(p)).label.tolist() == [2]


def test_empty_predictions(tmp_path):
    p = tmp_path / "preds.csv"
    p.write_text(HEADER + "\n")
    with pytest.raises(PredictionsError, match="no clips"):
        read_predictions(str(p))
    p.write_text("")
    with pytest.raises(PredictionsError, match="is empty"):
        read_predictions(str(p))


def test_an_unreadable_file_is_a_predictions_error(tmp_path):
    with pytest.raises(PredictionsError, match="cannot read predictions file .*nope.csv"):
        read_predictions(str(tmp_path / "nope.csv"))
    p = tmp_path / "binary.csv"
    p.write_bytes(HEADER.encode() + b"\n\xff\xfe\x00garbage\n")
    with pytest.raises(PredictionsError, match=r"binary\.csv is not text \(byte %d" % (len(HEADER) + 1)):
        read_predictions(str(p))


def test_n_prob_columns_counts_from_prob_0_without_a_gap():
    assert n_prob_columns(PREDICTION_COLUMNS) == 4
    assert n_prob_columns(["prob_1", "prob_0", "prob_3"]) == 2
    assert n_prob_columns(["prob_1", "prob_2"]) == 0 and n_prob_columns([]) == 0


# ---------------------------------------------------------------- joining the folds


def test_join_predictions_concatenates_the_folds_in_order(tmp_path):
    paths = []
    for fold in (1, 2, 3):
        path = str(tmp_path / ("fold%d.csv" % fold))
        write_predictions(path, rows_of(4, n=fold + 1, fold=str(fold)))
        paths.append(path)
    # A column the run's file does not have is left out.
    with open(paths[1]) as f:
        lines = f.read().splitlines()
    with open(paths[1], "w") as f:
        f.write("\n".join(line + (",extra" if i == 0 else ",x") for i, line in enumerate(lines)) + "\n")
    out = str(tmp_path / "predictions.csv")
    assert join_predictions(paths, out) == 2 + 3 + 4
    with open(out) as f:
        assert f.readline().strip() == HEADER
    p = read_predictions(out)
    assert p.fold.tolist() == ["1"] * 2 + ["2"] * 3 + ["3"] * 4
    assert p.clip.tolist()[:3] == ["EP00_1", "EP01_1", "EP00_2"]


def test_join_predictions_keeps_three_classes(tmp_path):
    paths = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    write_predictions(paths[0], rows_of(3, fold="1"))
    write_predictions(paths[1], rows_of(3, fold="2"))
    out = str(tmp_path / "predictions.csv")
    assert join_predictions(paths, out) == 6
    assert read_predictions(out, 3).prob.shape == (6, 3)


def test_folds_of_different_class_counts_are_not_joined(tmp_path):
    paths = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    write_predictions(paths[0], rows_of(4, fold="1"))
    write_predictions(paths[1], rows_of(3, fold="2"))
    out = tmp_path / "predictions.csv"
    with pytest.raises(PredictionsError, match=r"b\.csv has 3 prob_ columns, the folds before it 4"):
        join_predictions(paths, str(out))
    assert not out.exists()


# ---------------------------------------------------------------- clip_probabilities


class _Blob:
    def __init__(self, shape):
        self.data = np.zeros(shape, dtype=np.float32)


class FakeDeployNet:
    """A deploy net of batch N clips as pycaffe shows it: clip-major input blobs, time-major
    output rows (row t*N + n is frame t of clip n). Each row's 'softmax' is one-hot on
    raw[n, t] (a class number), so a clip's average is its frames' class histogram."""

    def __init__(self, N, T=4, C=3):
        self.N, self.T, self.C = N, T, C
        self.blobs = {"raw": _Blob((N, T)), "sparse": _Blob((N, T)), "cont": _Blob((N, T))}
        self.inputs = ["raw", "sparse", "cont"]   # pycaffe's Net.inputs
        self.fed = []

    def forward(self):
        self.fed.append({k: b.data.copy() for k, b in self.blobs.items()})
        prob = np.zeros((self.T * self.N, self.C))
        for t in range(self.T):
            for n in range(self.N):
                prob[t * self.N + n, int(self.blobs["raw"].data[n, t])] = 1.0
        return {"prob": prob}


def test_clip_probabilities_average_each_clips_frames():
    # 5 clips in batches of 2: the last batch holds one clip, padded with itself.
    raw = np.array([[0, 0, 0, 0], [1, 1, 2, 2], [2, 2, 2, 1], [0, 1, 2, 0], [1, 1, 1, 1]],
                   dtype=np.float32)
    sparse = raw + 10
    cont = np.ones_like(raw)
    net = FakeDeployNet(N=2)
    prob = clip_probabilities(net, raw, sparse, cont)
    np.testing.assert_allclose(prob, [[1, 0, 0], [0, .5, .5], [0, .25, .75], [.5, .25, .25],
                                      [0, 1, 0]])
    assert len(net.fed) == 3
    np.testing.assert_array_equal(net.fed[0]["sparse"], sparse[:2])
    np.testing.assert_array_equal(net.fed[2]["raw"], raw[[4, 4]])
    np.testing.assert_array_equal(net.fed[2]["sparse"], sparse[[4, 4]])


def test_clip_probabilities_read_hdf5_datasets(tmp_path):
    rng = np.random.RandomState(0)
    raw = rng.randint(0, 3, (7, 4)).astype(np.float32)
    path = str(tmp_path / "shard.h5")
    with h5py.File(path, "w") as f:
        for name, value in (("raw", raw), ("sparse", raw), ("cont", np.ones_like(raw))):
            f[name] = value
    with h5py.File(path, "r") as f:
        got = clip_probabilities(FakeDeployNet(N=3), f["raw"], f["sparse"], f["cont"])
    want = np.stack([np.bincount(r.astype(int), minlength=3) / 4.0 for r in raw])
    np.testing.assert_allclose(got, want)


def test_a_short_last_batch_is_padded_with_its_first_clip():
    # 5 clips in batches of 3: the last batch is clips 3, 4 and clip 3 again.
    raw = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [0, 1, 1, 1], [2, 2, 0, 0]],
                   dtype=np.float32)
    net = FakeDeployNet(N=3)
    prob = clip_probabilities(net, raw, raw * 2, np.ones_like(raw))
    np.testing.assert_allclose(prob[3:], [[.25, .75, 0], [.5, 0, .5]])
    assert len(prob) == 5 and len(net.fed) == 2
    np.testing.assert_array_equal(net.fed[1]["raw"], raw[[3, 4, 3]])
    np.testing.assert_array_equal(net.fed[1]["sparse"], 2 * raw[[3, 4, 3]])


def test_join_predictions_reads_a_fold_saved_with_a_byte_order_mark(tmp_path):
    """A fold file saved by a spreadsheet (UTF-8 with BOM) joins like any other: its first
    column is still `database`."""
    a, b = str(tmp_path / "a.csv"), str(tmp_path / "b.csv")
    write_predictions(a, [["casme2", "sub01", "EP01", 1, 0, 0, "0.7", "0.1", "0.1", "0.1"]])
    write_predictions(b, [["samm", "006", "006_1", 2, 1, 1, "0.1", "0.7", "0.1", "0.1"]])
    with open(b, encoding="utf-8") as f:
        text = f.read()
    with open(b, "w", encoding="utf-8-sig") as f:
        f.write(text)
    out = str(tmp_path / "all.csv")
    assert join_predictions([a, b], out) == 2
    assert list(read_predictions(out).database) == ["casme2", "samm"]
