"""The pipeline from clips to Caffe's HDF5 inputs (preprocessing/pipeline.py's run and its
stages, end to end).

The fake databases and the run of them that conftest.py's session fixtures `roots` and
`first` make (tests/pipeline_helpers.py); the tests then read the outputs, rerun on copies
(resume, LOSO) and run again with two worker processes (determinism). The tests of one part
alone are in that part's own file (test_clip_chain.py, test_clip_cache.py, test_manifest.py,
test_contact_sheet.py, test_cli.py, test_hdf5_shards.py: the shard writers and Caffe's HDF5Data
reading their shards).
"""
import filecmp
import json
import os
import shutil

import h5py
import numpy as np
import pytest

from pipeline_helpers import AUGMENT, CORRUPT, OPTIONS, cache_file_of, copy_run, manifest_of
from preprocessing import hdf5_shards
from preprocessing.augment import apply_variant
from preprocessing.cli import main as cli_main
from preprocessing.errors import InputError
from preprocessing.hdf5_shards import read_shard
from preprocessing.loaders import load_databases
from preprocessing.manifest import read_manifest
from preprocessing.clip_cache import cache_path
from preprocessing.clip_chain import Options
from preprocessing.pipeline import run


def all_files(out):
    return sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)


# ------------------------------------------------------------------------------ outputs

def test_layout_and_summary(first):
    out, summary, lines = first
    files = all_files(out)
    for name in ("manifest.csv", "skipped.csv", "folds.json", "contact_sheet.png",
                 "shards/group01.h5", "shards/group02.h5", "shards/group01_aug.h5",
                 "shards/group02_aug.h5", "folds/fold01/train.txt", "folds/fold01/test.txt",
                 "folds/fold02/train.txt", "folds/fold02/test.txt",
                 "cache/casme2/sub01/EP02_01f.npz", "cache/samm/006/006_1_2.npz"):
        assert name in files, name
    assert not [f for f in files if ".tmp" in f], "temporary files left behind"
    assert summary["clips"] == 16 and summary["included"] == 15 and summary["excluded"] == 1
    assert summary["computed"] == 16 and summary["cached"] == 0
    assert summary["per_database"] == {"casme2": {"included": 7, "excluded": 1},
                                       "samm": {"included": 8, "excluded": 0}}
    text = "\n".join(lines)
    assert "casme2            7        1" in text and "samm              8        0" in text
    assert "included per class: positive" in text and "time:" in text


def test_shards_layout_values_and_augmentation(first):
    out = first[0]
    rows = manifest_of(out)
    seen = []
    for g in (1, 2):
        s = read_shard(os.path.join(out, "shards", f"group{g:02d}.h5"))
        K = s["raw"].shape[0]
        assert s["raw"].shape == (K, 16, 3, 112, 112) and s["raw"].dtype == np.uint8
        assert s["sparse"].shape == (K, 16, 1, 112, 112) and s["sparse"].dtype == np.float32
        assert s["label"].shape == (K, 16) and s["label"].dtype == np.float32
        assert s["cont"].shape == (K, 16) and s["cont"].dtype == np.float32
        assert s["clip_label"].dtype == np.int32 and s["clip_index"].dtype == np.int32
        assert np.all(s["cont"][:, 0] == 0) and np.all(s["cont"][:, 1:] == 1)
        assert np.all(s["label"] == s["clip_label"][:, None])
        for k, idx in enumerate(s["clip_index"]):
            row = rows[idx]
            assert row["group"] == str(g) and int(row["label"]) == s["clip_label"][k]
            with np.load(cache_file_of(out, row)) as z:
                raw, sparse = z["raw"], z["sparse"]
            assert np.array_equal(s["raw"][k], raw.transpose(0, 3, 1, 2))
            assert np.array_equal(s["sparse"][k, :, 0], sparse)
            if row["database"] == "samm":   # gray frames repeated to 3 channels
                assert np.array_equal(s["raw"][k, :, 0], s["raw"][k, :, 1])
                assert np.array_equal(s["raw"][k, :, 0], s["raw"][k, :, 2])
            # E is the sparse part: many exact zeros, and not all zero.
            assert 0 < np.count_nonzero(sparse) < sparse.size
            seen.append(int(idx))
        a = read_shard(os.path.join(out, "shards", f"group{g:02d}_aug.h5"))
        assert a["raw"].shape == (2 * K, 16, 3, 112, 112)
        assert np.array_equal(a["clip_index"], np.repeat(s["clip_index"], 2))
        assert json.loads(a["attrs"]["variants"]) == list(AUGMENT)
        for v, name in enumerate(AUGMENT):
            r, e = apply_variant(s["raw"][0].transpose(0, 2, 3, 1), s["sparse"][0, :, 0], name)
            assert np.array_equal(a["raw"][v], r.transpose(0, 3, 1, 2))
            assert np.array_equal(a["sparse"][v, :, 0], e)
    assert sorted(seen) == [int(r["index"]) for r in rows if r["included"] == "1"]


