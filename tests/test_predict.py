"""psn.predict: naming a fold's outputs with its run's classes."""
import json

from psn.predict import class_names


def _run(tmp_path, record):
    run = tmp_path / "run"
    (run / "fold01").mkdir(parents=True)
    if record is not None:
        (run / "run.json").write_text(json.dumps(record))
    return str(run / "fold01")


def test_a_megc2019_fold_names_class_0_negative(tmp_path):
    fold = _run(tmp_path, {"classes": ["negative", "positive", "surprise"]})
    assert class_names(fold, 3) == (["negative", "positive", "surprise"], None)


def test_without_the_runs_classes_the_fallback_is_said(tmp_path):
    fold = _run(tmp_path, {"model": "psn"})           # a record from before classes
    names, note = class_names(fold, 4)
    assert names == ["positive", "negative", "surprise", "others"]
    assert "records no class names" in note
    names, note = class_names(_run(tmp_path / "b", {"classes": ["a", "b"]}), 3)
    assert names == ["class 0", "class 1", "class 2"] and "do not match" in note
    names, note = class_names(str(tmp_path / "w.caffemodel"), 4)
    assert "carries no class names" in note
