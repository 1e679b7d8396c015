#!/bin/bash
# Train a recipe on several nodes under SLURM: one torchrun per node, one process per GPU.
#
#   sbatch launch/slurm_train.sh configs/stylegan2_ffhq.yaml [key=value ...]
#   sbatch --nodes 8 launch/slurm_train.sh configs/stylegan2_ffhq.yaml backend.name=deepspeed backend.zero_stage=2
#
# Resubmitting (or --requeue after a preemption) continues from the run dir's latest checkpoint.
# SLURM sends SIGTERM two minutes before the time limit; the trainer then checkpoints and stops.
# The run dir (and the shards) must be on a filesystem every node sees; every rank streams its own
# disjoint part of each epoch, so nodes read different samples.
#SBATCH --job-name=hifigan
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
#SBATCH --requeue
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: sbatch launch/slurm_train.sh CONFIG [key=value ...]" >&2; exit 2; }
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=${MASTER_PORT:-29500}
export NPROC_PER_NODE=${NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
# one task per node; SLURM_NODEID is that task's node rank, read inside the task
srun --kill-on-bad-exit=1 bash -c 'exec python -m torch.distributed.run --nnodes "$SLURM_NNODES" \
    --node_rank "$SLURM_NODEID" --nproc_per_node "$NPROC_PER_NODE" --master_addr "$MASTER_ADDR" \
    --master_port "$MASTER_PORT" launch/train.py "$@"' hifigan "$@"