def test_fold_lists_and_folds_json(first):
    out = first[0]
    plan = json.load(open(os.path.join(out, "folds.json")))
    assert plan["fold_scheme"] == "groups2" and plan["seed"] == 0 and plan["n_folds"] == 2
    assert plan["augment"] == list(AUGMENT) and plan["n_clips"] == 15
    rows = manifest_of(out)
    for fold in plan["folds"]:
        g = fold["test_group"]
        test = open(os.path.join(out, "folds", f"fold{g:02d}", "test.txt")).read().splitlines()
        train = open(os.path.join(out, "folds", f"fold{g:02d}", "train.txt")).read().splitlines()
        # Relative to OUT, so the folder can be moved or copied.
        assert test == [os.path.join("shards", f"group{g:02d}.h5")]
        other = 3 - g
        assert train == [os.path.join("shards", f"group{other:02d}.h5"),
                         os.path.join("shards", f"group{other:02d}_aug.h5")]
        assert all(os.path.isfile(os.path.join(out, p)) for p in train + test)
        assert fold["test_shards"] == test and fold["train_list"] == os.path.join(
            "folds", f"fold{g:02d}", "train.txt")
        assert not set(test) & set(train) and not any("_aug" in p for p in test)
        counts = np.bincount([int(r["label"]) for r in rows if r["group"] == str(g)], minlength=4)
        assert fold["class_counts"]["test"] == counts.tolist()
    sizes = [e["n_clips"] for e in plan["groups"]]
    assert sorted(sizes) == [7, 8]     # stratified halves of 15


# ------------------------------------------------------------------------------ reruns

def test_rerun_recomputes_only_what_is_missing(first, roots, tmp_path):
    out = copy_run(first, tmp_path)
    rows = manifest_of(out)
    victim = next(r for r in rows if r["included"] == "1" and r["group"] == "1")
    os.remove(cache_file_of(out, victim))
    os.remove(os.path.join(out, "shards", "group02.h5"))
    kept = os.path.join(out, "shards", "group01.h5")
    stat = os.stat(kept)
    summary = run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1, progress=False,
                  log=lambda *a: None)
    assert summary["computed"] == 1 and summary["cached"] == 15
    # The recomputed clip is bit-identical, so its group's shard stays; the deleted one returns.
    assert summary["shards_written"] == ["group02.h5"]
    assert os.stat(kept).st_mtime_ns == stat.st_mtime_ns
    assert filecmp.cmp(os.path.join(out, "manifest.csv"), os.path.join(first[0], "manifest.csv"),
                       shallow=False)
    for name in ("group01.h5", "group02.h5", "group01_aug.h5"):
        a = read_shard(os.path.join(out, "shards", name))
        b = read_shard(os.path.join(first[0], "shards", name))
        for key in hdf5_shards.DATASETS:
            assert np.array_equal(a[key], b[key]), (name, key)
    # Nothing missing: nothing recomputed, nothing rewritten.
    again = run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT,
                workers=1, progress=False, log=lambda *a: None)
    assert again["computed"] == 0 and again["shards_written"] == []


