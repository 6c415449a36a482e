#!/usr/bin/env bash
# Ray for the GPU machine (Python 3.12, no package index), small enough to travel with a device call.
# Ray 2.60's wheel is 79 MB; unpacked, its Java jars (33 MB) and the libraries a local ds4d-batch never
# imports (rllib, serve, tune, train, data) and every tests/ folder can go. The dashboard (11 MB) must stay:
# without it the raylet cannot start its agent and `ray.init()` times out ("The current node timed out
# during startup"), checked on the CPU machine with Ray 2.60 on 2026-12-07.
# Writes .ray/ (git-ignored through .git/info/exclude): ray-trimmed.tar.xz, the wheels Ray depends on, and
# bootstrap.sh, which a device command sources after .whl/bootstrap.sh:
#   source .whl/bootstrap.sh && source .ray/bootstrap.sh && ds4d-batch ...
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
grep -qx '/.ray/' .git/info/exclude 2>/dev/null || echo '/.ray/' >> .git/info/exclude
version=${RAY_VERSION:-2.60.0}
mkdir -p .ray
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
P=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --no-deps "${P[@]}" -d "$work" "ray==$version" 2>&1 | grep -v '^WARNING' || true
for p in click filelock jsonschema jsonschema-specifications referencing rpds-py attrs msgpack packaging protobuf \
  pyyaml requests charset-normalizer idna urllib3 certifi; do
  python3 -m pip download -q --no-deps "${P[@]}" -d .ray "$p" 2>&1 | grep -v '^WARNING' || true
done
mkdir "$work/unpacked"
python3 -m zipfile -e "$work"/ray-"$version"-*.whl "$work/unpacked"
(cd "$work/unpacked" && rm -rf ray/jars ray/rllib ray/serve ray/tune ray/train ray/data &&
  find ray -type d -name tests -prune -exec rm -rf {} + &&
  tar -cJf "$root/.ray/ray-trimmed.tar.xz" ray ray-"$version".dist-info)
cat > .ray/bootstrap.sh <<'BOOT'
# GPU side, after .whl/bootstrap.sh (which made /tmp/site and put it on PYTHONPATH): Ray and its dependencies.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .ray/*.whl >/dev/null 2>&1 || true
tar -xJf .ray/ray-trimmed.tar.xz -C /tmp/site
cat > /tmp/site/bin/ray <<'RAY'
#!/usr/bin/env python3
from ray.scripts.scripts import main
main()
RAY
chmod +x /tmp/site/bin/ray
BOOT
du -sh .ray
