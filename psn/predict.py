"""Classify one clip folder with a trained model, through the same preprocessing as training.

    tools/predict.py CLIP_DIR --model runs/psn/fold01            # a fold folder of run_folds
    tools/predict.py CLIP_DIR --model W.caffemodel --deploy deploy.prototxt [--onset 46 --offset 86]
    tools/predict.py CLIP_DIR --onnx model.onnx                    # tools/export_onnx.py's; no Caffe

CLIP_DIR holds the clip's frames (img46.jpg ... or any names ending in the frame number);
--onset/--offset pick a range of a longer video. Prints the class and the four probabilities.
"""
import argparse
import json
import os
import sys

from preprocessing.errors import fail, missing_caffe_line
from preprocessing.labels import CLASSES

# Fewer frames than this carry no onset-apex-offset to classify: 1 to 3 frames were answered
# with confidence. The shortest clips of the four databases (CAS(ME)^2 at 30 fps) have more.
MIN_FRAMES = 4


class PredictError(Exception):
    pass


def class_names(model, n):
    """Names of a net's n outputs: those of the run a fold folder belongs to (its run.json),
    else the paper's four where n is 4, else 'class K'. Returns (names, note or None)."""
    from preprocessing.layout import RunFolder
    names = None
    if os.path.isdir(model):
        names = RunFolder(os.path.dirname(os.path.abspath(model))).classes()
    if names is not None and len(names) == n:
        return names, None
    fallback = list(CLASSES) if n == len(CLASSES) else ["class %d" % k for k in range(n)]
    why = ("%s's run records no class names (made before run records carried them)" % model
           if os.path.isdir(model) and names is None else
           "the run's %d class names do not match the net's %d outputs" % (len(names), n)
           if names is not None else "a .caffemodel carries no class names")
    return fallback, "%s: outputs named %s" % (why, ", ".join(fallback))


def resolve_model(model, deploy):
    """(deploy.prototxt, weights) from a fold folder or an explicit caffemodel."""
    if os.path.isdir(model):
        from preprocessing.layout import RunFolder
        done = os.path.join(model, RunFolder.DONE)
        if not os.path.exists(done):
            raise PredictError("%s has no DONE file: the fold has not finished training "
                               "(run tools/run_folds.py again to finish it)" % model)
        from psn.caffe_train import done_weights
        weights = done_weights(model)
        deploy = deploy or os.path.join(model, "deploy.prototxt")
    else:
        weights = model
        if not deploy:
            guess = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(model))),
                                 "deploy.prototxt")
            deploy = guess if os.path.exists(guess) else None
    if not deploy:
        raise PredictError("give --deploy: no deploy.prototxt next to %s" % model)
    for path in (deploy, weights):
        if not os.path.exists(path):
            raise PredictError("%s does not exist" % path)
    return deploy, weights


def check_model(model, deploy, weights):
    """RunError (one line naming the file and the fix) where pycaffe would abort on loading
    the weights into the deploy net: a broken prototxt, weights cut short, weights of another
    width or net (psn.net_files)."""
    from psn.net_files import check_net
    fold = os.path.isdir(model)
    check_net(deploy, weights,
              deploy_fix=("fix it, or delete it and run the run's command (its run.json) with "
                          "--predict-only: run_folds writes it again" if fold else "fix it, or give another --deploy"),
              weights_fix=("run tools/run_folds.py on the fold's run again: it sets damaged "
                           "weights aside and trains the fold again" if fold else
                           "give the weights again (a complete copy), or a fold folder of run_folds"),
              mismatch_fix=("give the deploy.prototxt of the run that trained the weights (its "
                            "foldKK/deploy.prototxt), or weights trained for this net (--model "
                            "FOLD_FOLDER takes both from one fold)"),
              model=model)


FLOW_REFUSAL = ("%s is an optical-flow baseline (STSTNet or OFF-ApexNet): tools/predict.py "
                "gives a clip's 16 frames to PSN's nets; score a flow net with tools/run_folds.py "
                "on a data folder made by `tools/preprocess.py run --flow`")