def test_frames_replaced_at_the_same_size_are_recomputed_and_a_copied_database_is_not(first, roots, tmp_path):
    """The cache stamp held each frame's name and size: frames replaced by their mirror images
    at the same size were "cached". A database copied elsewhere (new times, same bytes, new
    absolute paths) stays cached and writes no shard."""
    import cv2
    dbs = {name: str(tmp_path / "dbs" / name) for name in roots[0]}
    for name, src in roots[0].items():
        shutil.copytree(src, dbs[name], copy_function=shutil.copy)      # new modification times
    out = copy_run(first, tmp_path)
    again = run(dbs, out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
                progress=False, log=lambda *a: None)
    assert again["computed"] == 0 and again["shards_written"] == []
    clips, _ = load_databases(dbs)
    clip = next(c for c in clips if c.database == "casme2" and (c.subject, c.clip) != CORRUPT[:2])
    for frame in clip.frames:
        size = os.path.getsize(frame)
        mirrored = cv2.flip(cv2.imread(frame), 1)
        for quality in range(95, 5, -5):
            data = cv2.imencode(".jpg", mirrored, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            if len(data) <= size:
                break
        with open(frame, "wb") as f:
            f.write(data + b"\0" * (size - len(data)))       # decoders stop at the JPEG's end
        assert os.path.getsize(frame) == size
    changed = run(dbs, out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
                  progress=False, log=lambda *a: None)
    assert changed["computed"] == 1 and changed["shards_written"]


@pytest.mark.slow
def test_same_inputs_two_workers_give_identical_shards_and_manifest(first, roots, tmp_path):
    out = str(tmp_path / "parallel")
    summary = run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=2,
                  progress=False, log=lambda *a: None)
    assert summary["computed"] == 16 and summary["workers"] == 2
    assert filecmp.cmp(os.path.join(out, "manifest.csv"), os.path.join(first[0], "manifest.csv"),
                       shallow=False)
    for name in ("group01.h5", "group02.h5", "group01_aug.h5", "group02_aug.h5"):
        a, b = os.path.join(out, "shards", name), os.path.join(first[0], "shards", name)
        assert filecmp.cmp(a, b, shallow=False), name
    pa = json.load(open(os.path.join(out, "folds.json")))
    pb = json.load(open(os.path.join(first[0], "folds.json")))
    assert [g["class_counts"] for g in pa["groups"]] == [g["class_counts"] for g in pb["groups"]]


def test_loso_from_the_cache(first, roots, tmp_path):
    out = copy_run(first, tmp_path)
    summary = run(roots[0], out, loso=True, options=OPTIONS, augment=(), workers=1,
                  progress=False, log=lambda *a: None)
    rows = manifest_of(out)
    subjects = sorted({r["subject"] for r in rows if r["included"] == "1"})
    assert summary["computed"] == 0 and summary["n_folds"] == len(subjects) == 11
    plan = json.load(open(os.path.join(out, "folds.json")))
    assert plan["fold_scheme"] == "loso" and plan["augment"] == []
    for fold in plan["folds"]:
        members = {r["subject"] for r in rows if r["group"] == str(fold["test_group"])}
        assert members == {fold["test_subject"]}
        train = open(os.path.join(out, fold["train_list"])).read().splitlines()
        assert len(train) == len(subjects) - 1 and not any("_aug" in p for p in train)
    # The earlier run's shards and folds beyond the new plan are gone; no augmented shards.
    names = sorted(os.listdir(os.path.join(out, "shards")))
    assert names == [f"group{g:02d}.h5" for g in range(1, 12)]


# ------------------------------------------------------------------------------ bad input

def test_no_face_excludes_every_clip_with_its_reason(roots, tmp_path):
    out = str(tmp_path / "noface")
    with pytest.raises(InputError, match="no clip could be used"):
        run({"samm": roots[0]["samm"]}, out, n_folds=2, options=Options(tol=0.03), workers=1,
            progress=False, log=lambda *a: None)
    rows = manifest_of(out)
    clips, _ = load_databases({"samm": roots[0]["samm"]})
    assert len(rows) == 8
    for row, clip in zip(rows, clips):
        assert row["included"] == "0" and row["group"] == ""
        assert row["reason"].startswith(f"no face found on the onset frame ({clip.frames[0]})")
    assert not os.path.exists(os.path.join(out, "shards"))


# ------------------------------------------------------------------------------ Caffe


# ------------------------------------------------------------------------------ real faces

