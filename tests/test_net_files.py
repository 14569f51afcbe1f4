"""psn.net_files: a deploy.prototxt or weights that pycaffe would abort on are one line that
names both files (tools/predict.py, run_folds --predict-only), and the other folds predict."""
import glob
import os

import pytest

from run_folds_helpers import _one_line, _predict_tool, run_tool


def test_predict_refuses_weights_of_another_width_or_cut_short(caffe_env, trained, clip_dir, tmp_path):
    """Were SIGABRT from Caffe's CopyTrainedLayersFrom ('Cannot copy param 0 weights from layer
    ...; shape mismatch', or a parse failure of the weights)."""
    from google.protobuf import text_format
    from psn import nets
    _, out, _ = trained
    weights = os.path.join(out, "fold01", "snapshots", "psn_iter_4.caffemodel")
    _, dp, _ = nets.build("psn", width=0.25)
    wide = tmp_path / "deploy_w025.prototxt"
    wide.write_text(text_format.MessageToString(dp))
    res = _predict_tool(caffe_env, clip_dir, "--model", weights, "--deploy", str(wide))
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("predict: error: %s does not fit %s: layer " % (weights, wide))
    assert "trained with --model psn --width 0.125 (%s)" % os.path.join(out, "run.json") in line
    assert "give the deploy.prototxt of the run that trained the weights" in line
    short = tmp_path / "short.caffemodel"
    with open(weights, "rb") as f:
        short.write_bytes(f.read()[:os.path.getsize(weights) // 2])
    res = _predict_tool(caffe_env, clip_dir, "--model", str(short), "--deploy",
                        os.path.join(out, "fold01", "deploy.prototxt"))
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("predict: error: %s is " % short) and "give the weights again" in line


@pytest.mark.parametrize("edit", ["syntax", "layer_type"])
def test_a_broken_deploy_prototxt_fails_its_fold_and_the_others_predict(caffe_env, trained,
                                                                        tmp_path, edit):
    """run_folds --predict-only predicts in-process: pycaffe's abort on fold 2's edited
    deploy.prototxt ended the run (SIGABRT) before fold 1's predictions were joined."""
    import shutil
    data, out, _ = trained
    run = str(tmp_path / "run")
    shutil.copytree(out, run)
    for path in glob.glob(os.path.join(run, "fold*", "predictions.csv")) + [
            os.path.join(run, "predictions.csv")]:
        os.remove(path)
    deploy = os.path.join(run, "fold02", "deploy.prototxt")
    with open(deploy) as f:
        text = f.read()
    with open(deploy, "w") as f:
        f.write(text + "layer {\n" if edit == "syntax" else
                text.replace('type: "Convolution"', 'type: "Convolutoin"', 1))
    args = ["--data", data, "--out", run, "--schedule", "smoke", "--width", "0.125"]
    res = run_tool(caffe_env, *args, "--predict-only")
    assert res.returncode == 1, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("run_folds: fold 02 failed: %s:" % deploy), line
    assert ("Caffe cannot parse it" if edit == "syntax" else
            "Caffe cannot build this net (Check failed: registry.count(type) == 1 (0 vs. 1) "
            "Unknown layer type: Convolutoin") in line
    assert "delete it and run the same command: run_folds writes it again" in line
    assert "fold 01: predicted 5 clips" in res.stdout
    with open(os.path.join(run, "predictions.csv")) as f:
        assert len(f.readlines()) == 6          # header + fold 1's five clips
    if edit == "syntax":
        os.remove(deploy)                       # the fix the line gives
        res = run_tool(caffe_env, *args, "--predict-only")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "fold 02: wrote %s again" % deploy in res.stdout
        with open(os.path.join(run, "predictions.csv")) as f:
            assert len(f.readlines()) == 11
