"""Classify one clip folder with a trained model, through the same preprocessing as training.

    tools/predict.py CLIP_DIR --model runs/psn/fold01            # a fold folder of run_folds
    tools/predict.py CLIP_DIR --model W.caffemodel --deploy deploy.prototxt [--onset 46 --offset 86]

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
    from psn.env import ensure_caffe
    ensure_caffe()  # console scripts start without the --print-env exports
    ap = argparse.ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0])
    ap.add_argument("clip_dir")
    ap.add_argument("--model", required=True,
                    help="a fold folder of run_folds (uses its DONE weights and deploy.prototxt) "
                         "or a .caffemodel")
    ap.add_argument("--deploy", help="deploy.prototxt (default: the fold's)")
    ap.add_argument("--onset", type=int)
    ap.add_argument("--offset", type=int)
    ap.add_argument("--interp", choices=("tim", "linear"), default="tim")
    ap.add_argument("--face", choices=("landmarks", "haar"), default="landmarks",
                    help="face method; use the one the training data was made with")
    ap.add_argument("--lam", help="a fixed RPCA lambda, or 'standard' (1/sqrt(12544)); use "
                                  "what the training data was made with")
    ap.add_argument("--sparsity", type=float,
                    help="lambda per clip for this share of non-zeros in E (default 0.25)")
    ap.add_argument("--face-box", help="x,y,w,h when no face is found")
    ap.add_argument("--register", choices=("ecc", "none"), default="ecc",
                    help="frames registered on the onset frame (default ecc); use what the "
                         "training data was made with")
    ap.add_argument("--gpu", type=int)
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    from preprocessing.errors import InputError
    from psn.config import RunError
    if args.gpu is not None:
        # Before the clip is preprocessed: pycaffe's set_device aborts on a CPU_ONLY build.
        from psn.env import gpu_refusal
        refused = gpu_refusal("--gpu")
        if refused:
            return fail("predict: error: ", refused)
    try:
        from preprocessing.cli import parse_face_box, rpca_choice
        from preprocessing.clip_chain import ClipExcluded, Options, compute_clip
        deploy, weights = resolve_model(args.model, args.deploy)
        check_model(args.model, deploy, weights)
        clip = clip_from_folder(args.clip_dir, args.onset, args.offset)
        if len(clip.frames) < MIN_FRAMES:
            raise PredictError("%s: %d frame(s) is no clip; give at least %d (onset to offset)"
                               % (args.clip_dir, len(clip.frames), MIN_FRAMES))
        opts = Options(interp=args.interp, face=args.face, register=args.register,
                       face_box=parse_face_box(args.face_box),
                       **rpca_choice(args.lam, args.sparsity))
        try:
            raw, sparse, info = compute_clip(clip, opts)
        except ClipExcluded as e:
            raise PredictError("cannot preprocess %s: %s" % (args.clip_dir, e))
    except (PredictError, InputError, RunError, ValueError, OSError) as e:
        return fail("predict: error: ", e)
    except ImportError as e:
        return fail("predict: error: ", missing_caffe_line(e))
    warnings = []
    if not sparse.any():
        # RPCA found no motion at all (e.g. a face box on a blank region): the spatial stream
        # sees nothing, and the answer rests on the raw frames alone.
        warnings.append("E is zero in every frame: no motion was found in the face box, so "
                        "this answer rests on the raw frames alone")
    for w in warnings:
        print("predict: warning: %s" % w, file=sys.stderr)
    try:
        import caffe
    except ImportError as e:
        return fail("predict: error: ", missing_caffe_line(e))
    if args.gpu is not None:
        caffe.set_device(args.gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    net = caffe.Net(deploy, weights, caffe.TEST)
    prob = predict_arrays(net, raw, sparse)
    k = int(prob.argmax())
    names, note = class_names(args.model, len(prob))
    if note:
        warnings.append(note)
        print("predict: warning: %s" % note, file=sys.stderr)
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
