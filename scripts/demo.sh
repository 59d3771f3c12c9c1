#!/usr/bin/env bash
# The main job (make demo): prepare the shipped HR-assistant example for training.
set -euo pipefail
cd "$(dirname "$0")/.."
OJT=.venv/bin/ojt
echo "== 1. check the training data"
$OJT data check examples/hr/train.jsonl
echo "== 2. preview what the model will learn from (supervised tokens marked)"
$OJT data preview examples/hr/train.jsonl -n 2
