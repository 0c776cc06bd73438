#!/usr/bin/env bash
# Install Stethoscope for development on a CPU machine without ever pulling a CUDA build of torch.
# Usage: bash scripts/setup.sh            (uses the current python; make a venv first if you like)
set -euo pipefail
PY=${PYTHON:-python3}
TORCH_VERSION=${STETHOSCOPE_TORCH:-2.13.0}
if ! "$PY" -c "import torch" 2>/dev/null; then
  # The CPU wheel index first; a local wheel cache (pip's find-links) serves machines without it.
  # no retries: offline machines fall through to the local wheel at once
  "$PY" -m pip install --retries 0 --timeout 15 "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu \
    || "$PY" -m pip install "torch==${TORCH_VERSION}"
fi
# torch is now satisfied, so resolving the project's "torch>=2.1" installs nothing more.
"$PY" -m pip install -e ".[dev]"
"$PY" -c "import torch, stethoscope; print('stethoscope', stethoscope.__version__, 'torch', torch.__version__)"
