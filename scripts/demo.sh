#!/usr/bin/env bash
# The main job (make demo): teach the default model the HR policy of a fictional company, then
# answer held-out questions with the base and the tuned model side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
OJT=.venv/bin/ojt
RUN=${RUN:-runs/hr-demo}

echo "== 1/3 check the training data (examples/hr/train.jsonl)"
$OJT data check examples/hr/train.jsonl --max-seq-len 512
echo
echo "== 2/3 fine-tune smollm2-135m-instruct with LoRA (configs/hr-demo.yaml)"
$OJT train configs/hr-demo.yaml --output_dir "$RUN" --overwrite   # the demo replaces its own earlier run
echo
echo "== 3/3 held-out questions (examples/hr/eval.jsonl): base vs tuned"
$OJT eval "$RUN" --data examples/hr/eval.jsonl --max-new-tokens 96 --out "$RUN/eval"
cat <<EOT

The adapter is in $RUN/final (PEFT format; loss curve in $RUN/loss.png;
full report with every answer in $RUN/eval/report.html).
  chat with it:      $OJT chat $RUN
  answer a file:     $OJT generate $RUN --input questions.jsonl --out answers.jsonl
  serve it:          $OJT serve --adapter hr=$RUN   (OpenAI-compatible API on 127.0.0.1:8000)
  merge it:          $OJT merge $RUN --out $RUN/merged   (a plain transformers model folder)
  export it:         $OJT export $RUN --to ollama --out $RUN/ollama   (GGUF + Modelfile, checked against the run)
  compare with RAG:  $OJT rag index examples/hr/handbook.md --collection hr
                     $OJT compare --data examples/hr/eval.jsonl --arms prompt,few-shot,rag,ft,ft+rag --run $RUN --rag hr
EOT