def test_synthetic_faces_end_to_end_with_loso(roots, tmp_path, caffe):
    """Drawn faces (synthetic, CASME II format) are found and cropped by the
    cascades; the fake SAMM frames have no face and no box is given, so those clips are
    excluded with the reason; leave-one-subject-out over the two synthetic subjects."""
    from synthetic import generate
    db = generate(str(tmp_path / "synthetic"), n_subjects=2, clips_per_subject=2, seed=0)["out_dir"]
    out = str(tmp_path / "out")
    summary = run({"casme2": db, "samm": roots[0]["samm"]}, out, loso=True,
                  options=Options(tol=1e-3), augment=("flip",), workers=1, progress=False,
                  log=lambda *a: None)
    rows = manifest_of(out)
    faces = [r for r in rows if r["database"] == "casme2"]
    assert len(faces) == 4 and summary["per_database"]["samm"] == {"included": 0, "excluded": 8}
    for r in faces:
        assert r["included"] == "1" and "box given by the user" not in r["notes"], r
        assert r["group"] == {"casme2/sub01": "1", "casme2/sub02": "2"}[r["subject"]]
    for r in rows:
        if r["database"] == "samm":
            assert r["reason"].startswith("no face found on the onset frame (")
    plan = json.load(open(os.path.join(out, "folds.json")))
    assert plan["fold_scheme"] == "loso" and [f["test_subject"] for f in plan["folds"]] == \
        ["casme2/sub01", "casme2/sub02"]
    s = read_shard(os.path.join(out, "shards", "group01.h5"))
    # A face crop: skin-coloured middle, not the background; E is sparse and moves somewhere.
    for k in range(s["raw"].shape[0]):
        mid = s["raw"][k, 0, :, 40:72, 40:72].astype(float)
        assert mid.mean() > 60
        e = s["sparse"][k]
        assert 0 < np.count_nonzero(e) < e.size and np.abs(e).max() > 0.02
    proto = tmp_path / "data.prototxt"
    # sub01's plain + flip shards, as run_folds hands them to Caffe (absolute paths).
    from preprocessing.layout import DataFolder
    source = DataFolder(out).caffe_lists(2, str(tmp_path))["train"][0]
    proto.write_text('layer { name: "d" type: "HDF5Data" top: "raw" top: "sparse" top: "label" '
                     f'top: "cont" hdf5_data_param {{ source: "{source}" batch_size: 2 }} }}\n')
    net = caffe.Net(str(proto), caffe.TEST)
    net.forward()
    assert np.array_equal(net.blobs["raw"].data, s["raw"][:2].astype(np.float32))
    assert np.array_equal(net.blobs["sparse"].data, s["sparse"][:2])


# ------------------------------------------------------------- sensor noise at the clip's ends


# ------------------------------------------------------------------- damaged frames


def test_a_fold_count_the_classes_cannot_give_is_refused_before_computing(roots, tmp_path):
    out = str(tmp_path / "folds")
    said = []
    # 16 clips, no class with 10: refused before any clip is computed, not by sklearn after.
    with pytest.raises(InputError, match="--n-folds 10: no class has 10 clips"):
        run(roots[0], out, n_folds=10, options=OPTIONS, workers=1, progress=False, log=said.append)
    assert not os.path.exists(os.path.join(out, "cache"))
    # --n-folds 0 is refused before any clip, not taken as the default 10.
    assert cli_main(["run", "--casme2", roots[0]["casme2"], "--n-folds", "0", "--out", out,
                     "--no-progress"]) == 2
    assert not os.path.exists(os.path.join(out, "cache"))
    from preprocessing.folds import check_fold_count
    check_fold_count([0] * 12 + [1] * 3, 10, said.append)
    assert "negative (3 clips) cannot appear in every one of the 10 fold groups" in said[-1]


def test_temporary_files_of_a_killed_run_are_removed(first, roots, tmp_path):
    out = copy_run(first, tmp_path, "tmpfiles")
    left = [os.path.join(out, "shards", ".group01.h5.tmp4242-139871"),
            os.path.join(out, "cache", "casme2", "sub01", ".EP02_01f.npz.tmp4242-1")]
    for path in left:
        open(path, "wb").close()
    said = []
    run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=said.append)
    assert not any(os.path.exists(p) for p in left)
    assert any("removed 2 temporary file(s)" in s for s in said)


