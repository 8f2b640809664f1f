// Checkpoints of a training run: parameters (and fp32 master weights),
// optimizer moments and the step,
// one file per rank (sharded: each rank writes what it holds). A file is
// written to a temporary name and renamed, so a crash never leaves a half
// checkpoint; loading checks a header (magic, version, sizes) and throws
// InputError naming the file on any mismatch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace zp {

// params: the weights the rank holds (bf16 ones widened exactly to fp32);
// master: the fp32 master weights of mixed precision (empty in fp32 runs);
// m, v: Adam's moments.
struct CheckpointState {
  uint64_t step = 0;
  std::vector<float> params, master, m, v;
};

// What restore() says of a state whose sizes are another model's or layout's.
inline constexpr const char* kCheckpointMismatch = "checkpoint does not match this model and layout (sizes or precision differ)";

void save_checkpoint(const std::string& path, const CheckpointState& s);
CheckpointState load_checkpoint(const std::string& path);

}  // namespace zp
