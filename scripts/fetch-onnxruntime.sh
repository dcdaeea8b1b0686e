#!/usr/bin/env bash
# Puts ONNX Runtime's shared library where medledger looks for it by default
# (vendor/onnxruntime/), taken from the PyPI onnxruntime wheel: the only registry this
# project may download from. `ort` 2.0.0-rc.15 needs exactly this release (api-31).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.31.1
DEST=vendor/onnxruntime
LIB="$DEST/libonnxruntime.so.$VERSION"
if [ -f "$LIB" ]; then
    echo "ONNX Runtime $VERSION already in $DEST"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
    "onnxruntime==$VERSION" -d "$TMP"
WHEEL=$(ls "$TMP"/onnxruntime-"$VERSION"-*.whl)
mkdir -p "$DEST"
python3 - "$WHEEL" "$DEST" "$VERSION" <<'PY'
import sys, zipfile, os
wheel, dest, version = sys.argv[1:]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    data = z.read(name)
tmp = os.path.join(dest, f".libonnxruntime.so.{version}.partial")
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, os.path.join(dest, f"libonnxruntime.so.{version}"))
PY
echo "ONNX Runtime $VERSION → $LIB"
