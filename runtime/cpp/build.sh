#!/usr/bin/env bash
# Build runtime/cpp (libldmind.so, the CLI `ldmind`, the C test driver `ldmind_probe`) into
# runtime/cpp/build/VARIANT (default rel) with FLAGS added to the compile and link flags, and
# print that folder.  Used by `make cpp` and the tests (tests/conftest.py).  ONNX Runtime
# comes from fetch_ort.sh; PYTHON names the Python whose onnxruntime wheel to link.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VARIANT=${1:-rel}
FLAGS=${2:-}
ORT=$(bash "$HERE/fetch_ort.sh" "$HERE/build/ort" | tail -1)
BUILD="$HERE/build/$VARIANT"
cmake -S "$HERE" -B "$BUILD" -DORT_ROOT="$ORT" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" \
      -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" -DCMAKE_SHARED_LINKER_FLAGS="$FLAGS" >/dev/null
cmake --build "$BUILD" -j 2 >/dev/null
echo "$BUILD"
