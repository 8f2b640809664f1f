#!/usr/bin/env bash
# zeroplan: llama-3.1-8b on 16 x H100-80GB, dp16 tp1 pp1 zero3 mb2 ga4 seq4096 bf16 recompute-full opt-offload-cpu param-offload-nvme [deepspeed]
deepspeed --hostfile hostfile --num_nodes 2 --num_gpus 8 train.py --deepspeed --deepspeed_config ds_config.json
