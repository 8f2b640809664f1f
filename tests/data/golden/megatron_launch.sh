#!/usr/bin/env bash
# zeroplan: llama-3.1-70b on 64 x H100-80GB, dp2 tp8 pp4 vpp2 sp zero1 mb1 ga64 seq8192 bf16 recompute-selective [megatron]
torchrun --nnodes 8 --nproc_per_node 8 --node_rank "$NODE_RANK" --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:29500" pretrain_gpt.py \
  --tensor-model-parallel-size 8 \
  --pipeline-model-parallel-size 4 \
  --num-layers-per-virtual-pipeline-stage 10 \
  --sequence-parallel \
  --recompute-granularity selective \
  --use-distributed-optimizer \
  --micro-batch-size 1 \
  --global-batch-size 128 \
  --seq-length 8192 \
  --max-position-embeddings 131072 \
  --num-layers 80 \
  --hidden-size 8192 \
  --ffn-hidden-size 28672 \
  --num-attention-heads 64 \
  --group-query-attention \
  --num-query-groups 8 \
  --swiglu \
  --normalization RMSNorm \
  --position-embedding-type rope \
  --untie-embeddings-and-output-weights \
  --disable-bias-linear \
  --attention-dropout 0.0 \
  --hidden-dropout 0.0 \
  --use-flash-attn \
  --bf16 \
  "$@"
