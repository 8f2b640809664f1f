#include "costmodel/time_model.h"

#include <algorithm>
#include <cmath>

#include "costmodel/gradient_zeroing.h"
#include "costmodel/memory_options.h"
#include "costmodel/model_states.h"
#include "costmodel/rank_params.h"

namespace zp {
namespace {

void add_comm(StepTime& t, const char* dim, const char* coll, double buffer, double calls, double sent, double seconds) {
  if (calls <= 0 || buffer <= 0 || t.comm_rows >= static_cast<int>(t.comm.size())) return;
  t.comm[t.comm_rows++] = CommRow{dim, coll, buffer, calls, sent, seconds};
}

bool dp_overlapped(const Layout& l) {
  if (l.dp_overlap != Toggle::Default) return l.dp_overlap == Toggle::On;
  // Framework defaults: DeepSpeed overlap_comm is on for ZeRO-3 only
  // (deepspeed/runtime/zero/config.py); Megatron-LM's --overlap-grad-reduce
  // is off unless asked for; zeroplan's executor waits for each collective
  // (executor/nccl_communicator.cc: every call synchronises its stream, and
  // ZeRO-3's prefetch gathers before the layer runs), so nothing hides its
  // data-parallel traffic.
  switch (l.framework) {
    case Framework::DeepSpeed: return l.zero_stage == 3;
    case Framework::Megatron: return false;
    case Framework::Zeroplan: return false;
  }
  return true;
}

bool prep_matches(const TimePrep& p, const TimeInputs& in) {
  const Layout& l = in.layout;
  return p.model == &in.model && p.network == &in.network && p.gpu == &in.gpu && p.tp == l.tp && p.ep == l.ep &&
         p.micro_batch == l.micro_batch && p.seq_len == l.seq_len && p.sequence_parallel == l.sequence_parallel &&
         p.head_copy == (l.pp > 1) && p.tp_comm_overlap == l.tp_comm_overlap && p.attention == l.attention &&
         p.dropout == l.dropout && p.precision == l.precision && p.framework == l.framework;
}

void prepare_time(TimePrep& p, const TimeInputs& in) {
  const ModelShape& m = in.model;
  const Layout& l = in.layout;
  const Network& net = in.network;
  p.model = &m;
  p.network = &net;
  p.gpu = &in.gpu;
  p.tp = l.tp;
  p.ep = l.ep;
  p.micro_batch = l.micro_batch;
  p.seq_len = l.seq_len;
  p.sequence_parallel = l.sequence_parallel;
  p.head_copy = l.pp > 1;
  p.tp_comm_overlap = l.tp_comm_overlap;
  p.attention = l.attention;
  p.dropout = l.dropout;
  p.precision = l.precision;
  p.framework = l.framework;
  p.lc = layer_compute(m, l, in.gpu, net.eff);
  p.hc = head_compute(m, l, in.gpu, net.eff);
  p.x = activation_shape(m, l);
  p.rp = rank_params(m, l);
  p.forward_flops_per_sequence = model_forward_flops(m, l.seq_len, 1);
  const double act_bytes = static_cast<double>(dtype_bytes(p.x.dtype));
  const double T = static_cast<double>(p.x.s * p.x.b), h = static_cast<double>(p.x.h);

  // Tensor-parallel collectives, per layer and micro-batch.
  p.tp_span = group_span(l, Dimension::Tensor, net.links);
  const double tp_buffer = T * h * act_bytes;
  p.tp_fwd_s = p.tp_bwd_s = p.tp_calls_fwd = p.tp_calls_bwd = 0;
  if (l.tp > 1) {
    if (p.x.sp) {
      // Per block: all-gather before the column-parallel GEMM, reduce-scatter
      // after the row-parallel one; backward mirrors them and re-gathers the
      // column-parallel inputs (Megatron-LM core/tensor_parallel/layers.py).
      const double pair = all_gather_s(tp_buffer, p.tp_span, net) + reduce_scatter_s(tp_buffer, p.tp_span, net);
      p.tp_fwd_s = 2 * pair;
      p.tp_bwd_s = 2 * pair + 2 * all_gather_s(tp_buffer, p.tp_span, net);
      p.tp_calls_fwd = 4;
      p.tp_calls_bwd = 6;
    } else {
      p.tp_fwd_s = 2 * all_reduce_s(tp_buffer, p.tp_span, net);
      p.tp_bwd_s = 2 * all_reduce_s(tp_buffer, p.tp_span, net);
      p.tp_calls_fwd = 2;
      p.tp_calls_bwd = 2;
    }
  }
  if (l.tp_comm_overlap) p.tp_fwd_s = p.tp_bwd_s = 0;

  // MoE all-to-all: dispatch and combine, forward and backward.
  p.ep_span = group_span(l, Dimension::Expert, net.links);
  p.ep_layer_s = 0;
  const double a2a_buffer = T * static_cast<double>(m.top_k) * h * act_bytes;
  if (m.experts > 0 && l.ep > 1) p.ep_layer_s = 2 * all_to_all_s(a2a_buffer, p.ep_span, net);
}


// The share of a stage's layers that full recompute repeats.
double recompute_fraction(const Layout& l, double layers) {
  return l.recompute_layers == 0 ? 1.0 : std::min(1.0, l.recompute_layers / layers);
}

// Recompute time per layer in backward: full recompute repeats the layer's
// forward (`forward_s`, with or without its communication), selective the
// attention core (Korthikanti Sec. 5; Megatron-LM checkpoints core attention
// with flash kernels too). zeroplan's executor under flash attention keeps
// each layer's log-sum-exp and rebuilds nothing (executor/gpt_model.h).
bool selective_repeats_attention_core(const Layout& l) {
  return l.recompute == Recompute::Selective && !(l.framework == Framework::Zeroplan && l.attention == Attention::Flash);
}

double recompute_per_layer_s(const Layout& l, double layers, double forward_s, const LayerCompute& lc) {
  if (l.recompute == Recompute::Full) return recompute_fraction(l, layers) * forward_s;
  return selective_repeats_attention_core(l) ? lc.attention_s + lc.softmax_s : 0;
}

// One micro-batch on a stage of `layers` layers (the last with the output
// layer), each layer taking `layer_f` forward and `layer_b` backward (with or
// without its tensor-parallel and expert traffic), full recompute repeating
// layer_f.
struct StageMicrobatch {
  double forward_s, backward_s, recompute_layer_s;
};
StageMicrobatch stage_microbatch(const Layout& l, double layers, bool last, double layer_f, double layer_b,
                                 const LayerCompute& lc, const HeadCompute& hc) {
  const double recompute_layer = recompute_per_layer_s(l, layers, layer_f, lc);
  return {layers * layer_f + (last ? hc.forward_s : 0), layers * (layer_b + recompute_layer) + (last ? hc.backward_s : 0),
          recompute_layer};
}

double pipeline_fill(const Layout& l) {
  if (l.pp == 1) return 0;
  return l.schedule == Schedule::Interleaved ? (l.pp - 1.0) / l.vpp : l.pp - 1.0;
}

bool pipe_matches(const PipelinePrep& p, const Layout& l) {
  return p.valid && p.dp == l.dp && p.pp == l.pp && p.vpp == l.vpp && p.grad_accum == l.grad_accum &&
         p.first_stage_layers == l.first_stage_layers && p.last_stage_layers == l.last_stage_layers &&
         p.recompute_layers == l.recompute_layers && p.schedule == l.schedule && p.recompute == l.recompute &&
         p.optimizer == l.optimizer && p.fp32_grad_accum == l.fp32_grad_accum;
}

// The data-parallel collective times for p's parameters and groups, from
// the memo or computed into its round-robin victim.
const DpCollectives& dp_collectives(std::array<DpCollectives, 4>& memo, int& victim, const PipelinePrep& p,
                                    const Network& net) {
  for (const DpCollectives& d : memo) {
    if (d.valid && d.network == &net && d.dense == p.dense && d.experts == p.experts && d.grad_bytes == p.grad_bytes &&
        d.param_bytes == p.param_bytes && d.dp_span == p.dp_span && d.edp_span == p.edp_span) {
      return d;
    }
  }
  DpCollectives& d = memo[victim];
  victim = (victim + 1) % static_cast<int>(memo.size());
  d = DpCollectives{&net, p.dense, p.experts, p.grad_bytes, p.param_bytes, p.dp_span, p.edp_span, true};
  d.dense_all_reduce_s = all_reduce_s(p.dense * p.grad_bytes, p.dp_span, net);
  d.dense_reduce_scatter_s = reduce_scatter_s(p.dense * p.grad_bytes, p.dp_span, net);
  d.dense_all_gather_s = all_gather_s(p.dense * p.param_bytes, p.dp_span, net);
  d.expert_all_reduce_s = all_reduce_s(p.experts * p.grad_bytes, p.edp_span, net);
  d.expert_reduce_scatter_s = reduce_scatter_s(p.experts * p.grad_bytes, p.edp_span, net);
  d.expert_all_gather_s = all_gather_s(p.experts * p.param_bytes, p.edp_span, net);
  return d;
}

void prepare_pipeline(PipelinePrep& p, const TimePrep& pr, const TimeInputs& in, std::array<DpCollectives, 4>& memo,
                      int& victim) {
  const ModelShape& m = in.model;
  const Layout& l = in.layout;
  const Network& net = in.network;
  p.valid = true;
  p.dp = l.dp;
  p.pp = l.pp;
  p.vpp = l.vpp;
  p.grad_accum = l.grad_accum;
  p.first_stage_layers = l.first_stage_layers;
  p.last_stage_layers = l.last_stage_layers;
  p.recompute_layers = l.recompute_layers;
  p.schedule = l.schedule;
  p.recompute = l.recompute;
  p.optimizer = l.optimizer;
  p.fp32_grad_accum = l.fp32_grad_accum;
  // The optimizer-side states NVMe offload moves: the same at every ZeRO
  // stage that can offload (1-3), so worked out once per pipeline.
  Layout nvme = l;
  nvme.zero_stage = 1;
  nvme.offload_optimizer = Offload::Nvme;
  p.nvme_optimizer_bytes_per_param = static_cast<double>(optimizer_side_bytes_per_param(nvme));

  const double mb = static_cast<double>(l.num_microbatches());
  const LayerCompute& lc = pr.lc;
  const ActivationShape& x = pr.x;
  const double act_bytes = static_cast<double>(dtype_bytes(x.dtype));
  const double T = static_cast<double>(x.s * x.b), h = static_cast<double>(x.h);

  // --- Per micro-batch times of the busiest stage ---------------------------
  // The pipeline runs at the pace of its slowest stage: the first (its
  // layers), one between (with an uneven split they are all alike), or the
  // last (its layers and the output layer; with the default split it also
  // holds the remainder, so it is the busiest).
  const double layer_f = lc.forward_s() + pr.tp_fwd_s + pr.ep_layer_s;
  const double layer_b = lc.backward_s() + pr.tp_bwd_s + pr.ep_layer_s;
  uint64_t layers_max = 0;
  double busiest = -1;
  for (uint32_t stage : {0u, l.pp > 2 ? 1u : 0u, l.pp - 1}) {
    const uint64_t n = layers_on_stage(m.layers, l, stage);
    layers_max = std::max(layers_max, n);
    const double layers = static_cast<double>(n);
    const StageMicrobatch s = stage_microbatch(l, layers, stage + 1 == l.pp, layer_f, layer_b, lc, pr.hc);
    if (s.forward_s + s.backward_s > busiest) {
      busiest = s.forward_s + s.backward_s;
      p.layers = layers;
      p.recompute_layer_s = s.recompute_layer_s;
      p.microbatch_forward_s = s.forward_s;
      p.microbatch_backward_s = s.backward_s;
    }
  }

  // --- Pipeline --------------------------------------------------------------
  const bool inter_stage_cross_node = uint64_t{l.tp} * l.dp >= net.links.gpus_per_node;
  // Megatron's scatter/gather optimisation (Narayanan et al. 2021 Sec. 4.1):
  // each tensor-parallel rank sends 1/t of the boundary activation over its
  // own link and the receivers all-gather it over NVLink (sequence
  // parallelism sends the 1/t shard it already holds).
  p.p2p_buffer = T / l.tp * h * act_bytes;
  p.p2p_per_mb_s = 0;
  p.p2p_calls = 0;
  if (l.pp > 1) {
    double per_boundary = p2p_s(p.p2p_buffer, inter_stage_cross_node, net);
    if (l.tp > 1 && !x.sp) per_boundary += all_gather_s(p.p2p_buffer * l.tp, pr.tp_span, net);
    const double chunks = l.schedule == Schedule::Interleaved ? l.vpp : 1;
    p.p2p_per_mb_s = 2 * per_boundary * chunks;  // activation + gradient
    p.p2p_calls = 2 * mb * chunks;
  }
  const double slot = p.microbatch_forward_s + p.microbatch_backward_s + p.p2p_per_mb_s;
  p.fill = pipeline_fill(l);
  p.pipeline_s = (mb + p.fill) * slot;

  // --- Data parallel: the collectives every ZeRO stage draws from -----------
  const RankParams& rp = pr.rp;
  // (The first stage's and the last's parameters together: the busiest
  // stage's, bounded from above as for its layers.)
  p.dense = static_cast<double>(layers_max * rp.layer_dense + rp.embedding + rp.position + rp.embedding_norm +
                                rp.final_norm + rp.head);
  p.experts = static_cast<double>(layers_max * rp.layer_experts);
  p.units = static_cast<double>(layers_max) + 2;
  p.dp_span = group_span(l, Dimension::Data, net.links);
  p.edp_span = group_span(l, Dimension::ExpertData, net.links);
  // Gradient dtype on the wire: Megatron-LM all-reduces its fp32 main_grad
  // buffer in bf16 training (accumulate_allreduce_grads_in_fp32 is forced on)
  // and the fp16 gradients in fp16 training (the flag's default is off).
  const bool megatron_fp32_grads = l.framework == Framework::Megatron && l.precision == Precision::Bf16;
  p.grad_bytes = (megatron_fp32_grads || l.fp32_grad_accum || l.precision == Precision::Fp32) ? 4 : act_bytes;
  p.param_bytes = act_bytes;
  p.collectives = dp_collectives(memo, victim, p, net);
  // Tied embeddings with pp > 1: the first and last stages all-reduce the
  // embedding gradient (Megatron-LM _allreduce_word_embedding_grads).
  p.tied_embedding_bytes = p.tied_embedding_s = p.held_unit_params = 0;
  if (m.tied && l.pp > 1) {
    p.held_unit_params = static_cast<double>(rp.embedding);
    p.tied_embedding_bytes = static_cast<double>(rp.embedding) * p.grad_bytes;
    const GroupSpan pair{2, 1, 2, false};
    p.tied_embedding_s = all_reduce_s(p.tied_embedding_bytes, pair, net);
  }
}

// A memory-bound copy pass: `bytes` read and written at hbm_fraction of the
// HBM bandwidth, plus kernel_overhead_s for each of `launches` copies.
struct Copies {
  double bytes = 0, launches = 0;
  double seconds(const GpuSpec& gpu, const EfficiencyCurves& e) const {
    return bytes / (gpu.hbm_bytes_per_s * e.hbm_fraction) + launches * e.kernel_overhead_s;
  }
};

// zeroplan's ZeRO-1 goes through a bucket of 2^24 elements, a rank's share
// of it a round (executor/data_parallel.cc reduce_and_update and
// gather_partition).
double zero1_rounds(double params, uint64_t n) {
  const double per_rank = std::ceil(static_cast<double>(kZeroplanBucketElems) / static_cast<double>(n));
  return std::max(1.0, std::ceil(std::ceil(params / static_cast<double>(n)) / per_rank));
}

// The executor's own copies around those rounds, on the step's path on any
// network: every rank's gradient range packed into the bucket (n a round),
// the reduced slice copied back (1), and the other ranks' ranges copied out
// of the gathered bucket (n - 1).
Copies zero1_bucket_copies(double grads, double weights, uint64_t n, double rounds) {
  const double nd = static_cast<double>(n);
  return {2 * grads + 2 * grads / nd + 2 * weights * (nd - 1) / nd, rounds * (nd + 1 + (nd - 1))};
}

// The part of a step that the ZeRO stage and offload choices change.
struct StatePhases {
  double dp_comm_s = 0, optimizer_s = 0, offload_s = 0;
  // The part of offload_s zeroplan's executor spends inside forward and
  // backward: ZeRO-2/3's per-micro-batch gradient copies to the host (and
  // the adds that outlast backward) and the offloaded parameters' uploads.
  double offload_in_compute_s = 0;
  // ZeRO-1's: its reduced partition's copy to the host and the add, inside
  // the gradient sync at the step's end (executor/data_parallel.cc).
  double offload_in_sync_s = 0;
  // zeroplan's executor zeroing its gradients (costmodel/gradient_zeroing.h),
  // and the part of it inside backward (ZeRO-2/3's unit buckets).
  double gradient_zeroing_s = 0, zeroing_in_backward_s = 0;
};

// The exposed data-parallel communication, the optimizer and the offload
// traffic of one layout on its prepared pipeline. With kRows the
// collectives' rows go into *rows too; the search's fast path has none.
template <bool kRows>
StatePhases state_phases(const PipelinePrep& p, const TimeInputs& in, StepTime* rows) {
  const Layout& l = in.layout;
  const EfficiencyCurves& eff = in.network.eff;
  const double mb = static_cast<double>(l.num_microbatches());
  const double pipeline_s = p.pipeline_s;
  StatePhases t;
  auto row = [rows](const char* dim, const char* coll, double buffer, double calls, double sent, double seconds) {
    if constexpr (kRows) add_comm(*rows, dim, coll, buffer, calls, sent, seconds);
  };
  // --- Data parallel and ZeRO -----------------------------------------------
  double dp_s = 0, dp_hidden_by = 0;
  auto sync = [&](double params, const GroupSpan& g, const char* dim, double ar_s, double rs_s, double ag_s) {
    if (g.size <= 1 || params <= 0) return;
    const double grads = params * p.grad_bytes, weights = params * p.param_bytes;
    const uint64_t n = g.size;
    // Calls: zeroplan's executor reduces and gathers ZeRO-2/3 unit by unit
    // (executor/zero_units.h) and ZeRO-1 through its bucket
    // (executor/data_parallel.cc); the rows count whole-gradient passes for
    // the other frameworks. The seconds are those of whole-buffer collectives
    // either way (the per-call latency is not modelled).
    const bool ours = l.framework == Framework::Zeroplan;
    const double units = ours ? p.units : 1;
    const double rounds = ours ? zero1_rounds(params, n) : 1;
    if (l.zero_stage == 0) {
      dp_s += ar_s;
      row(dim, "all-reduce (gradients)", grads, 1, ring_all_reduce_bytes(grads, n), ar_s);
    } else if (l.zero_stage <= 2) {
      // ZeRO-2 keeps only its gradient partition: its gradients are
      // reduce-scattered in every micro-batch; ZeRO-1 (and Megatron's
      // distributed optimizer) once per step.
      const double passes = l.zero_stage == 2 ? mb : 1;
      const double calls = l.zero_stage == 2 ? units : rounds;
      const double rs = passes * rs_s;
      dp_s += rs + ag_s;
      if (ours && l.zero_stage == 1) dp_s += zero1_bucket_copies(grads, weights, n, rounds).seconds(in.gpu, eff);
      row(dim, "reduce-scatter (gradients)", grads, passes * calls, passes * ring_all_gather_bytes(grads, n), rs);
      row(dim, "all-gather (parameters)", weights, calls, ring_all_gather_bytes(weights, n), ag_s);
    } else {
      // ZeRO-3: parameters gathered for forward and again for backward, and
      // gradients reduce-scattered, every micro-batch: 3 Psi.
      dp_s += mb * (2 * ag_s + rs_s);
      row(dim, "all-gather (parameters, fwd + bwd)", weights, 2 * mb * units,
          2 * mb * ring_all_gather_bytes(weights, n), 2 * mb * ag_s);
      row(dim, "reduce-scatter (gradients)", grads, mb * units, mb * ring_all_gather_bytes(grads, n), mb * rs_s);
    }
  };
  const DpCollectives& c = p.collectives;
  sync(p.dense, p.dp_span, "dp", c.dense_all_reduce_s, c.dense_reduce_scatter_s, c.dense_all_gather_s);
  sync(p.experts, p.edp_span, "expert-dp", c.expert_all_reduce_s, c.expert_reduce_scatter_s, c.expert_all_gather_s);
  if (dp_overlapped(l)) {
    // Gradient buckets reduce while backward continues; ZeRO-3 prefetches
    // each layer's parameters while the previous one computes.
    dp_hidden_by = l.zero_stage == 3 ? mb * (p.microbatch_forward_s + p.microbatch_backward_s) : p.microbatch_backward_s;
  }
  t.dp_comm_s = std::max(0.0, dp_s - dp_hidden_by);
  if (p.tied_embedding_s > 0) {
    t.dp_comm_s += p.tied_embedding_s;
    row("embedding", "all-reduce (tied gradients)", p.tied_embedding_bytes, 1,
        ring_all_reduce_bytes(p.tied_embedding_bytes, 2), p.tied_embedding_s);
  }
  const double dense = p.dense, experts = p.experts, grad_bytes = p.grad_bytes, param_bytes = p.param_bytes;

  // --- Optimizer and offload --------------------------------------------------
  const double params_here = dense + experts;
  const double partition = l.zero_stage >= 1 ? params_here / l.dp : params_here;
  const double hbm = in.gpu.hbm_bytes_per_s * eff.hbm_fraction;
  // Adam reads gradients, reads and writes the fp32 master and both moments,
  // writes the working-precision weights: about 30 bytes per parameter.
  const double adam_bytes_per_param = grad_bytes + 8 + 16 + param_bytes + (l.optimizer == Optimizer::Sgd ? -8 : 0);
  if (l.offload_optimizer == Offload::None) {
    t.optimizer_s = partition * adam_bytes_per_param / hbm;
  } else {
    // ZeRO-Offload: gradients down and parameters up over PCIe (4 Psi bytes per
    // step at 2-byte precision), the Adam step on the CPU.
    const double pcie = in.gpu.pcie_bytes_per_s * eff.pcie_fraction;
    const double node_gpus = static_cast<double>(in.node.gpus_per_node);
    // zeroplan's executor copies ZeRO-2/3's reduced gradient chunks to the
    // host in every micro-batch, on the compute stream, and a host thread
    // adds them into the fp32 partition while backward goes on
    // (executor/host_gradient_drain.h): the copies are on the step's path,
    // the adds only where they outlast the micro-batch's backward. ZeRO-1
    // copies and adds its reduced partition once, at the step's end
    // (executor/data_parallel.cc).
    double on_path_s = 0, grad_pcie_s = partition * grad_bytes / pcie;
    if (l.framework == Framework::Zeroplan) {
      const double add_s = partition * eff.cpu_accumulate_s_per_param * node_gpus;
      on_path_s = l.zero_stage >= 2 ? mb * (grad_pcie_s + std::max(0.0, add_s - p.microbatch_backward_s))
                                    : grad_pcie_s + add_s;
      grad_pcie_s = 0;
    }
    const double pcie_s = grad_pcie_s + partition * param_bytes / pcie;
    // CPU Adam's 0.22 s per 1e9 parameters is the whole host's rate; the
    // node's GPUs update their partitions on it at once.
    double cpu_s = partition * eff.cpu_adam_s_per_param * node_gpus;
    double nvme_s = 0;
    if (l.offload_optimizer == Offload::Nvme && in.node.nvme_read_bytes_per_s > 0) {
      // Read and write the offloaded states once per step; the node's NVMe
      // bandwidth is shared by its GPUs.
      const double share_r = in.node.nvme_read_bytes_per_s / static_cast<double>(in.node.gpus_per_node);
      const double share_w = in.node.nvme_write_bytes_per_s / static_cast<double>(in.node.gpus_per_node);
      const double state = partition * p.nvme_optimizer_bytes_per_param;
      nvme_s = state / share_r + state / std::max(share_w, 1.0);
    }
    const double host_step = cpu_s + pcie_s + nvme_s;
    const double gpu_step = pipeline_s;
    t.optimizer_s = l.delayed_update ? 0 : cpu_s;
    t.offload_s = on_path_s + (l.delayed_update ? std::max(0.0, host_step - gpu_step) : pcie_s + nvme_s);
    if (l.zero_stage >= 2) {
      t.offload_in_compute_s = on_path_s;
    } else {
      t.offload_in_sync_s = on_path_s;
    }
  }
  if (l.offload_param != Offload::None) {
    // Parameters come up from the host (or NVMe) for forward and backward of every micro-batch.
    const double bytes = 2 * mb * partition * param_bytes;
    double bw = in.gpu.pcie_bytes_per_s * eff.pcie_fraction;
    if (l.offload_param == Offload::Nvme && in.node.nvme_read_bytes_per_s > 0) {
      bw = std::min(bw, in.node.nvme_read_bytes_per_s / static_cast<double>(in.node.gpus_per_node));
    }
    const double exposed_s = std::max(0.0, bytes / bw - (dp_overlapped(l) ? pipeline_s : 0));
    t.offload_s += exposed_s;
    if (l.framework == Framework::Zeroplan) t.offload_in_compute_s += exposed_s;  // the units' gathers read the host
  }
  // --- Gradient zeroing (zeroplan's executor) ---------------------------------
  // Memsets, each written once at hbm_fraction plus a launch; the offloaded
  // partition's on the host at the host add's rate per byte
  // (cpu_accumulate_s_per_param is a pass of about 10 bytes a parameter),
  // the node's GPUs zeroing theirs at once, as their adds run.
  const GradientZeroing z = gradient_zeroing(l, params_here, p.units, p.held_unit_params, grad_bytes);
  t.zeroing_in_backward_s = Copies{z.backward_device_bytes, z.backward_device_launches}.seconds(in.gpu, eff);
  t.gradient_zeroing_s = t.zeroing_in_backward_s + Copies{z.step_device_bytes, z.step_device_launches}.seconds(in.gpu, eff) +
                         z.step_host_bytes / 10 * eff.cpu_accumulate_s_per_param * static_cast<double>(in.node.gpus_per_node);
  return t;
}

// The step's total in one order for both paths, so the search's fast
// throughput and evaluate()'s are the same double.
double step_total_s(const PipelinePrep& p, const StatePhases& s) {
  return p.pipeline_s + s.dp_comm_s + s.optimizer_s + s.offload_s + s.gradient_zeroing_s;
}

double tokens_per_step(const Layout& l) {
  return static_cast<double>(l.global_batch()) * static_cast<double>(l.seq_len);
}

// The copies an emulated rank's collectives make on its own device, which
// stand in for a network's transfers: the loopback communicator's
// (executor/loopback_communicator.cc: an all-gather writes its output once
// in 1 + ceil(log2 n) copies, a reduce-scatter copies the rank's slice; an
// all-reduce, a broadcast and a send move nothing; a receive zero-fills its
// buffer: pipeline_receive_times) and, around ZeRO-1's buckets, the
// executor's own packing (zero1_bucket_copies), each a Copies pass. The
// busiest stage's parameters and units stand for every stage's, as in its
// compute. Copies made inside forward and backward (ZeRO-2/3's per-unit
// collectives, sequence parallelism's) count in the measured compute
// phases; ZeRO-1/2's step-end ones in the collectives' phases.
struct LocalCopyTimes {
  double in_compute_s = 0, at_step_end_s = 0;
};

LocalCopyTimes local_copy_times(const PipelinePrep& p, const TimePrep& pr, const TimeInputs& in) {
  const Layout& l = in.layout;
  LocalCopyTimes t;
  auto copies = [&](double& into, double bytes, double launches) {
    into += Copies{bytes, launches}.seconds(in.gpu, in.network.eff);
  };
  auto gather_copies = [](uint64_t n) { return 1.0 + std::ceil(std::log2(static_cast<double>(n))); };
  const double mb = static_cast<double>(l.num_microbatches());
  auto data_parallel = [&](double params, uint64_t n) {
    if (n <= 1 || params <= 0) return;
    const double grads = params * p.grad_bytes, weights = params * p.param_bytes, nd = static_cast<double>(n);
    if (l.zero_stage == 3) {
      copies(t.in_compute_s, 2 * 2 * mb * weights, 2 * mb * p.units * gather_copies(n));  // forward and backward gathers
      copies(t.in_compute_s, 2 * mb * grads / nd, mb * p.units);                         // the rank's reduced slices
    } else if (l.zero_stage == 2) {
      copies(t.in_compute_s, 2 * mb * grads / nd, mb * p.units);
      copies(t.at_step_end_s, 2 * weights, p.units * gather_copies(n));  // the updated chunks gathered back
    } else if (l.zero_stage == 1) {
      // The executor's packing (as on a network), then the loopback's slice
      // and gather a round.
      const double rounds = zero1_rounds(params, n);
      const Copies packing = zero1_bucket_copies(grads, weights, n, rounds);
      copies(t.at_step_end_s, packing.bytes, packing.launches);
      copies(t.at_step_end_s, 2 * grads / nd, rounds);
      copies(t.at_step_end_s, 2 * weights, rounds * gather_copies(n));
    }
  };
  data_parallel(p.dense, p.dp_span.size);
  data_parallel(p.experts, p.edp_span.size);
  if (l.tp > 1 && pr.x.sp) {
    // Sequence parallelism, a layer and micro-batch: 2 gathers and 2
    // reduce-scatters forward, 4 and 2 backward (the forward's gathers
    // redone), full recompute the forward's again (TimePrep's tp calls).
    const double rows_bytes = static_cast<double>(pr.x.s * pr.x.b * pr.x.h) * static_cast<double>(dtype_bytes(pr.x.dtype));
    const double full = l.recompute == Recompute::Full ? 1 : 0;
    const double gathers = mb * p.layers * (6 + 2 * full), scatters = mb * p.layers * (4 + 2 * full);
    copies(t.in_compute_s, gathers * 2 * rows_bytes, gathers * gather_copies(l.tp));
    copies(t.in_compute_s, scatters * 2 * rows_bytes / static_cast<double>(l.tp), scatters);
  }
  return t;
}

// An emulated pipeline stage's receives, each a memset of its buffer on the
// loopback (executor/pipeline_parallel.cc): every micro-batch, each chunk's
// input from the stage before and its output's gradient from the stage
// after (none before the first chunk of the first stage, none after the
// last chunk of the last), this rank's token rows of the residual stream;
// with tied embeddings the end stages' exchange of the table's gradient
// once a step.
double pipeline_receive_s(const PipelinePrep& p, const TimePrep& pr, const TimeInputs& in, uint32_t stage) {
  const Layout& l = in.layout;
  if (l.pp <= 1) return 0;
  const double chunks = l.schedule == Schedule::Interleaved ? l.vpp : 1;
  const bool first = stage == 0, last = stage + 1 == l.pp;
  const double receives =
      static_cast<double>(l.num_microbatches()) * (2 * chunks - (first ? 1 : 0) - (last ? 1 : 0));
  const double e = static_cast<double>(dtype_bytes(pr.x.dtype));
  const double io = static_cast<double>(pr.x.tokens_outside()) * static_cast<double>(pr.x.h) * e;
  Copies c{receives * io, receives};
  if (p.held_unit_params > 0 && (first || last)) {
    c.bytes += p.held_unit_params * e;
    c.launches += 1;
  }
  return c.seconds(in.gpu, in.network.eff);
}

}  // namespace

StepTime evaluate_time(const TimeInputs& in) {
  TimeEvaluator e;
  return e.evaluate(in);
}

const PipelinePrep& TimeEvaluator::prepared(const TimeInputs& in) {
  if (!prep_matches(prep_, in)) {
    prepare_time(prep_, in);
    pipe_.valid = false;
  }
  if (!pipe_matches(pipe_, in.layout)) prepare_pipeline(pipe_, prep_, in, dp_collectives_, dp_victim_);
  return pipe_;
}

double TimeEvaluator::lower_bound_s(const TimeInputs& in) { return prepared(in).pipeline_s; }

double TimeEvaluator::tokens_per_s(const TimeInputs& in, Reuse reuse) {
  const PipelinePrep& p = reuse == Reuse::SameShape ? pipe_ : prepared(in);
  return tokens_per_step(in.layout) / step_total_s(p, state_phases<false>(p, in, nullptr));
}

// An emulated rank's collectives are local copies and its pipeline
// neighbours' messages are dropped or zeros: no link is crossed and no stage
// waits for another (no bubble, no point-to-point time). What it runs is the
// compute of its own stage (the busiest stage's per-layer and output-layer
// times applied to its layers), the local copies of its collectives
// (local_copy_times), and the optimizer and offload phases of evaluate()
// (which do not wait on the network either), with the node's host and NVMe
// to itself.
TimeEvaluator::EmulatedRank TimeEvaluator::emulated_rank(const TimeInputs& in, uint32_t stage) {
  const PipelinePrep& p = prepared(in);
  const Layout& l = in.layout;
  const LayerCompute& lc = prep_.lc;
  const double layers = static_cast<double>(layers_on_stage(in.model.layers, l, stage));
  // Its layers without their tensor-parallel or expert traffic (local copies).
  const StageMicrobatch s = stage_microbatch(l, layers, stage + 1 == l.pp, lc.forward_s(), lc.backward_s(), lc, prep_.hc);
  EmulatedRank r;
  const LocalCopyTimes local = local_copy_times(p, prep_, in);
  r.compute_s = static_cast<double>(l.num_microbatches()) * (s.forward_s + s.backward_s) + local.in_compute_s;
  r.local_copies_in_compute_s = local.in_compute_s;
  r.local_copies_at_step_end_s = local.at_step_end_s;
  r.local_receives_s = pipeline_receive_s(p, prep_, in, stage);
  // No other rank of its node runs: its host optimizer and NVMe have the
  // node to themselves.
  NodeSpec alone = in.node;
  alone.gpus_per_node = 1;
  const TimeInputs own_host{in.model, in.layout, in.gpu, alone, in.network};
  const StatePhases phases = state_phases<false>(p, own_host, nullptr);
  r.optimizer_s = phases.optimizer_s;
  // What the executor copies to and from the host inside forward and
  // backward is measured there, so it is predicted there too.
  r.compute_s += phases.offload_in_compute_s;
  r.offload_in_compute_s = phases.offload_in_compute_s;
  r.offload_in_sync_s = phases.offload_in_sync_s;
  r.offload_s = phases.offload_s - phases.offload_in_compute_s - phases.offload_in_sync_s;
  // ZeRO-2/3's buckets are zeroed inside backward, the rest at the step's start.
  r.compute_s += phases.zeroing_in_backward_s;
  r.gradient_zeroing_s = phases.gradient_zeroing_s - phases.zeroing_in_backward_s;
  r.total_s = r.compute_s + r.local_copies_at_step_end_s + r.local_receives_s + r.offload_in_sync_s + r.optimizer_s +
              r.offload_s + r.gradient_zeroing_s;
  return r;
}

StepTime TimeEvaluator::evaluate(const TimeInputs& in) {
  const PipelinePrep& p = prepared(in);
  const TimePrep& pr = prep_;
  const ModelShape& m = in.model;
  const Layout& l = in.layout;
  StepTime t;

  const double mb = static_cast<double>(l.num_microbatches());
  const ActivationShape& x = pr.x;
  const double act_bytes = static_cast<double>(dtype_bytes(x.dtype));
  const double T = static_cast<double>(x.s * x.b), h = static_cast<double>(x.h);
  const double layers = p.layers;

  t.microbatch_forward_s = p.microbatch_forward_s;
  t.microbatch_backward_s = p.microbatch_backward_s;
  if (l.pp > 1) add_comm(t, "pp", "send/recv", p.p2p_buffer, p.p2p_calls, p.p2p_buffer * p.p2p_calls, p.p2p_per_mb_s * mb);
  const double pipeline_s = p.pipeline_s;
  const double slot = pipeline_s / (mb + p.fill);
  t.bubble_s = p.fill * slot;
  // Fill: the last stage waits for p-1 forwards; drain: the first stage
  // waits for p-1 backwards (with recompute) to come back.
  t.warmup_s = p.fill * (t.microbatch_forward_s + p.p2p_per_mb_s / 2);
  t.cooldown_s = t.bubble_s - t.warmup_s;
  t.bubble_fraction = l.pp == 1 ? 0 : p.fill / (mb + p.fill);
  t.pp_comm_s = mb * p.p2p_per_mb_s;
  t.tp_comm_s = mb * layers * (pr.tp_fwd_s + pr.tp_bwd_s + (l.recompute == Recompute::Full ? pr.tp_fwd_s : 0));
  t.ep_comm_s = mb * layers * 2 * pr.ep_layer_s;
  t.recompute_s = mb * layers * p.recompute_layer_s;
  t.compute_s = pipeline_s - t.bubble_s - t.pp_comm_s - t.tp_comm_s - t.ep_comm_s;
  if (l.tp > 1) {
    const double tp_buffer = T * h * act_bytes;
    const double calls = mb * layers * (pr.tp_calls_fwd + pr.tp_calls_bwd + (l.recompute == Recompute::Full ? pr.tp_calls_fwd : 0));
    add_comm(t, "tp", x.sp ? "all-gather/reduce-scatter" : "all-reduce", tp_buffer, calls,
             calls * (x.sp ? ring_all_gather_bytes(tp_buffer, l.tp) : ring_all_reduce_bytes(tp_buffer, l.tp)),
             t.tp_comm_s);
  }
  if (pr.ep_layer_s > 0) {
    const double a2a_buffer = T * static_cast<double>(m.top_k) * h * act_bytes;
    const double calls = mb * layers * 4;
    add_comm(t, "ep", "all-to-all", a2a_buffer, calls, calls * ring_all_gather_bytes(a2a_buffer, l.ep), t.ep_comm_s);
  }

  const StatePhases phases = state_phases<true>(p, in, &t);
  t.dp_comm_s = phases.dp_comm_s;
  t.optimizer_s = phases.optimizer_s;
  t.offload_s = phases.offload_s;
  t.gradient_zeroing_s = phases.gradient_zeroing_s;
  t.total_s = step_total_s(p, phases);

  // --- Rates ------------------------------------------------------------------
  const double global_batch = static_cast<double>(l.global_batch());
  t.tokens_per_s = tokens_per_step(l) / t.total_s;
  t.samples_per_s = global_batch / t.total_s;
  const double fwd = pr.forward_flops_per_sequence * global_batch;
  t.model_flops = 3 * fwd;
  double recompute_flops = 0;
  if (l.recompute == Recompute::Full) {
    recompute_flops = fwd - 2 * static_cast<double>(l.seq_len) * global_batch * h * static_cast<double>(m.vocab);
    recompute_flops *= recompute_fraction(l, layers);
  } else if (selective_repeats_attention_core(l)) {
    recompute_flops = 4 * global_batch * std::pow(static_cast<double>(l.seq_len), 2) *
                      static_cast<double>(m.heads * m.head_dim) * static_cast<double>(m.layers);
  }
  t.hardware_flops = t.model_flops + recompute_flops;
  const double world = static_cast<double>(l.world());
  const double peak = peak_flops(in.gpu, l.precision);
  t.tflops_per_gpu = t.model_flops / t.total_s / world / 1e12;
  t.mfu = t.model_flops / (t.total_s * world * peak);
  t.hfu = t.hardware_flops / (t.total_s * world * peak);
  return t;
}

}  // namespace zp
