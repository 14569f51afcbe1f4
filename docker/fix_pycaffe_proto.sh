#!/usr/bin/env bash
# Regenerate pycaffe's caffe_pb2.py when the system protoc is older than 3.19.
#
#   docker/fix_pycaffe_proto.sh CAFFE_HOME PYTHON
#
# Caffe's Makefile generates caffe_pb2.py with the system protoc, and the project's
# Python protobuf (4.21, requirements.txt) refuses code from protoc < 3.19
# ("Descriptors cannot be created directly"): Ubuntu 16.04 ships protoc 2.6 and
# Ubuntu 22.04 protoc 3.12 (Debian 12's 3.21 is fine). The C++ side keeps the system
# protobuf; only the Python module is regenerated, from the same caffe.proto, with
# the protoc inside grpcio-tools 1.49 (protobuf 21.x, the 4.21 runtime's generator),
# installed in a throwaway environment.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 CAFFE_HOME PYTHON" >&2; exit 2; }
home=$1 py=$2
proto="$home/include/caffe/proto/caffe.proto"
target="$home/python/caffe/proto/caffe_pb2.py"
[ -f "$proto" ] && [ -f "$target" ] || { echo "[fix_pycaffe_proto] $home is not a build_caffe.sh install (no $proto or $target)" >&2; exit 1; }

ver=$(protoc --version | awk '{print $2}')
major=${ver%%.*}
minor=$(echo "$ver" | cut -d. -f2)
if [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 19 ]; }; then
  echo "[fix_pycaffe_proto] protoc $ver generates code protobuf 4.21 accepts: caffe_pb2.py kept" >&2
  exit 0
fi
echo "[fix_pycaffe_proto] protoc $ver is older than 3.19: regenerating caffe_pb2.py" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --no-cache-dir "grpcio-tools==1.49.1"
"$tmp/venv/bin/python" -m grpc_tools.protoc -I "$(dirname "$proto")" --python_out="$tmp" "$proto"
# Check it loads with the project's protobuf before replacing the old one.
"$py" - "$tmp/caffe_pb2.py" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("caffe_pb2", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
mod.NetParameter(name="check")
EOF
mv "$tmp/caffe_pb2.py" "$target"