def reads_flow_input(deploy):
    """Whether a deploy.prototxt's net takes the flow input (psn.nets' flow baselines)."""
    from google.protobuf import text_format
    from psn.caffe_proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    try:
        with open(deploy) as f:
            text_format.Merge(f.read(), net)
    except (OSError, text_format.ParseError, UnicodeDecodeError):
        return False          # check_model names what is wrong with the file
    return any(layer.type == "Input" and "flow" in layer.top for layer in net.layer)


def clip_from_folder(folder, onset=None, offset=None):
    from preprocessing.clips import Clip, numbered_frames
    if not os.path.isdir(folder):
        raise PredictError("%s is not a folder of frames" % folder)
    frames, _ = numbered_frames(folder)
    if not frames:
        raise PredictError("no numbered image files (e.g. img46.jpg) in %s" % folder)
    lo = onset if onset is not None else min(frames)
    hi = offset if offset is not None else max(frames)
    missing = [n for n in range(lo, hi + 1) if n not in frames]
    if lo > hi or missing:
        raise PredictError("%s: frames %d..%d are needed; missing %s" % (
            folder, lo, hi, missing[:10] if missing else "(onset after offset)"))
    return Clip(database="user", subject="user/" + os.path.basename(os.path.dirname(
        os.path.abspath(folder))), clip=os.path.basename(os.path.abspath(folder)),
        frames=tuple(frames[n] for n in range(lo, hi + 1)), onset=lo, apex=None, offset=hi,
        aus="", au_set=frozenset(), label=3, emotion="", source=os.path.abspath(folder))


# The flags' defaults where a model records no preprocessing (a Caffe model, or an ONNX file
# exported without its data folder).
FLAG_DEFAULTS = {"interp": "tim", "face": "landmarks", "register": "ecc"}


def clip_options(args, recorded=None, model="the model"):
    """preprocessing Options for the clip: the flags given, on top of what the model's training
    clips were made with (`recorded`: folds.json's options and pipeline version, as the ONNX
    export stores them). PredictError where a flag, or this checkout's pipeline, would make the
    clip otherwise than the training clips."""
    from preprocessing.cli import parse_face_box, rpca_choice
    from preprocessing.clip_chain import PIPELINE_VERSION, Options
    flags = {k: getattr(args, k) for k in FLAG_DEFAULTS if getattr(args, k) is not None}
    if args.lam is not None or args.sparsity is not None:
        # Both keys: --sparsity replaces a model's fixed lambda, --lam its share.
        flags.update(dict({"lam": None, "sparsity": None}, **rpca_choice(args.lam, args.sparsity)))
    if args.face_box:
        flags["face_box"] = parse_face_box(args.face_box)
    if not recorded or not recorded.get("options"):
        return Options(**dict(FLAG_DEFAULTS, **flags))
    base = dict(recorded["options"])
    base["face_box"] = tuple(base["face_box"]) if base.get("face_box") else None
    base.setdefault("register", "none")     # a stamp leaves out register none
    version = recorded.get("pipeline_version")
    if version != PIPELINE_VERSION:
        raise PredictError("%s was trained on clips of preprocessing pipeline version %s; this "
                           "checkout's is %d and would make this clip otherwise: predict with the "
                           "checkout that made its data, or preprocess, train and export again"
                           % (model, version, PIPELINE_VERSION))
    want = Options(**base)
    opts = Options(**dict(base, **flags))
    # face_box is only the fallback for a frame without a face, not a setting of the data.
    have = dict({"register": "none"}, **opts.stamp())     # a stamp leaves out register none
    need = dict({"register": "none"}, **want.stamp())
    differ = ["%s=%s (the model's clips: %s)" % (k, have.get(k), need.get(k))
              for k in sorted(set(have) | set(need))
              if k != "face_box" and have.get(k) != need.get(k)]
    if differ:
        raise PredictError("%s was trained on clips preprocessed otherwise than these flags ask: "
                           "%s; leave those flags out (the model's settings are used)"
                           % (model, "; ".join(differ)))
    return opts


