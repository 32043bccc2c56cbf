#!/usr/bin/env bash
# Multi-node `dsm fit` with torchrun: run the same command on every node, each with its
# NODE_RANK (0 on the node whose address is MASTER_ADDR). Lightning detects torchrun's
# environment (TorchElasticEnvironment): ranks, world size and the rendezvous come from it.
#
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=10.0.0.1 GPUS_PER_NODE=8 examples/launch/torchrun.sh
#   NNODES=4 NODE_RANK=1 MASTER_ADDR=10.0.0.1 GPUS_PER_NODE=8 examples/launch/torchrun.sh
#   ...
# Extra arguments go to `dsm fit` (e.g. --ckpt_path runs/.../last.ckpt to resume).
#
# Settings (environment variables, defaults in brackets):
#   NNODES [1]  NODE_RANK [0]  MASTER_ADDR [127.0.0.1]  MASTER_PORT [29500]
#   GPUS_PER_NODE [the GPUs nvidia-smi lists]  CONFIG [examples/launch/pretrain_k400_shards.yaml]
#   PYTHON [python]
set -euo pipefail

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l)}
CONFIG=${CONFIG:-examples/launch/pretrain_k400_shards.yaml}
PYTHON=${PYTHON:-python}

if [ "${GPUS_PER_NODE}" -lt 1 ]; then
  echo "torchrun.sh: no GPU found; set GPUS_PER_NODE (processes per node)" >&2
  exit 2
fi

exec "${PYTHON}" -m torch.distributed.run \
  --nnodes "${NNODES}" --node_rank "${NODE_RANK}" --nproc_per_node "${GPUS_PER_NODE}" \
  --master_addr "${MASTER_ADDR}" --master_port "${MASTER_PORT}" \
  -m dsm_lightning.cli fit --config "${CONFIG}" \
  --trainer.num_nodes "${NNODES}" --trainer.devices "${GPUS_PER_NODE}" "$@"
