#!/usr/bin/env bash
# Build runtime/cpp (libldmind.so, the CLI `ldmind`, the test drivers `ldmind_probe` and
# `ldmind_internals`) into runtime/cpp/build/VARIANT (default rel) with FLAGS added to the
# compile and link flags, and print that folder.  Used by `make cpp` and the tests (tests/conftest.py).  ONNX Runtime
# comes from fetch_ort.sh; PYTHON names the Python whose onnxruntime wheel to link, and whose
# openvino wheel (when installed) gives the OpenVINO backends.  LDMIND_OPENVINO=0 builds
# without OpenVINO even where it is installed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VARIANT=${1:-rel}
FLAGS=${2:-}
ORT=$(bash "$HERE/fetch_ort.sh" "$HERE/build/ort" | tail -1)
BUILD="$HERE/build/$VARIANT"
OV=(-DCMAKE_DISABLE_FIND_PACKAGE_OpenVINO=ON)
if [ "${LDMIND_OPENVINO:-1}" != 0 ]; then
  # the wheel's CMake config, located without importing openvino (its import takes seconds)
  ov_dir=$("${PYTHON:-python3}" -c 'import importlib.util as u, os; s = u.find_spec("openvino")
print(os.path.join(s.submodule_search_locations[0], "cmake") if s else "")' 2>/dev/null || true)
  OV=(-DCMAKE_DISABLE_FIND_PACKAGE_OpenVINO=OFF)
  if [ -n "$ov_dir" ] && [ -f "$ov_dir/OpenVINOConfig.cmake" ]; then OV+=(-DOpenVINO_DIR="$ov_dir"); fi
fi
cmake -S "$HERE" -B "$BUILD" -DORT_ROOT="$ORT" -DCMAKE_BUILD_TYPE=Release "${OV[@]}" \
      -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" \
      -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" -DCMAKE_SHARED_LINKER_FLAGS="$FLAGS" >/dev/null
cmake --build "$BUILD" -j 2 >/dev/null
echo "$BUILD"
