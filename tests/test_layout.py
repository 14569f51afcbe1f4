"""preprocessing.layout: the data folder's and the run folder's names, in one place."""
import json
import os

import pytest

from preprocessing.errors import InputError
from preprocessing.layout import DataFolder, RunFolder, fold_name, run_name
from preprocessing.manifest import MANIFEST_COLUMNS, write_manifest


def _data(tmp_path, groups=3):
    d = DataFolder(str(tmp_path / "data"))
    os.makedirs(d.shard_dir)
    for g in range(1, groups + 1):
        open(d.shard(g), "wb").close()
    write_manifest(d.manifest, [{"index": 0, "clip": "EP01", "label": 1}])
    for k in range(1, groups + 1):
        d.write_fold_list(k, "train", [d.shard(g) for g in range(1, groups + 1) if g != k])
        d.write_fold_list(k, "test", [d.shard(k)])
    return d


def test_names_are_the_preprocessing_layout(tmp_path):
    d = DataFolder("/x/data")
    assert d.manifest == "/x/data/manifest.csv" and d.plan == "/x/data/folds.json"
    assert d.protocol_file == "/x/data/protocol.json" and d.cache_dir == "/x/data/cache"
    assert d.shard(3) == "/x/data/shards/group03.h5"
    assert d.shard(3, aug=True) == "/x/data/shards/group03_aug.h5"
    assert d.fold_list(7, "test") == "/x/data/folds/fold07/test.txt"
    assert fold_name(12) == "fold12"
    r = RunFolder("/x/run")
    assert r.done(2) == "/x/run/fold02/DONE" and r.log(2) == "/x/run/fold02/train.log"
    assert r.record == "/x/run/run.json" and r.predictions == "/x/run/predictions.csv"
    assert r.fold_predictions(1) == "/x/run/fold01/predictions.csv"


def test_lists_are_relative_and_resolve_from_anywhere(tmp_path):
    d = _data(tmp_path)
    assert open(d.fold_list(1, "test")).read() == "shards/group01.h5\n"
    lists = d.fold_shards(2)
    assert lists == {"train": [d.shard(1), d.shard(3)], "test": [d.shard(2)]}
    moved = DataFolder(str(tmp_path / "moved"))
    os.rename(d.root, moved.root)
    assert moved.fold_shards(2)["test"] == [moved.shard(2)]
    caffe = moved.caffe_lists(2, str(tmp_path))
    assert open(caffe["test"][0]).read() == moved.shard(2) + "\n"   # absolute, for Caffe
    assert moved.folds() == [1, 2, 3]


def test_one_manifest_contract(tmp_path):
    d = _data(tmp_path)
    rows = d.manifest_rows()
    assert tuple(rows[0]) == MANIFEST_COLUMNS and rows[0]["clip"] == "EP01"
    assert d.manifest_by_index() == {0: rows[0]}
    with open(d.manifest, "w") as f:
        f.write("index,clip\n0,EP01\n")
    with pytest.raises(InputError, match="not the manifest's"):
        d.manifest_rows()


def test_bad_folders_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="manifest.csv not found: --data must be"):
        DataFolder(str(tmp_path)).manifest_rows()
    with pytest.raises(InputError, match="no folds/foldKK folders"):
        DataFolder(str(tmp_path)).folds()
    d = _data(tmp_path)
    os.remove(d.shard(1))
    with pytest.raises(InputError, match="test.txt lists missing shards .*group01.h5: rerun"):
        d.fold_shards(1)
    with pytest.raises(InputError, match="fold09.*not found"):
        d.fold_shards(9)
    spaced = DataFolder(str(tmp_path / "a b"))
    os.makedirs(spaced.shard_dir)
    open(spaced.shard(1), "wb").close()
    spaced.write_fold_list(1, "train", [spaced.shard(1)])
    spaced.write_fold_list(1, "test", [spaced.shard(1)])
    with pytest.raises(InputError, match="whitespace"):
        spaced.caffe_lists(1, str(tmp_path))


def test_class_names_come_from_the_protocol_and_travel_with_the_run(tmp_path):
    d = _data(tmp_path)
    assert d.classes() == ["positive", "negative", "surprise", "others"]   # no protocol.json
    with open(d.protocol_file, "w") as f:
        json.dump({"name": "megc2019", "classes": ["negative", "positive", "surprise"]}, f)
    assert d.classes() == ["negative", "positive", "surprise"]
    run = RunFolder(str(tmp_path / "run"))
    assert run.classes() is None and run.folds() == [] and run.logs() == {}
    os.makedirs(run.fold_dir(2))
    open(run.log(2), "w").close()
    with open(run.record, "w") as f:
        json.dump({"classes": d.classes()}, f)
    assert run.classes() == ["negative", "positive", "surprise"]
    assert run.folds() == [2] and run.logs() == {2: run.log(2)}


def test_run_folders_are_named_once():
    assert run_name("psn", 0.125, "demo") == "psn_w0.125_demo"
    # A schedule file gives its name, not a nested folder (the main job and --experiment
    # agree on it).
    assert run_name("psn", 1, "/home/me/my.json", "_megc2019") == "psn_w1_my_megc2019"


def test_the_fold_plan_is_read_and_written_here(tmp_path):
    d = DataFolder(str(tmp_path / "data"))
    with pytest.raises(InputError, match="folds.json cannot be read.*preprocess.py run"):
        d.read_plan()
    os.makedirs(d.root)
    plan = {"folds": [{"fold": 1, "test_group": 1, "train_groups": [2]}],
            "groups": [{"group": 1}, {"group": 2}]}
    d.write_plan(plan)
    assert d.read_plan() == plan
    assert json.load(open(d.plan)) == plan
    d.write_plan({"folds": []})
    with pytest.raises(InputError, match="has no groups or folds"):
        d.read_plan()
    with open(d.plan, "w") as f:
        f.write("{")
    with pytest.raises(InputError, match="cannot be read"):
        d.read_plan()
