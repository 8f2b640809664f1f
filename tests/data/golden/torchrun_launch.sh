#!/usr/bin/env bash
# zeroplan: llama-3.1-70b on 64 x H100-80GB, dp2 tp8 pp4 vpp2 sp zero1 mb1 ga64 seq8192 bf16 recompute-selective [megatron]
# The layout your script must build: tp=8 pp=4 dp=2 micro-batch=1 accumulation=64 (global batch 128)
torchrun --nnodes 8 --nproc_per_node 8 --node_rank "$NODE_RANK" --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:29500" train.py "$@"
