#!/usr/bin/env bash
# Validate a GPU engine as a Ray Serve deployment on a machine with one GPU (nothing here
# could run it: the test machine has no GPU). Steps, each printed PASS/FAIL:
#   1. deploy     matrix services start NAME llm=ENGINE (ray.serve.llm: OpenAI ingress + 1 replica)
#   2. check      matrix services check NAME (a chat call, a tool call, a JSON-schema call)
#   3. run        a small `matrix run dialogue` attached to the deployment by name
#   4. stop       matrix services stop NAME, then no Serve application of that name is left
#
#   scripts/gpu_validate.sh vllm                               # Qwen/Qwen2.5-0.5B-Instruct
#   scripts/gpu_validate.sh sglang Qwen/Qwen2.5-1.5B-Instruct [more llm.* overrides]
#   ADDRESS=HOST:PORT scripts/gpu_validate.sh vllm             # a Ray cluster other than RAY_ADDRESS
#   CLUSTER=lab scripts/gpu_validate.sh vllm                   # a cluster from `matrix cluster start lab`
#   scripts/gpu_validate.sh simllm                             # the same steps on the simulated engine
#                                                              # (checks this script where there is no GPU)
#
# It needs a running Ray cluster (services outlive the command that starts them): on a one-GPU
# machine `ray start --head --num-gpus=1` first; the script never starts or stops Ray itself.
# Needs: `pip install "ray[serve,llm]"` (vLLM) or `pip install "ray[serve,llm]" "sglang[all,ray]"`,
# and the model reachable (Hugging Face, or a local path as MODEL). Exit status: failed steps.
set -u
ENGINE=${1:?usage: scripts/gpu_validate.sh vllm|sglang [MODEL] [llm.KEY=VALUE ...]}
MODEL=${2:-Qwen/Qwen2.5-0.5B-Instruct}
shift $(( $# >= 2 ? 2 : 1 ))
ENGINE_ARGS=(llm.model="$MODEL" llm.max_model_len=4096)
case "$ENGINE" in
  vllm)   ENGINE_ARGS+=(llm.tool_call_parser=hermes) ;;   # Qwen2.5's tool-call format in vLLM
  sglang) ENGINE_ARGS+=(llm.tool_call_parser=qwen25) ;;   # ... and in SGLang
  simllm) ENGINE_ARGS=(llm.time_scale=20) ;;
  *) echo "matrix: error: ENGINE must be vllm, sglang or simllm, got '$ENGINE'" >&2; exit 2 ;;
esac
NAME="gpuval-$ENGINE-$$"
OUT="$(mktemp -d)/gpuval.jsonl"
WHERE=()
if [ -n "${ADDRESS:-}" ]; then WHERE=(--address "$ADDRESS"); fi
if [ -n "${CLUSTER:-}" ]; then WHERE=(--cluster "$CLUSTER"); fi
if [ -z "${ADDRESS:-}${CLUSTER:-}${RAY_ADDRESS:-}" ] && ! ray status >/dev/null 2>&1; then
  echo "matrix: error: no running Ray cluster: start one (ray start --head --num-gpus=1) or set ADDRESS=HOST:PORT" >&2
  exit 2
fi
FAILED=0
step() {
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  if "$@"; then echo "PASS $name ($((SECONDS - t0)) s)"; else echo "FAIL $name ($((SECONDS - t0)) s)"; FAILED=$((FAILED + 1)); fi
}
not_listed() { local listed; listed=$(matrix services list "${WHERE[@]}") && ! grep -q "$NAME" <<<"$listed"; }
small_run() {
  matrix run dialogue llm=service llm.name="$NAME" dataset.limit=4 rounds=2 output.path="$OUT" "${WHERE[@]}" &&
    [ "$(grep -c '"status": *"done"' "$OUT")" -eq 4 ]
}

step deploy matrix services start "$NAME" llm="$ENGINE" "${ENGINE_ARGS[@]}" \
  llm.deployment.min_replicas=1 llm.deployment.max_replicas=1 "$@" "${WHERE[@]}"
step check matrix services check "$NAME" "${WHERE[@]}"
step run small_run
step stop matrix services stop "$NAME" "${WHERE[@]}"
step gone not_listed
echo "$ENGINE on $MODEL: $FAILED step(s) failed"
exit "$FAILED"
