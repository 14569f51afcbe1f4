"""Running an exported net (psn.onnx_export) with onnxruntime: no Caffe needed.

OnnxModel gives what psn.predictions.clip_probabilities gives for a Caffe net (the softmax
averaged over each clip's frames), and reads the metadata the exporter wrote: class names,
the preprocessing the training clips were made with, the inputs' layout.
"""
import json

import numpy as np

from psn.onnx_export import METADATA_PREFIX


class OnnxModelError(Exception):
    """A file that is not a model psn-caffe exported; the message names it."""


class OnnxModel:
    def __init__(self, path, name=None, threads=None):
        """path: an .onnx file, or a serialised model (bytes) with `name` to call it by;
        threads: onnxruntime's intra-op threads (default: its own choice, one per core)."""
        import onnxruntime as ort
        self.path = name or path
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3    # the runtime's notes on unused initialisers
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own classes for a missing or bad file
            raise OnnxModelError("%s is not a readable ONNX model (%s): export it again with "
                                 "tools/export_onnx.py" % (self.path, str(e).splitlines()[0]))
        self.inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if "clip_prob" not in outputs or not set(self.inputs) & {"raw", "sparse", "cont", "flow"}:
            raise OnnxModelError("%s has no clip_prob output or no raw/sparse/cont/flow input: not a "
                                 "model tools/export_onnx.py wrote" % self.path)
        raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {}
        for key, value in raw.items():
            if key.startswith(METADATA_PREFIX):
                try:
                    self.metadata[key[len(METADATA_PREFIX):]] = json.loads(value)
                except ValueError:
                    self.metadata[key[len(METADATA_PREFIX):]] = value
        shape = self.session.get_inputs()[0].shape
        self.frames = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else None
        # A model exported with --batch takes exactly that many clips a run.
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    @property
    def classes(self):
        return self.metadata.get("classes")

    @property
    def preprocessing(self):
        return self.metadata.get("preprocessing")

    def clip_probabilities(self, raw=None, sparse=None, cont=None, batch=5, **inputs):
        """(K, C) clip probabilities of K clips: raw (K, T, 3, H, W), sparse (K, T, 1, H, W),
        cont (K, T), or flow (K, 3, 28, 28) for the flow nets: those the model takes, arrays or
        h5py datasets (read `batch` clips at a time, or the model's fixed batch)."""
        inputs.update(raw=raw, sparse=sparse, cont=cont)
        sources = [(name, inputs.get(name)) for name in self.inputs]
        missing = [name for name, source in sources if source is None]
        if missing:
            raise OnnxModelError("%s takes %s, which were not given" % (self.path, ", ".join(missing)))
        K = sources[0][1].shape[0]
        batch = self.fixed_batch or batch
        out = []
        for start in range(0, K, batch):
            n = min(K, start + batch) - start
            feed = {}
            for name, source in sources:
                data = np.asarray(source[start:start + n], np.float32)
                if n < batch and self.fixed_batch:    # padded as Caffe's last batch is
                    data = np.concatenate([data] + [data[:1]] * (batch - n))
                feed[name] = data
            try:
                out.append(self.session.run(["clip_prob"], feed)[0][:n])
            except Exception as e:  # onnxruntime's InvalidArgument and kin: inputs of other shapes
                raise OnnxModelError("%s cannot run on these clips (%s)" % (
                    self.path, str(e).splitlines()[0]))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
