#!/usr/bin/env bash
# The GPU check on a bare GPU machine that has python3 with torch but no package index.
#
#   bash benchmarks/gpu_check.sh fetch            # here (index reachable): nnU-Net's missing wheels into .whl/ (~20 MB)
#   bash benchmarks/gpu_check.sh --out DIR ...    # there: installs .whl/ and nnunet_weak into /tmp, runs gpu_check.py
#
# .whl/ is ignored by git (.gitignore) and travels as a carried path. SimpleITK (53 MB) and
# imagecodecs (26 MB) are left out to stay under the 64 MiB that can travel: nothing in the check needs
# imagecodecs, and gpu_check.py replaces SimpleITK by the nibabel stand-in in benchmarks/sitk_standin when it is
# missing. Versions are those this project is tested with (nnU-Net 2.8.1) for CPython 3.12 on x86-64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=(nnunetv2==2.8.1 dynamic-network-architectures==0.4.4 batchgenerators==0.25.5 batchgeneratorsv2==0.3.6
        blosc2==4.15.0 ndindex==1.10.1 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
        typing-inspection==0.4.5 connected-components-3d==4.1.1 nibabel==5.4.2 graphviz==0.21 yacs==0.1.8)

if [ "${1:-}" = fetch ]; then
  mkdir -p .whl
  platforms=()
  for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_28_x86_64 \
           manylinux_2_31_x86_64 manylinux_2_34_x86_64; do platforms+=(--platform "$p"); done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${platforms[@]}" -d .whl "${WHEELS[@]}"
  # acvl-utils is published as a source archive only: build its (pure-Python) wheel here
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --no-deps --no-binary=:all: -d "$tmp" acvl-utils==0.2.6
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl "$tmp"/acvl_utils-0.2.6.tar.gz
  rm -rf "$tmp"
  du -sh .whl
  exit 0
fi

if ! "$PY" -c "import nnunetv2" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nnw_site .whl/*.whl
  export PYTHONPATH=/tmp/nnw_site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/nnw_site/bin:$PATH
fi
if ! command -v nnunet_weak_modelmix_pair >/dev/null; then   # our console scripts, for the nnU-Net subprocesses too
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/nnw_self .
  rm -rf build ./*.egg-info
  export PYTHONPATH=/tmp/nnw_self${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/nnw_self/bin:$PATH
fi
eval "$("$PY" -m nnunet_weak.env)"      # the stock nnU-Net commands find our trainers (no .pth in a --target install)
exec "$PY" benchmarks/gpu_check.py "$@"