def predict_arrays(net, raw, sparse):
    """raw (16,112,112,3) uint8 RGB, sparse (16,112,112) -> clip probabilities (4,)."""
    import numpy as np

    from psn.predictions import clip_probabilities
    T, H, W = raw.shape[:3]
    net.blobs["raw"].reshape(1, T, 3, H, W)
    net.blobs["sparse"].reshape(1, T, 1, H, W)
    net.blobs["cont"].reshape(1, T)
    net.reshape()
    cont = np.ones((1, T), np.float32)
    cont[0, 0] = 0                        # the clip's first frame starts its sequence
    return clip_probabilities(net, raw.transpose(0, 3, 1, 2)[None], sparse[None, :, None],
                              cont)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0])
    ap.add_argument("clip_dir")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--model",
                       help="a fold folder of run_folds (uses its DONE weights and deploy.prototxt) "
                            "or a .caffemodel")
    which.add_argument("--onnx", help="a model tools/export_onnx.py wrote: runs in onnxruntime "
                                      "(no Caffe needed), preprocessing as its training clips were")
    ap.add_argument("--deploy", help="deploy.prototxt (default: the fold's)")
    ap.add_argument("--onset", type=int)
    ap.add_argument("--offset", type=int)
    ap.add_argument("--interp", choices=("tim", "linear"), help="default tim (--onnx: the model's)")
    ap.add_argument("--face", choices=("landmarks", "haar"),
                    help="face method; use the one the training data was made with (default "
                         "landmarks; --onnx: the model's)")
    ap.add_argument("--lam", help="a fixed RPCA lambda, or 'standard' (1/sqrt(12544)); use "
                                  "what the training data was made with")
    ap.add_argument("--sparsity", type=float,
                    help="lambda per clip for this share of non-zeros in E (default 0.25)")
    ap.add_argument("--face-box", help="x,y,w,h when no face is found")
    ap.add_argument("--register", choices=("ecc", "none"),
                    help="frames registered on the onset frame (default ecc; --onnx: the "
                         "model's); use what the training data was made with")
    ap.add_argument("--gpu", type=int, help="GPU id as nvidia-smi numbers them (default CPU)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    if args.onnx:
        if args.gpu is not None or args.deploy:
            return fail("predict: error: ", "--onnx runs on the CPU through onnxruntime and "
                                            "needs no deploy.prototxt: leave out --gpu/--deploy")
        return predict_onnx(args)
    from psn.env import ensure_caffe
    ensure_caffe()  # console scripts start without the --print-env exports
    from preprocessing.errors import InputError
    from psn.config import RunError
    if args.gpu is not None:
        from psn.env import gpu_refusal, number_gpus_as_nvidia_smi
        number_gpus_as_nvidia_smi()
        # Before the clip is preprocessed: pycaffe's set_device aborts on a CPU_ONLY build.
        refused = gpu_refusal("--gpu")
        if refused:
            return fail("predict: error: ", refused)
    try:
        deploy, weights = resolve_model(args.model, args.deploy)
        if reads_flow_input(deploy):
            raise PredictError(FLOW_REFUSAL % deploy)
        check_model(args.model, deploy, weights)
        raw, sparse = preprocess(args, clip_options(args))
    except (PredictError, InputError, RunError, ValueError, OSError) as e:
        return fail("predict: error: ", e)
    except ImportError as e:
        return fail("predict: error: ", missing_caffe_line(e))
    warnings = zero_motion_warnings(sparse)
    try:
        import caffe
    except ImportError as e:
        return fail("predict: error: ", missing_caffe_line(e))
    if args.gpu is not None:
        caffe.set_device(args.gpu)
        caffe.set_mode_gpu()
        net = caffe.Net(deploy, weights, caffe.TEST)
    else:
        caffe.set_mode_cpu()
        from psn.engines import cpu_net_file     # a cuDNN build's layers need a GPU
        with cpu_net_file(deploy) as path:
            net = caffe.Net(path, weights, caffe.TEST)
    prob = predict_arrays(net, raw, sparse)
    names, note = class_names(args.model, len(prob))
    if note:
        warnings.append(note)
        print("predict: warning: %s" % note, file=sys.stderr)
    return report(args, prob, names, warnings)


def preprocess(args, opts):
    """The clip folder through the training clips' preprocessing: (raw, sparse)."""
    from preprocessing.clip_chain import ClipExcluded, compute_clip
    clip = clip_from_folder(args.clip_dir, args.onset, args.offset)
    if len(clip.frames) < MIN_FRAMES:
        raise PredictError("%s: %d frame(s) is no clip; give at least %d (onset to offset)"
                           % (args.clip_dir, len(clip.frames), MIN_FRAMES))
    try:
        raw, sparse, _ = compute_clip(clip, opts)
    except ClipExcluded as e:
        raise PredictError("cannot preprocess %s: %s" % (args.clip_dir, e))
    return raw, sparse


def zero_motion_warnings(sparse):
    warnings = []
    if not sparse.any():
        # RPCA found no motion at all (e.g. a face box on a blank region): the spatial stream
        # sees nothing, and the answer rests on the raw frames alone.
        warnings.append("E is zero in every frame: no motion was found in the face box, so "
                        "this answer rests on the raw frames alone")
    for w in warnings:
        print("predict: warning: %s" % w, file=sys.stderr)
    return warnings


def predict_onnx(args):
    """--onnx: the clip through the exported model in onnxruntime; Caffe is not imported."""
    import numpy as np

    from preprocessing.errors import InputError
    from psn.onnx_run import OnnxModel, OnnxModelError
    try:
        model = OnnxModel(args.onnx)
        if "flow" in model.inputs:
            raise PredictError(FLOW_REFUSAL % args.onnx)
        if model.frames not in (None, 16):
            raise PredictError("%s takes %d frame(s) a clip (a single-frame model); tools/"
                               "predict.py gives the 16 sampled frames of a clip: predict with "
                               "a fold of a 16-frame model" % (args.onnx, model.frames))
        if model.preprocessing is None:
            print("predict: warning: %s records no preprocessing settings (exported without "
                  "its run's data folder): the clip is made with the flags given, unchecked"
                  % args.onnx, file=sys.stderr)
        raw, sparse = preprocess(args, clip_options(args, model.preprocessing, args.onnx))
    except (PredictError, OnnxModelError, InputError, ValueError, OSError) as e:
        return fail("predict: error: ", e)
    except ImportError as e:
        return fail("predict: error: ", "--onnx needs onnxruntime (%s): pip install -r "
                                        "requirements.txt" % e)
    warnings = zero_motion_warnings(sparse)
    T = raw.shape[0]
    cont = np.ones((1, T), np.float32)
    cont[0, 0] = 0                        # the clip's first frame starts its sequence
    try:
        prob = model.clip_probabilities(raw.transpose(0, 3, 1, 2)[None].astype(np.float32),
                                        sparse[None, :, None].astype(np.float32), cont)[0]
    except OnnxModelError as e:
        return fail("predict: error: ", e)
    names = model.classes
    if not names or len(names) != len(prob):
        names = list(CLASSES) if len(prob) == len(CLASSES) else ["class %d" % k
                                                                  for k in range(len(prob))]
        note = "%s records no class names for its %d outputs: outputs named %s" % (
            args.onnx, len(prob), ", ".join(names))
        warnings.append(note)
        print("predict: warning: %s" % note, file=sys.stderr)
    return report(args, prob, names, warnings)


def report(args, prob, names, warnings):
    k = int(prob.argmax())
    if args.json:
        print(json.dumps({"clip": args.clip_dir, "class": k, "name": names[k],
                          "classes": names, "probabilities": [float(p) for p in prob],
                          "warnings": warnings}))
    else:
        print("%s: %d %s" % (args.clip_dir, k, names[k]))
        for c, p in enumerate(prob):
            print("  %d %-9s %.4f" % (c, names[c], p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
