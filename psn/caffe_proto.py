"""Caffe's protobuf messages and NetSpec without pycaffe's compiled module.

    from psn.caffe_proto import caffe_pb2
    spec = net_spec()        # .layers, .params, .NetSpec

``from caffe.proto import caffe_pb2`` imports the package ``caffe`` first, and with it
pycaffe's Boost.Python module (_caffe.so). A host that has the caffe binary and Python but no
Boost.Python (a GPU host given only the built binary) cannot import it, yet writing nets,
reading weights and exporting them to ONNX need only caffe_pb2.py and net_spec.py, which are
plain Python. Where pycaffe imports, its modules are used; else those two files are loaded
from the build as a package of their own (``psn_caffe_py``), so that ``import caffe`` still
fails there and the code that needs pycaffe's Net says so.
"""
import importlib
import os
import sys
import types

_PACKAGE = "psn_caffe_py"


def pycaffe():
    """The caffe module where pycaffe imports, else None."""
    try:
        import caffe
        caffe.Net  # noqa: B018  (a namespace package of the same name has no Net)
    except Exception:  # ImportError, or protobuf's TypeError when caffe.proto is loaded already
        return None
    return caffe


def caffe_python_folders():
    home = os.environ.get("PSN_CAFFE_HOME")
    for root in list(sys.path) + ([os.path.join(home, "python")] if home else []):
        folder = os.path.join(root or ".", "caffe")
        if os.path.isfile(os.path.join(folder, "proto", "caffe_pb2.py")):
            yield folder


def _standalone(name):
    """psn_caffe_py.<name> from the built caffe/ folder, its __init__ (pycaffe) not run."""
    if _PACKAGE not in sys.modules:
        folder = next(caffe_python_folders(), None)
        if folder is None:
            raise ImportError("neither pycaffe nor caffe/proto/caffe_pb2.py is on sys.path or "
                              "under $PSN_CAFFE_HOME/python: build Caffe with tools/"
                              "build_caffe.sh, then eval \"$(tools/build_caffe.sh --print-env)\"")
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [folder]
        sys.modules[_PACKAGE] = package
        # protobuf registers caffe.proto once per process: where a pycaffe import that failed
        # part-way left caffe_pb2 loaded, that module is the one the package must use.
        loaded = sys.modules.get("caffe.proto.caffe_pb2")
        if loaded is not None:
            importlib.import_module(_PACKAGE + ".proto")
            sys.modules[_PACKAGE + ".proto.caffe_pb2"] = loaded
            sys.modules[_PACKAGE + ".proto"].caffe_pb2 = loaded
    return importlib.import_module("%s.%s" % (_PACKAGE, name))


def _caffe_pb2():
    for name in ("caffe.proto.caffe_pb2", _PACKAGE + ".proto.caffe_pb2"):
        if name in sys.modules:
            return sys.modules[name]
    if pycaffe() is not None:
        from caffe.proto import caffe_pb2 as module
        return module
    return _standalone("proto.caffe_pb2")


def net_spec():
    """Caffe's NetSpec module (layers, params, NetSpec): pycaffe's, or net_spec.py alone."""
    caffe = pycaffe()
    return caffe if caffe is not None else _standalone("net_spec")


def __getattr__(name):
    # `from psn.caffe_proto import caffe_pb2` loads it on first use (PEP 562).
    if name == "caffe_pb2":
        return _caffe_pb2()
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
