"""psn.caffe_proto: caffe_pb2 and NetSpec where pycaffe's compiled module does not import (a
host with the caffe binary but no Boost.Python), and where a pycaffe import failed part-way."""
import os
import subprocess
import sys
import textwrap

from run_folds_helpers import ROOT


def _run(caffe_env, blocked, body):
    """body run in a child in which importing the module `blocked` fails."""
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == %r:
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        sys.path[:0] = [%r, %r]
    """) % (blocked, ROOT, os.path.join(ROOT, "layers")) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=caffe_env, timeout=300)


def test_without_boost_python_the_protos_and_netspec_load_alone(caffe_env):
    res = _run(caffe_env, "caffe._caffe", """
        from psn.caffe_proto import pycaffe, caffe_pb2, net_spec
        assert pycaffe() is None
        try:
            import caffe  # noqa: F401
        except ImportError:
            pass
        else:
            raise AssertionError("import caffe should still fail")
        assert caffe_pb2.__name__ == "psn_caffe_py.proto.caffe_pb2", caffe_pb2.__name__
        caffe_pb2.TPUParameter      # the project's layer is in the build's proto
        from psn import nets
        _, dp, _ = nets.build("psn", width=0.125)
        assert any(layer.type == "TPU" for layer in dp.layer)
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_caffe_pb2_left_by_a_pycaffe_import_that_failed_part_way_is_shared(caffe_env):
    """caffe/__init__ loaded caffe.proto, then failed: the nets are still written (protobuf
    registers caffe.proto once per process; a second copy would raise TypeError)."""
    res = _run(caffe_env, "caffe.classifier", """
        import sys
        from psn.caffe_proto import pycaffe, caffe_pb2
        assert pycaffe() is None and "caffe.proto.caffe_pb2" in sys.modules
        from psn import nets
        tv, dp, _ = nets.build("psn", width=0.125)
        assert isinstance(dp, caffe_pb2.NetParameter)
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