def test_a_damaged_shard_is_written_again_on_a_rerun(first, roots, tmp_path):
    from preprocessing.hdf5_shards import shard_problem
    out = copy_run(first, tmp_path, "damaged")
    shard = os.path.join(out, "shards", "group01.h5")
    assert shard_problem(shard) is None
    with h5py.File(shard, "r+") as f:
        f["sparse"][0, 3, 0, 10, 10] = np.nan
    assert "non-finite" in shard_problem(shard)
    with h5py.File(shard, "r+") as f:
        f["sparse"][0, 3, 0, 10, 10] = 0.5          # finite, but not what was written
    assert "checksum" in shard_problem(shard)
    said = []
    run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=said.append)
    assert any("group01.h5: its datasets (frames, labels or clip indices) no longer match" in s
               and "writing it again" in s for s in said)
    assert shard_problem(shard) is None
    # A label edited inside the shard is found and repaired the same way.
    with h5py.File(shard, "r") as f:
        written = f["clip_label"][()]
    with h5py.File(shard, "r+") as f:
        f["clip_label"][0] = (written[0] + 1) % 4
    assert "checksum" in shard_problem(shard)
    said = []
    run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=said.append)
    assert any("group01.h5" in s and "writing it again" in s for s in said)
    with h5py.File(shard, "r") as f:
        assert (f["clip_label"][()] == written).all()


def test_an_unknown_shard_compression_is_refused_before_any_clip(tmp_path, roots):
    with pytest.raises(InputError, match="--shard-compression: 'lzf' is not one of none, gzip"):
        run(roots[0], str(tmp_path / "out"), n_folds=2, options=OPTIONS, augment=AUGMENT,
            workers=1, progress=False, log=lambda *a: None, shard_compression="lzf")
    assert not os.path.exists(tmp_path / "out" / "cache")


def test_shards_that_cannot_fit_are_not_started(first, roots, tmp_path, monkeypatch):
    import collections
    from preprocessing import pipeline as P
    out = copy_run(first, tmp_path, "full")
    for name in os.listdir(os.path.join(out, "shards")):
        os.remove(os.path.join(out, "shards", name))
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(P.shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9, 10 ** 6))
    want = r"shards: the 4 shard\(s\) to write need about [1-9][\d,]* MiB, and 1 MiB are free"
    with pytest.raises(InputError, match=want):
        run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
            progress=False, log=lambda *a: None)
    assert os.listdir(os.path.join(out, "shards")) == []


# ------------------------------------------------------------------------------ Fig. 10's inputs


@pytest.mark.slow
def test_variants_read_each_clip_once_and_match_separate_runs(first, roots, tmp_path):
    """run_rpca_settings (Fig. 10's sweep): the default-lambda output is byte for byte the one
    `run` made, another lambda's cache holds what process_clip gives alone, and each output
    is a complete folder."""
    from preprocessing.clip_cache import process_clip
    from preprocessing.pipeline import run_rpca_settings
    other = Options(face_box=(0, 0, 48, 48), tol=0.03, lam=0.02)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    lines = []
    res = run_rpca_settings(roots[0], [(a, OPTIONS), (b, other)], n_folds=2, seed=0,
                            augment=AUGMENT, workers=1, progress=False, log=lines.append)
    assert res[a]["included"] == first[1]["included"] and res[b]["computed"] == 0
    assert any("2 RPCA settings" in line for line in lines)
    for name in ("manifest.csv", "folds.json", "shards/group01.h5", "shards/group02_aug.h5"):
        assert filecmp.cmp(os.path.join(first[0], name), os.path.join(a, name), shallow=False), name
    clips, _ = load_databases(roots[0])
    alone = str(tmp_path / "alone.npz")
    for clip in clips[:3]:
        process_clip(clip, alone, other)
        with np.load(alone) as x, np.load(cache_path(os.path.join(b, "cache"), clip)) as y:
            assert json.loads(str(x["stamp"])) == json.loads(str(y["stamp"]))
            assert sorted(x.files) == sorted(y.files)
            for key in set(x.files) & {"raw", "sparse"}:
                assert (x[key] == y[key]).all()
    # The corrupt frame excludes its clip under every setting.
    rows = {r["clip"]: r for r in read_manifest(os.path.join(b, "manifest.csv"))}
    assert rows["EP06_02"]["included"] == "0" and "img12.jpg" in rows["EP06_02"]["reason"]
    # Nothing left to compute the second time; options that differ in more than RPCA's
    # setting cannot share the frames.
    again = run_rpca_settings(roots[0], [(a, OPTIONS), (b, other)], n_folds=2, seed=0,
                              augment=AUGMENT, workers=1, progress=False, log=lines.append)
    assert again[b]["computed"] == 0
    assert any(": 0 results to compute" in line for line in lines)
    with pytest.raises(ValueError, match="differ in lam and sparsity only"):
        from preprocessing.clip_cache import process_clip_rpca_settings
        process_clip_rpca_settings(clips[0], [(alone, OPTIONS), (alone, Options(tol=0.03))])


