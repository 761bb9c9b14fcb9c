#!/usr/bin/env bash
# Prepare ONNX Runtime for the C++ build in $1 (default runtime/cpp/build/ort):
#   include/  the C/C++ API headers: the system's (Debian 13: apt install libonnxruntime-dev), or
#             else Debian 13's libonnxruntime-dev .deb downloaded (not installed) and unpacked;
#   lib/      libonnxruntime.so(.1): the one inside the Python `onnxruntime` wheel of $PYTHON
#             (the runtime the Python side uses: same kernels), or else the system's.
# The C API is backward compatible: 1.21 headers against a newer library work.
set -euo pipefail
OUT=${1:-runtime/cpp/build/ort}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT/lib"
OUT=$(cd "$OUT" && pwd)

if [ -f /usr/include/onnxruntime/onnxruntime_cxx_api.h ]; then
  ln -sfn /usr/include/onnxruntime "$OUT/include"
elif [ ! -f "$OUT/include/onnxruntime_cxx_api.h" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  cat > "$work/trixie.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_opts=(-q -o "Dir::Etc::sourcelist=$work/trixie.sources" -o Dir::Etc::sourceparts=- \
            -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update >/dev/null
  (cd "$work" && apt-get "${apt_opts[@]}" download libonnxruntime-dev >/dev/null)
  dpkg -x "$work"/libonnxruntime-dev_*.deb "$work/x"
  rm -rf "$OUT/include"
  cp -r "$work/x/usr/include/onnxruntime" "$OUT/include"
fi

# the library: the Python onnxruntime wheel's where there is one (the C++ and Python runtimes
# then run the same kernels: the parity tests compare their images bit for bit), else the system's
capi=$("$PYTHON" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' \
       2>/dev/null || true)
lib=$(ls "$capi"/libonnxruntime.so.1.* 2>/dev/null | head -1 || true)
if [ -z "$lib" ]; then
  lib=$(ls /usr/lib/*/libonnxruntime.so.1 2>/dev/null | head -1 || true)
fi
if [ -z "$lib" ]; then
  echo "fetch_ort.sh: no libonnxruntime.so.1: install the onnxruntime wheel for $PYTHON (or Debian 13's libonnxruntime1.21)" >&2
  exit 1
fi
ln -sfn "$lib" "$OUT/lib/libonnxruntime.so.1"
ln -sfn "$lib" "$OUT/lib/libonnxruntime.so"
echo "$OUT"
