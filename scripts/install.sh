#!/usr/bin/env bash
# Set up .venv with AutoCNC. torch is pinned and installed FIRST, in its own step, so no
# later resolver pulls another torch (and its CUDA wheels). Pass --no-ml to skip the
# learning stack (torch, PyKEEN, PyG, sentence-transformers), which the foundation does not use.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.15.0
[ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${1:-}" != "--no-ml" ]; then
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION}"
  .venv/bin/python -m pip install -q -e ".[ml,dev]" "torch==${TORCH_VERSION}"
else
  .venv/bin/python -m pip install -q -e ".[dev]"
fi
echo "installed: $(.venv/bin/autocnc --help >/dev/null && echo autocnc ok)"
