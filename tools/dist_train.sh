#!/usr/bin/env bash
# Distributed training with torchrun (mmengine's `pytorch` launcher):
#   bash tools/dist_train.sh CONFIG GPUS_OR_PROCS [train.py args...]
# On CPU the gloo backend is used (set by the config's env_cfg or MVQ's test configs).
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
PYTHON=${PYTHON:-python}
PORT=${PORT:-29500}
exec "$PYTHON" -m torch.distributed.run --nnodes=1 --node_rank=0 --master_addr=127.0.0.1 \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
