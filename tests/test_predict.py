"""psn.predict and tools/predict.py: a fold's forward equal to what run_folds predicted, the
tool on a folder of frames, a fold's outputs named with its run's classes (conftest.py's
`trained` run)."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from run_folds_helpers import ROOT

from preprocessing.clip_chain import PIPELINE_VERSION
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


def test_predict_matches_run_folds_on_the_same_clip(caffe, trained):
    """psn.predict's forward equals the prediction run_folds wrote for that clip."""
    import h5py
    from psn.predict import predict_arrays, resolve_model
    data, out, _ = trained
    deploy, weights = resolve_model(os.path.join(out, "fold01"), None)
    net = caffe.Net(deploy, weights, caffe.TEST)
    with h5py.File(os.path.join(data, "shards", "group01.h5"), "r") as f:
        raw = f["raw"][3].transpose(0, 2, 3, 1)        # (16,112,112,3)
        sparse = f["sparse"][3][:, 0]
    prob = predict_arrays(net, raw, sparse)
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        row = [r for r in csv.DictReader(f) if r["clip"] == "EP01_03"][0]
    np.testing.assert_allclose(prob, [float(row["prob_%d" % c]) for c in range(4)], atol=1e-5)


def test_predict_tool_on_a_clip_folder(caffe_env, trained, tmp_path):
    """tools/predict.py runs the preprocessing on a folder of frames and prints the class."""
    import json
    import synthetic
    _, out, _ = trained
    db = str(tmp_path / "syn")
    synthetic.generate(db, n_subjects=1, clips_per_subject=1, seed=3)
    clip_dirs = [os.path.join(dp) for dp, dn, fn in os.walk(db) if any(f.endswith(".jpg") for f in fn)]
    assert len(clip_dirs) == 1
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"), clip_dirs[0],
                          "--model", os.path.join(out, "fold01"), "--json", "--lam", "0.01"],
                         capture_output=True, text=True, env=caffe_env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout)
    probs = result["probabilities"]
    assert len(probs) == 4 and abs(sum(probs) - 1) < 1e-4 and min(probs) >= 0
    assert result["class"] == int(np.argmax(probs))
    assert result["name"] == ("positive", "negative", "surprise", "others")[result["class"]]
    assert result["classes"] == ["positive", "negative", "surprise", "others"]   # run.json's
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"),
                          str(tmp_path), "--model", os.path.join(out, "fold01")],
                         capture_output=True, text=True, env=caffe_env, timeout=600)
    assert bad.returncode == 2 and "no numbered image files" in bad.stderr
    assert result["warnings"] == []
    frames = sorted(os.listdir(clip_dirs[0]), key=lambda n: int(''.join(filter(str.isdigit, n))))
    first = int("".join(filter(str.isdigit, frames[0])))
    short = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"), clip_dirs[0],
                            "--model", os.path.join(out, "fold01"), "--onset", str(first),
                            "--offset", str(first + 2)],
                           capture_output=True, text=True, env=caffe_env, timeout=600)
    assert short.returncode == 2 and "3 frame(s) is no clip; give at least 4" in short.stderr


# ------------------------------------------------------- the preprocessing an ONNX model records

def _flags(**given):
    import argparse
    base = dict(interp=None, face=None, register=None, lam=None, sparsity=None, face_box=None)
    base.update(given)
    return argparse.Namespace(**base)


RECORDED = {"options": {"face": "landmarks", "face_box": None, "interp": "tim", "lam": None,
                        "max_iter": 1000, "register": "ecc", "sparsity": 0.25, "tol": 1e-07},
            "pipeline_version": PIPELINE_VERSION}


def test_a_clip_is_made_as_the_models_training_clips_were():
    from psn.predict import clip_options
    recorded = json.loads(json.dumps(RECORDED))
    recorded["options"].update(interp="linear", register="none", sparsity=0.3)
    opts = clip_options(_flags(), recorded)
    assert (opts.interp, opts.register, opts.sparsity) == ("linear", "none", 0.3)
    # The flags that agree with the model, and the no-face fallback box, are taken.
    opts = clip_options(_flags(interp="linear", face_box="10,10,200,200"), recorded)
    assert opts.face_box == (10, 10, 200, 200)
    # No record: the flags' defaults, as for a Caffe model.
    opts = clip_options(_flags(), None)
    assert (opts.interp, opts.face, opts.register) == ("tim", "landmarks", "ecc")


@pytest.mark.parametrize("flags, named", [
    (dict(interp="linear"), "interp=linear (the model's clips: tim)"),
    (dict(lam="standard"), "sparsity=None (the model's clips: 0.25)"),
    (dict(sparsity=0.1), "sparsity=0.1 (the model's clips: 0.25)"),
    (dict(register="none"), "register=none (the model's clips: ecc)"),
    (dict(face="haar"), "face=haar (the model's clips: landmarks)"),
])
def test_a_flag_that_would_make_the_clip_otherwise_is_refused(flags, named):
    from psn.predict import PredictError, clip_options
    with pytest.raises(PredictError) as e:
        clip_options(_flags(**flags), RECORDED, "m.onnx")
    assert str(e.value).startswith("m.onnx was trained on clips preprocessed otherwise")
    assert named in str(e.value)


def test_a_share_against_a_fixed_lambda_model_names_the_setting():
    """--sparsity given for a model trained with a fixed lambda: the refusal names the two
    settings (Options' own "not both" is not what the user did)."""
    from psn.predict import PredictError, clip_options
    recorded = json.loads(json.dumps(RECORDED))
    recorded["options"].update(lam=0.01, sparsity=None)
    with pytest.raises(PredictError) as e:
        clip_options(_flags(sparsity=0.25), recorded, "m.onnx")
    assert "lam=None (the model's clips: 0.01)" in str(e.value)
    assert "sparsity=0.25 (the model's clips: None)" in str(e.value)
    assert clip_options(_flags(lam="0.01"), recorded).lam == 0.01


def test_a_model_of_another_pipeline_version_is_refused():
    from psn.predict import PredictError, clip_options
    with pytest.raises(PredictError, match="pipeline version 1; this checkout's is %d"
                       % PIPELINE_VERSION):
        clip_options(_flags(), dict(RECORDED, pipeline_version=1), "m.onnx")
