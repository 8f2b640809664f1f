// Launch configurations for a chosen layout, in the formats users run:
//  - deepspeed: ds_config.json (keys as documented at deepspeed.ai/docs/config-json
//    and defined in deepspeed/runtime/zero/config.py and offload_config.py),
//    a hostfile, and the `deepspeed` launcher command; train_batch_size =
//    micro-batch x accumulation x dp always holds.
//  - megatron: the pretrain_gpt.py arguments (megatron/training/arguments.py)
//    under torchrun.
//  - torchrun: the launcher command alone, for a user's own script.
//  - zeroplan: the plan file the executor runs (schema zeroplan.plan v1): the
//    model, the cluster, every layout field and the predictions.
// Each format is a list of named files; nothing here writes to disk.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "costmodel/cluster.h"
#include "costmodel/layout.h"
#include "costmodel/memory_model.h"
#include "costmodel/time_model.h"
#include "models/model_spec.h"

namespace zp {

struct EmitInput {
  const ModelSpec& model;
  const Cluster& cluster;
  const Layout& layout;
  const MemoryResult& memory;
  const StepTime& time;
};

struct EmittedFile {
  std::string name;
  std::string content;
};

// format: deepspeed, megatron, torchrun or zeroplan. Throws InputError otherwise.
std::vector<EmittedFile> emit_config(const std::string& format, const EmitInput& in);

// The keys DeepSpeed's documentation lists for the sections zeroplan writes
// (used by tests to check every emitted key).
const std::vector<std::string>& deepspeed_known_keys();
// The Megatron-LM flags zeroplan may write (tests check every emitted one).
const std::vector<std::string>& megatron_known_args();

}  // namespace zp
