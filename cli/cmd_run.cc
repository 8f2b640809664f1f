// `zeroplan run --plan plan.json`: runs a plan's layout as real training steps
// on the CPU executor (single process, under mpirun for data parallelism, or
// one emulated rank of a larger data-parallel group with --emulate-rank) and
// writes the measurements beside the plan. What the CPU executor runs so
// far: GPT-2 and Llama-style models, fp32, data parallelism with ZeRO 0-2,
// no recompute (or full recompute for GPT-2 style); other plans
// are refused with a one-line reason on rank 0 and a non-zero exit on every
// rank.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "executor/data.h"
#include "executor/data_parallel.h"
#include "executor/llama_model.h"
#include "executor/loopback_communicator.h"
#include "executor/mpi_communicator.h"
#include "models/input_error.h"
#include "models/json_file.h"
#include "models/model_json.h"
#include "costmodel/model_states.h"
#include "models/param_count.h"

namespace zp {
namespace {

struct RunPlan {
  ModelSpec model;
  uint32_t dp = 1, tp = 1, pp = 1, micro_batch = 1, grad_accum = 1, seq_len = 0;
  int zero = 0;
  std::string precision, recompute;
};

RunPlan read_plan(const std::string& path) {
  const Json j = parse_json_file(path);
  JsonFields top(j, path);
  top.reject_unknown({"schema", "version", "model", "cluster", "layout", "predicted"});
  if (top.string("schema") != "zeroplan.plan") throw InputError(path + ": field 'schema': expected \"zeroplan.plan\"");
  if (top.positive("version") != 1) throw InputError(path + ": field 'version': expected 1");
  RunPlan p;
  if (!j.contains("model")) throw InputError(path + ": field 'model': missing");
  p.model = model_from_json(j.at("model"), path + " (model)");
  if (!j.contains("layout")) throw InputError(path + ": field 'layout': missing");
  JsonFields l(j.at("layout"), path + " (layout)");
  p.dp = static_cast<uint32_t>(l.positive("dp"));
  p.tp = static_cast<uint32_t>(l.positive("tp"));
  p.pp = static_cast<uint32_t>(l.positive("pp"));
  p.micro_batch = static_cast<uint32_t>(l.positive("micro_batch"));
  p.grad_accum = static_cast<uint32_t>(l.positive("grad_accum"));
  p.seq_len = static_cast<uint32_t>(l.positive("seq_len"));
  p.zero = static_cast<int>(l.has("zero_stage") ? j.at("layout").at("zero_stage").get<int>() : 0);
  p.precision = l.string_or("precision", "bf16");
  p.recompute = l.string_or("recompute", "none");
  if (p.recompute == "selective") {
    throw InputError(path + ": layout recompute selective: the CPU executor recomputes whole layers (none or full) so far");
  }
  if (p.tp != 1 || p.pp != 1) {
    throw InputError(path + ": layout tp " + std::to_string(p.tp) + " pp " + std::to_string(p.pp) +
                     ": the CPU executor runs data parallelism only so far (tp = pp = 1)");
  }
  if (p.zero > 2) throw InputError(path + ": layout zero_stage 3: not built in the executor yet (0-2)");
  if (p.precision != "fp32") {
    throw InputError(path + ": layout precision " + p.precision + ": the CPU executor runs fp32 so far (emit with --precision fp32)");
  }
  if (p.seq_len > p.model.max_seq_len) throw InputError(path + ": layout seq_len exceeds the model's positions");
  if (p.model.mlp == MlpKind::SwiGlu && p.recompute == "full") {
    throw InputError(path + ": layout recompute full: not built for Llama-style models yet");
  }
  return p;
}

void write_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw InputError(tmp + ": cannot write");
    out << content;
    if (!out.flush()) throw InputError(tmp + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw InputError(path + ": cannot rename into place: " + ec.message());
}

// Trains `model` on this rank's slice of each batch and writes the
// measurements (the leader only).
template <class Model>
int train(Model& model, const RunPlan& p, Communicator& comm, bool leader, const std::string& plan_path, int steps,
          const std::string& text, std::string out_path) {
  AdamConfig adam;
  adam.lr = 3e-3f;
  DataParallelTrainer<Model> trainer(model, comm, p.zero, adam);
  const int local = static_cast<int>(p.micro_batch * p.grad_accum), T = static_cast<int>(p.seq_len);
  std::unique_ptr<ByteCorpus> bytes;
  if (!text.empty()) {
    if (p.model.vocab_size < 256) throw InputError("--text: byte-level data needs a vocabulary of at least 256");
    bytes = std::make_unique<ByteCorpus>(text);
  }
  const SyntheticCorpus synthetic(static_cast<int>(p.model.vocab_size), 42);
  Json step_rows = Json::array();
  for (int s = 0; s < steps; ++s) {
    const int first_row = comm.rank() * local;
    const Batch b = bytes ? bytes->batch(static_cast<uint64_t>(s), first_row, local, T)
                          : synthetic.batch(static_cast<uint64_t>(s), first_row, local, T);
    const auto start = std::chrono::steady_clock::now();
    const float loss = trainer.step(b.tokens.data(), b.targets.data(), local, T);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& ph = trainer.last_phases();
    step_rows.push_back({{"step", s}, {"loss", loss}, {"seconds", seconds},
                         {"phases_s", {{"forward", ph.forward_s}, {"backward", ph.backward_s},
                                       {"gradient_sync", ph.gradient_sync_s}, {"optimizer", ph.optimizer_s},
                                       {"parameter_gather", ph.parameter_gather_s}}}});
    if (leader) std::cout << "step " << s << "  loss " << loss << "  " << seconds * 1e3 << " ms\n";
  }
  if (leader) {
    const uint64_t params = count_params(p.model).total;
    // The cost model's zeroplan accounting of this rank's model states for
    // the plan's layout, beside what the executor holds.
    Layout l;
    l.dp = p.dp;
    l.zero_stage = static_cast<uint8_t>(p.zero);
    l.precision = Precision::Fp32;
    TotalsSink predicted;
    emit_model_states(l, params, p.dp, "parameters", predicted);
    const uint64_t held_weights = model.params.size() * 4, held_grads = model.grads.size() * 4,
                   held_optimizer = trainer.optimizer_state_elements() * 4;
    const uint64_t want_weights = predicted.totals().at(Residence::Gpu, Component::Weights);
    const uint64_t want_grads = predicted.totals().at(Residence::Gpu, Component::Gradients);
    const uint64_t want_optimizer = predicted.totals().at(Residence::Gpu, Component::OptimizerStates);
    Json out = {{"schema", "zeroplan.measured"},
                {"version", 1},
                {"plan", plan_path},
                {"backend", "cpu"},
                {"communicator", comm.name()},
                {"emulated", comm.emulated()},
                {"world", comm.size()},
                {"rank", comm.rank()},
                {"precision", "fp32"},
                {"recompute", p.recompute},
                {"activation_bytes", model.activation_elements() * 4},
                {"parameters", params},
                {"model_state_bytes", {{"weights", held_weights},
                                       {"gradients", held_grads},
                                       {"optimizer_states", held_optimizer}}},
                {"predicted_model_state_bytes", {{"weights", want_weights},
                                                 {"gradients", want_grads},
                                                 {"optimizer_states", want_optimizer}}},
                {"model_states_match", held_weights == want_weights && held_grads == want_grads &&
                                           held_optimizer == want_optimizer},
                {"steps", step_rows}};
    if (out_path.empty()) out_path = plan_path + ".measured.json";
    write_atomically(out_path, out.dump(2) + "\n");
    std::cout << "wrote " << out_path << "\n";
  }
  return 0;
}

int run(const std::string& plan_path, int steps, int emulate_rank, const std::string& text, std::string out_path) {
  // Under mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE) the group is MPI_COMM_WORLD.
  const bool under_mpi = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Communicator> comm;
  int error = 0;
  std::string message;
  RunPlan p;
  try {
    p = read_plan(plan_path);
  } catch (const InputError& e) {
    error = 1;
    message = e.what();
  }
  if (under_mpi) {
    session = std::make_unique<MpiSession>(nullptr, nullptr);
    comm = std::make_unique<MpiCommunicator>();
  }
  const int world = comm ? comm->size() : 1;
  if (!error) {
    if (emulate_rank >= 0) {
      if (under_mpi) {
        error = 1;
        message = "--emulate-rank: runs in one process, not under mpirun";
      } else if (emulate_rank >= static_cast<int>(p.dp)) {
        error = 1;
        message = "--emulate-rank " + std::to_string(emulate_rank) + ": expected a rank below dp " + std::to_string(p.dp);
      } else {
        comm = std::make_unique<LoopbackCommunicator>(emulate_rank, static_cast<int>(p.dp));
      }
    } else if (static_cast<uint32_t>(world) != p.dp) {
      error = 1;
      message = plan_path + ": layout dp " + std::to_string(p.dp) + " needs " + std::to_string(p.dp) +
                " processes; this run has " + std::to_string(world) + " (use mpirun -np " + std::to_string(p.dp) +
                " or --emulate-rank)";
    }
  }
  if (!comm) comm = std::make_unique<LoopbackCommunicator>(0, 1);
  // Every rank agrees on failure, so none waits for another in a collective.
  float flag = static_cast<float>(error);
  if (under_mpi) comm->all_reduce_sum(&flag, 1);
  if (flag > 0) {
    if (comm->rank() == 0) std::cerr << "zeroplan: " << (message.empty() ? "another rank rejected the plan" : message) << "\n";
    return 2;
  }
  // The process that reports: rank 0, or the one process of an emulated run.
  const bool leader = comm->rank() == 0 || comm->emulated();
  if (p.model.mlp == MlpKind::SwiGlu) {
    LlamaModel<float> model(llama_config(p.model), 1234);
    return train(model, p, *comm, leader, plan_path, steps, text, out_path);
  }
  GptModel<float> model(gpt_config(p.model), 1234);
  model.set_recompute(p.recompute == "full");
  return train(model, p, *comm, leader, plan_path, steps, text, out_path);
}

}  // namespace

void add_run_command(CLI::App& app, const GlobalOptions& global) {
  (void)global;
  static std::string plan_path, text, out_path;
  static int steps = 10, emulate_rank = -1;
  auto* cmd = app.add_subcommand("run", "Train a plan's layout on the CPU executor and measure it");
  cmd->footer(
      "Example: zeroplan emit --format zeroplan --model M.json --gpu H100-80GB --gpus 2 --precision fp32 --out run/\n"
      "         mpirun -np 2 zeroplan run --plan run/plan.json --steps 20");
  cmd->add_option("--plan", plan_path, "A plan file from `zeroplan emit --format zeroplan`")->required();
  cmd->add_option("--steps", steps, "Training steps")->check(CLI::Range(1, 1000000));
  cmd->add_option("--emulate-rank", emulate_rank, "Run as this rank of the plan's data-parallel group, in one process")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--text", text, "Train on this file's bytes instead of the synthetic corpus")->check(CLI::ExistingFile);
  cmd->add_option("--out", out_path, "Where to write the measurements (default: <plan>.measured.json)");
  cmd->callback([]() {
    const int code = run(plan_path, steps, emulate_rank, text, out_path);
    if (code != 0) std::exit(code);
  });
}

}  // namespace zp
