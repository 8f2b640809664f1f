#include "costmodel/memory_model.h"

#include <algorithm>

#include "costmodel/activations.h"
#include "costmodel/model_states.h"
#include "costmodel/pipeline.h"
#include "costmodel/rank_params.h"

namespace zp {
namespace {

Dtype low_dtype(const Layout& l) {
  return l.precision == Precision::Fp32 ? Dtype::Fp32 : l.precision == Precision::Fp16 ? Dtype::Fp16 : Dtype::Bf16;
}

struct StageParams {
  uint64_t dense = 0, experts = 0;
  bool first = false, last = false;
};

StageParams stage_params(const RankParams& r, const Layout& l, uint64_t layers, uint32_t stage) {
  StageParams s;
  s.first = stage == 0;
  s.last = stage + 1 == l.pp;
  s.dense = layers * r.layer_dense;
  s.experts = layers * r.layer_experts;
  if (s.first) s.dense += r.embedding + r.position + r.embedding_norm;
  if (s.last) s.dense += r.final_norm + r.head;
  return s;
}

// Logits and loss buffers on the last stage, per framework (docs/memory-model.md):
//  zeroplan: bf16 logits whose gradient the fused cross-entropy writes in place;
//  deepspeed: Hugging Face causal-LM heads keep bf16 logits and an fp32 upcast;
//  megatron: the final-norm and output-layer inputs and fp32 logits,
//            4sbh(1 + V/h)/t (theoretical_memory_usage.py, pp = 1 term).
template <class Sink>
void emit_output_layer(const MemoryInputs& in, const ActivationShape& x, const RankParams& r, uint64_t mbs,
                       Sink& sink) {
  const uint64_t T = x.s * x.b, To = x.tokens_outside(), vt = r.padded_vocab / in.layout.tp;
  const Residence G = Residence::Gpu;
  sink.add(tensor_row(Component::Logits, G, x.dtype, "final_norm_input [To,h]", To, x.h, 1, 1, mbs));
  sink.add(tensor_row(Component::Logits, G, x.dtype, "head_input [To,h]", To, x.h, 1, 1, mbs));
  switch (in.layout.framework) {
    case Framework::Zeroplan:
      sink.add(tensor_row(Component::Logits, G, x.dtype, "logits [T,V/t]", T, vt, 1, 1, mbs));
      sink.add(tensor_row(Component::Logits, G, Dtype::Fp32, "loss [T]", T, 1, 1, 1, mbs));
      break;
    case Framework::DeepSpeed:
      sink.add(tensor_row(Component::Logits, G, x.dtype, "logits [T,V/t]", T, vt, 1, 1, mbs));
      sink.add(tensor_row(Component::Logits, G, Dtype::Fp32, "logits_fp32 [T,V/t]", T, vt, 1, 1, mbs));
      break;
    case Framework::Megatron:
      sink.add(tensor_row(Component::Logits, G, Dtype::Fp32, "logits_fp32 [T,V/t]", T, vt, 1, 1, mbs));
      break;
  }
}

template <class Sink>
void emit_stage(const MemoryInputs& in, uint32_t stage, Sink& sink) {
  const Layout& l = in.layout;
  const ModelShape& m = in.model;
  const MemoryOptions& o = in.options;
  const RankParams r = rank_params(m, l);
  const uint64_t layers = layers_on_stage(m.layers, l.pp, stage);
  const StageParams sp = stage_params(r, l, layers, stage);
  const Dtype low = low_dtype(l);

  // 1. Model states: dense parameters partition over dp, experts over dp/ep.
  emit_model_states(l, sp.dense, l.dp, "dense parameters", sink);
  if (sp.experts > 0) emit_model_states(l, sp.experts, l.dp / l.ep, "expert parameters", sink);
  const uint64_t stage_total = sp.dense + sp.experts;

  // 2. ZeRO-3 working set: gathered parameters of the current and next unit.
  if (l.zero_stage == 3) {
    uint64_t gathered = 0;
    if (l.framework == Framework::DeepSpeed) {
      // DeepSpeed gathers module by module, prefetching up to
      // stage3_prefetch_bucket_size elements and holding at most
      // stage3_max_live_parameters (deepspeed/runtime/zero/partitioned_param_coordinator.py).
      gathered = std::min(o.max_live_elems, r.largest_module / l.tile_factor + o.prefetch_elems);
    } else {
      // zeroplan gathers one transformer layer and prefetches the next; the
      // embedding and output layer are units of their own. Memory-centric
      // tiling (ZeRO-Infinity Sec. 5.1.3) splits a layer's operators into tiles.
      const uint64_t unit = (r.layer_dense + r.layer_experts) / l.tile_factor;
      gathered = 2 * unit;
      if (sp.first) gathered = std::max(gathered, r.embedding + r.position + unit);
      if (sp.last) gathered = std::max(gathered, r.head + unit);
    }
    gathered = std::min(gathered, stage_total);
    sink.add(tensor_row(Component::Zero3Gathered, Residence::Gpu, low, "gathered parameters", gathered));
  }

  // 3. Gradient buckets (data parallel only). Megatron's are views into its
  // contiguous main-grad buffer (core/distributed/param_and_grad_buffer.py).
  if (l.dp > 1 && l.framework != Framework::Megatron) {
    const uint64_t bucket = std::min(o.reduce_bucket_elems, stage_total);
    const Dtype grad = (l.framework == Framework::Zeroplan && l.fp32_grad_accum) ? Dtype::Fp32 : low;
    sink.add(tensor_row(Component::Buckets, Residence::Gpu, grad, "gradient reduce bucket", bucket, 1, 1, 1,
                        o.overlap_comm ? 2 : 1));
  }

  // 4. Offload staging in pinned host memory for NVMe (DeepSpeed aio buffers).
  if (l.offload_param == Offload::Nvme) {
    sink.add(tensor_row(Component::OffloadStaging, Residence::Host, low, "nvme parameter swap buffers",
                        o.nvme_param_buffer_elems));
  }
  if (l.offload_optimizer == Offload::Nvme) {
    const uint64_t partition = (stage_total + l.dp - 1) / l.dp;
    const uint64_t unit = std::min(o.optimizer_subgroup_elems, partition);
    const uint64_t per_param = optimizer_side_bytes_per_param(l);
    sink.add(tensor_row(Component::OffloadStaging, Residence::Host, Dtype::Bytes, "nvme optimizer swap sub-group",
                        unit * per_param));
  }

  // 5. Activations of the micro-batches in flight.
  const ActivationShape x = activation_shape(m, l);
  const InFlight f = in_flight(l, layers, m.layers, stage);
  if (l.recompute == Recompute::Full) {
    const uint64_t recomputed = l.recompute_layers == 0 ? f.layers_per_unit
                                                        : std::min<uint64_t>(l.recompute_layers, f.layers_per_unit);
    emit_layer_checkpoints(x, l.partition_activations, l.checkpoints_to_cpu, f.units * recomputed, sink);
    emit_layer_activations(x, Recompute::None, f.units * (f.layers_per_unit - recomputed), sink);
    // Backward rebuilds one layer at a time: one layer's full set is live.
    sink.add(tensor_row(Component::RecomputeWorkspace, Residence::Gpu, Dtype::Bytes, "one recomputed layer",
                        layer_activation_bytes(x, Recompute::None)));
  } else {
    emit_layer_activations(x, l.recompute, f.units * f.layers_per_unit, sink);
    if (l.recompute == Recompute::Selective) {
      const uint64_t rebuilt = layer_activation_bytes(x, Recompute::None) - layer_activation_bytes(x, Recompute::Selective);
      if (rebuilt > 0) {
        sink.add(tensor_row(Component::RecomputeWorkspace, Residence::Gpu, Dtype::Bytes,
                            "one layer's recomputed attention", rebuilt));
      }
    }
  }
  if (sp.first) {
    // Token ids (int64 in Megatron and PyTorch data loaders, int32 in zeroplan)
    // and the embedding dropout mask, per micro-batch in flight.
    const Dtype ids = l.framework == Framework::Zeroplan ? Dtype::Int32 : Dtype::Int64;
    sink.add(tensor_row(Component::Activations, Residence::Gpu, ids, "input_ids [b,s]", x.b, x.s, 1, 1, f.microbatches));
    if (x.dropout) {
      sink.add(tensor_row(Component::Activations, Residence::Gpu, Dtype::Uint8, "embedding_dropout_mask [To,h]",
                          x.tokens_outside(), x.h, 1, 1, f.microbatches));
    }
  }
  if (sp.last) emit_output_layer(in, x, r, f.microbatches, sink);

  // 6. Runtime overheads: measured constants, one NCCL communicator per
  // parallel group of more than one rank (none when emulated).
  {
    uint64_t tensors = 0;
    for (int c = 0; c < kNumComponents; ++c) tensors += sink.totals().bytes[0][c];
    const RuntimeOverheads& ov = o.overheads;
    sink.add(tensor_row(Component::CudaContext, Residence::Gpu, Dtype::Bytes, "CUDA context", ov.cuda_context_bytes));
    sink.add(tensor_row(Component::CublasWorkspace, Residence::Gpu, Dtype::Bytes, "cuBLAS handle and workspace",
                        ov.cublas_workspace_bytes));
    uint64_t groups = (l.dp > 1) + (l.tp > 1) + (l.pp > 1) + (l.ep > 1) + (l.ep > 1 && l.dp / l.ep > 1);
    if (l.emulated) groups = 0;
    if (groups > 0) {
      sink.add(tensor_row(Component::NcclBuffers, Residence::Gpu, Dtype::Bytes, "NCCL communicators",
                          ov.nccl_first_communicator_bytes + (groups - 1) * ov.nccl_communicator_bytes));
    }
    if (ov.fragmentation_fraction > 0) {
      sink.add(tensor_row(Component::Fragmentation, Residence::Gpu, Dtype::Bytes, "allocator fragmentation reserve",
                          static_cast<uint64_t>(static_cast<double>(tensors) * ov.fragmentation_fraction)));
    }
  }
}

}  // namespace

void memory_rows_for_stage(const MemoryInputs& in, uint32_t stage, RowsSink& sink) { emit_stage(in, stage, sink); }

MemoryResult evaluate_memory(const MemoryInputs& in) {
  const Layout& l = in.layout;
  const uint32_t p = l.pp;
  const uint32_t rem = static_cast<uint32_t>(in.model.layers % p);
  // Stages other than these hold no more layers, in-flight micro-batches or
  // embedding/head parameters than one of them.
  uint32_t candidates[4] = {0, p > 1 ? 1u : 0u, rem > 0 ? p - rem : 0u, p - 1};
  MemoryResult best;
  bool have = false;
  for (int i = 0; i < 4; ++i) {
    const uint32_t stage = candidates[i];
    bool seen = false;
    for (int j = 0; j < i; ++j) seen |= candidates[j] == stage;
    if (seen) continue;
    TotalsSink sink;
    emit_stage(in, stage, sink);
    const uint64_t gpu = sink.totals().total(Residence::Gpu);
    const uint64_t host = sink.totals().total(Residence::Host);
    const uint64_t nvme = sink.totals().total(Residence::Nvme);
    if (!have || gpu > best.gpu_bytes) {
      best.rank = sink.totals();
      best.stage = stage;
      best.gpu_bytes = gpu;
      have = true;
    }
    // Host and NVMe per node: the node's GPUs at the most demanding stage's figure.
    best.host_bytes_per_node = std::max(best.host_bytes_per_node, host * in.cluster.gpus_in_node);
    best.nvme_bytes_per_node = std::max(best.nvme_bytes_per_node, nvme * in.cluster.gpus_in_node);
  }
  best.fits_gpu = best.gpu_bytes <= in.cluster.gpu_memory_bytes;
  best.fits_host = best.host_bytes_per_node <= in.cluster.host_memory_bytes;
  best.fits_nvme = best.nvme_bytes_per_node <= in.cluster.nvme_bytes;
  return best;
}

}  // namespace zp
