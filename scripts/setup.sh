#!/usr/bin/env bash
# Idempotent set-up shared by demo.sh and test.sh: the Debian packages nerfstudio's commands need
# (ffmpeg for ns-render, libusb for open3d in ns-export, chromium for the web page test), the web page's
# pinned renderer (npm), a virtualenv in .venv, and the project with its dev tools. A second run does
# nothing unless pyproject.toml, setup.py or this script changed (or a renderer package is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
# grep without -q: -q stops reading early, ldconfig then dies of SIGPIPE and pipefail calls it missing
ldconfig -p 2>/dev/null | grep 'libusb-1.0.so.0' >/dev/null || missing+=(libusb-1.0-0)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the web page's browser test (headless, CPU WebGL)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[setup] installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The renderer ds4d-export --web copies into its page (Spark and three.js, MIT), pinned, into a git-ignored
# folder; RENDERER_PACKAGES in ds4d_ns/exporting/web.py names the same versions.
web_renderer=tools/web-renderer
web_packages=("@sparkjsdev/spark@2.2.0" "three@0.180.0")
for package in "${web_packages[@]}"; do
  name=${package%@*}
  if ! grep -qs "\"version\": \"${package##*@}\"" "$web_renderer/node_modules/$name/package.json"; then
    echo "[setup] installing the web page's renderer into $web_renderer: ${web_packages[*]}"
    npm install --prefix "$web_renderer" --no-audit --no-fund --save-exact "${web_packages[@]}" >/dev/null
    break
  fi
done

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "[setup] creating .venv"; "$python" -m venv .venv; }

stamp=.venv/.ds4d-setup
wanted=$(cat pyproject.toml setup.py scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "[setup] installing the project into .venv (first run: several minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch and torchvision must come from one release pair: a CPU torch beside PyPI's CUDA
  # torchvision fails at import, and nerfstudio imports torchvision on every command.
  .venv/bin/python -c "import torch, torchvision" 2>/dev/null \
    || .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -e ".[dev,batch,spz,mesh]"  # batch: Ray (a 79 MB wheel, about 10 s) for ds4d-batch's tests; spz: gsply for the SPZ export test; mesh: ds4d-export --mesh
  echo "$wanted" > "$stamp"
fi

# The Khronos glTF validator, for the test that checks ds4d-export --mesh's glb (tools/ is git-ignored).
# Outside the stamp: checked on every run, installed only when the pinned version is not there.
gltf_validator=2.0.0-dev.3.10
if command -v npm >/dev/null 2>&1; then
  installed=$(node -p "require('./tools/node/node_modules/gltf-validator/package.json').version" 2>/dev/null || true)
  if [ "$installed" != "$gltf_validator" ]; then
    echo "[setup] installing gltf-validator $gltf_validator into tools/node"
    mkdir -p tools/node
    npm install --prefix tools/node --no-audit --no-fund --silent --save-exact "gltf-validator@$gltf_validator"
  fi
else
  echo "[setup] npm not found: the glTF validator test (tests/test_export_mesh.py) will fail; install Node.js"
fi
