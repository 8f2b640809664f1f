#include "planner/planner.h"

#include <algorithm>
#include <chrono>

#include "costmodel/compute.h"
#include "costmodel/layout_check.h"

namespace zp {

uint64_t Candidate::headroom_bytes() const {
  return capacity_bytes > memory.gpu_bytes ? capacity_bytes - memory.gpu_bytes : 0;
}

namespace {

// Lower is simpler: offload first, then ZeRO stage, pipeline depth, recompute,
// then the smaller global batch (when it is free) and no tiling.
uint64_t complexity(const Layout& l) {
  return 10000000ull * (static_cast<uint64_t>(l.offload_optimizer) + static_cast<uint64_t>(l.offload_param)) +
         1000000ull * l.zero_stage + 100000ull * (l.pp > 1) + 10000ull * static_cast<uint64_t>(l.recompute) +
         1000ull * (l.vpp > 1) + 100ull * (l.tile_factor > 1) + 10ull * l.checkpoints_to_cpu +
         std::min<uint64_t>(l.grad_accum, 9);
}

bool ranks_before(const Layout& a, double ta, const Layout& b, double tb) {
  if (std::max(ta, tb) > 0 && std::abs(ta - tb) > 1e-3 * std::max(ta, tb)) return ta > tb;
  return complexity(a) < complexity(b);
}

// What the search keeps of a layout that entered the answer. Candidates are
// large (the memory breakdown, the step's phases and communication table):
// they are built once, at the end, for the layouts that are still in it.
struct Entry {
  Layout layout;
  double tokens_per_s;
  uint64_t headroom_bytes;
};

bool ranks_before(const Entry& a, const Entry& b) { return ranks_before(a.layout, a.tokens_per_s, b.layout, b.tokens_per_s); }

void insert_top(std::vector<Entry>& top, size_t k, const Entry& e) {
  if (top.size() == k && !ranks_before(e, top.back())) return;
  top.insert(std::upper_bound(top.begin(), top.end(), e, [](const Entry& a, const Entry& b) { return ranks_before(a, b); }),
             e);
  if (top.size() > k) top.pop_back();
}

// The front, sorted by headroom: with no member dominating another,
// throughput then falls strictly as headroom rises, so the dominance test
// the search runs for every bounded layout is a binary search.
std::vector<Entry>::const_iterator first_with_headroom(const std::vector<Entry>& front, uint64_t headroom) {
  return std::lower_bound(front.begin(), front.end(), headroom,
                          [](const Entry& f, uint64_t h) { return f.headroom_bytes < h; });
}

// True when a member of the front has at least this headroom and throughput:
// of the members with enough headroom, the first is the fastest.
bool dominated(const std::vector<Entry>& front, uint64_t headroom, double tokens_per_s) {
  const auto at = first_with_headroom(front, headroom);
  return at != front.end() && at->tokens_per_s >= tokens_per_s;
}

// dominated(front, h, t) for one t as a headroom limit: a layout with no
// more headroom than this is dominated (-1: none is). The members at least
// as fast as t are a prefix of the front; the last of them has the most
// headroom.
int64_t dominance_limit(const std::vector<Entry>& front, double tokens_per_s) {
  const auto end = std::partition_point(front.begin(), front.end(),
                                        [tokens_per_s](const Entry& f) { return f.tokens_per_s >= tokens_per_s; });
  return end == front.begin() ? -1 : static_cast<int64_t>(std::prev(end)->headroom_bytes);
}

// Keeps the layouts no other beats on both headroom and throughput, in
// headroom order.
void insert_pareto(std::vector<Entry>& front, const Entry& e) {
  if (dominated(front, e.headroom_bytes, e.tokens_per_s)) return;
  // The members e dominates are contiguous: those with no more headroom
  // (up to one with equal headroom) whose throughput is no higher.
  auto last = first_with_headroom(front, e.headroom_bytes);
  if (last != front.end() && last->headroom_bytes == e.headroom_bytes) ++last;
  auto first = last;
  while (first != front.begin() && std::prev(first)->tokens_per_s <= e.tokens_per_s) --first;
  front.insert(front.erase(first, last), e);
}

}  // namespace

PlanQuery make_plan_query(const ModelSpec& model, const Cluster& cluster, const std::string& data_dir) {
  PlanQuery q;
  q.model = make_shape(model);
  q.cluster = cluster;
  q.cluster_shape = make_cluster_shape(cluster);
  q.network = make_network(cluster, data_dir);
  q.space.num_gpus = cluster.num_gpus;
  q.space.gpus_per_node = cluster.node.gpus_per_node;
  q.space.seq_len = static_cast<uint32_t>(std::min<uint64_t>(2048, model.max_seq_len));
  q.space.precision = q.cluster_shape.has_bf16 ? Precision::Bf16 : Precision::Fp16;
  q.space.attentions = default_attentions(q.model, q.space.framework, q.space.precision, q.cluster_shape.has_bf16);
  return q;
}

std::vector<Attention> default_attentions(const ModelShape& m, Framework framework, Precision precision, bool has_bf16) {
  if (framework == Framework::Zeroplan) {
    if (zeroplan_flash_on_tensor_cores(m.head_dim, precision)) return {Attention::Flash};
    return {Attention::Flash, Attention::Materialized};
  }
  if (has_bf16) return {Attention::Flash};
  return {Attention::Materialized};
}

bool ranks_before(const Candidate& a, const Candidate& b) {
  return ranks_before(a.layout, a.time.tokens_per_s, b.layout, b.time.tokens_per_s);
}

PlanResult plan(const PlanQuery& q) {
  const auto start = std::chrono::steady_clock::now();
  PlanResult r;
  MemoryEvaluator memory;
  TimeEvaluator timer;
  // Options depend on the framework only (bucket defaults), resolved once per ZeRO stage.
  std::array<MemoryOptions, 4> options;
  for (uint8_t z = 0; z <= 3; ++z) {
    Layout l;
    l.framework = q.space.framework;
    l.zero_stage = z;
    options[z] = resolve_options(q.options, l);
  }
  uint64_t last_progress = 0;
  std::vector<Entry> top, front;
  top.reserve(q.top_k + 1);
  Layout nearest_miss;
  // What depends on the shape only (not on ZeRO stage or offload), once per shape.
  uint64_t shape_seen = 0;
  bool shape_ok = false;
  double shape_best_tokens_per_s = 0;
  // The bound's dominance test at the shape's best throughput, as a headroom
  // limit; recomputed when the shape or the front changes.
  int64_t shape_limit = -1;
  bool shape_limit_known = false;
  // The memory model's shape part also depends on where checkpoints live,
  // which the tiled variants of a shape change.
  uint64_t fit_shape = 0;
  bool fit_checkpoints_to_cpu = false;
  const uint64_t capacity = q.cluster_shape.gpu_memory_bytes;
  // Every visited layout's state half is valid (state_choices); its shape
  // half is checked once per shape.
  for_each_layout(q.model, q.space, [&](const Layout& l, uint64_t shape_id) {
    ++r.enumerated;
    if (q.progress && r.enumerated - last_progress >= 65536) {
      last_progress = r.enumerated;
      q.progress(-1);  // the caller only learns that work goes on
    }
    const TimeInputs time_in{q.model, l, q.cluster.gpu, q.cluster.node, q.network};
    if (shape_id != shape_seen) {
      shape_seen = shape_id;
      shape_ok = check_layout_shape(q.model, l, q.cluster_shape, q.space.num_gpus).empty();
      // Exact: lower_bound_s never exceeds a step time of this shape.
      if (shape_ok) shape_best_tokens_per_s = static_cast<double>(l.global_batch()) * l.seq_len / timer.lower_bound_s(time_in);
      shape_limit_known = false;
    }
    if (!shape_ok) return;
    ++r.valid;
    const MemoryInputs mem_in{q.model, l, q.cluster_shape, options[l.zero_stage]};
    const bool same_shape = shape_id == fit_shape && l.checkpoints_to_cpu == fit_checkpoints_to_cpu;
    fit_shape = shape_id;
    fit_checkpoints_to_cpu = l.checkpoints_to_cpu;
    const MemoryFit fit = memory.evaluate_fit(mem_in, same_shape ? Reuse::SameShape : Reuse::Check);
    if (!fit.fits()) {
      const uint64_t short_by = fit.gpu_bytes > capacity ? fit.gpu_bytes - capacity : 0;
      if (r.fitting == 0 && (!r.has_nearest_miss || short_by < r.nearest_short_bytes)) {
        r.has_nearest_miss = true;
        nearest_miss = l;
        r.nearest_short_bytes = short_by;
      }
      return;
    }
    ++r.fitting;
    // Bound first: a layout whose pipeline alone is too slow for the answer,
    // and which the front already beats on headroom, cannot enter either.
    const uint64_t headroom = capacity > fit.gpu_bytes ? capacity - fit.gpu_bytes : 0;
    if (!q.exhaustive && top.size() == q.top_k && shape_best_tokens_per_s < top.back().tokens_per_s * (1 - 2e-3)) {
      if (!shape_limit_known) {
        shape_limit = dominance_limit(front, shape_best_tokens_per_s);
        shape_limit_known = true;
      }
      if (static_cast<int64_t>(headroom) <= shape_limit) {
        ++r.bounded;
        return;
      }
    }
    // Ranked by throughput alone (evaluate's tokens/s, bit for bit);
    // lower_bound_s prepared this shape's pipeline when the shape began.
    const double tokens_per_s = timer.tokens_per_s(time_in, Reuse::SameShape);
    ++r.timed;
    const bool enters_top = top.size() < q.top_k || ranks_before(l, tokens_per_s, top.back().layout, top.back().tokens_per_s);
    if (!enters_top && dominated(front, headroom, tokens_per_s)) return;
    const Entry e{l, tokens_per_s, headroom};
    if (enters_top) insert_top(top, q.top_k, e);
    insert_pareto(front, e);
    shape_limit_known = false;
  });
  // The full candidates of what remains, evaluated afresh (the evaluators
  // give the same numbers as the search's fast paths: tests hold them equal).
  auto candidate = [&](const Layout& l) {
    Candidate c;
    c.layout = l;
    c.capacity_bytes = capacity;
    c.memory = memory.evaluate({q.model, l, q.cluster_shape, options[l.zero_stage]});
    c.time = timer.evaluate({q.model, l, q.cluster.gpu, q.cluster.node, q.network});
    return c;
  };
  for (const Entry& e : top) r.top.push_back(candidate(e.layout));
  for (const Entry& e : front) r.pareto.push_back(candidate(e.layout));
  if (r.fitting > 0) r.has_nearest_miss = false;
  if (r.has_nearest_miss) r.nearest_miss = candidate(nearest_miss);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::string why_not(const PlanQuery& q, const Layout& l) {
  const std::string invalid = check_layout(q.model, l, q.cluster_shape, q.space.num_gpus);
  if (!invalid.empty()) return "invalid: " + invalid;
  if (q.space.global_batch > 0 && l.global_batch() != q.space.global_batch) {
    return "the global batch dp x micro-batch x accumulation = " + std::to_string(l.global_batch()) +
           " does not match --global-batch " + std::to_string(q.space.global_batch);
  }
  const MemoryOptions o = resolve_options(q.options, l);
  const MemoryResult m = evaluate_memory({q.model, l, q.cluster_shape, o});
  if (!m.fits_gpu) {
    return "does not fit: short by " + std::to_string(m.gpu_bytes - q.cluster_shape.gpu_memory_bytes) +
           " bytes per GPU (pipeline stage " + std::to_string(m.stage) + ")";
  }
  if (!m.fits_host) return "does not fit: host memory per node " + std::to_string(m.host_bytes_per_node) + " bytes exceeds the node's";
  if (!m.fits_nvme) return "does not fit: NVMe per node " + std::to_string(m.nvme_bytes_per_node) + " bytes exceeds the node's";
  const PlanResult r = plan(q);
  Candidate c;
  c.layout = l;
  c.memory = m;
  c.capacity_bytes = q.cluster_shape.gpu_memory_bytes;
  c.time = evaluate_time({q.model, l, q.cluster.gpu, q.cluster.node, q.network});
  size_t rank = 1;
  for (const Candidate& t : r.top) rank += ranks_before(t, c) ? 1 : 0;
  if (rank <= r.top.size()) return "fits and ranks #" + std::to_string(rank) + " of the search";
  return "fits, but " + std::to_string(r.top.size()) + " layouts are predicted faster (best " +
         std::to_string(static_cast<uint64_t>(r.top.front().time.tokens_per_s)) + " tokens/s vs " +
         std::to_string(static_cast<uint64_t>(c.time.tokens_per_s)) + ")";
}

}  // namespace zp
