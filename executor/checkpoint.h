// Checkpoints of a training run: parameters, optimizer moments and the step,
// one file per rank (sharded: each rank writes what it holds). A file is
// written to a temporary name and renamed, so a crash never leaves a half
// checkpoint; loading checks a header (magic, version, sizes) and throws
// InputError naming the file on any mismatch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace zp {

struct CheckpointState {
  uint64_t step = 0;
  std::vector<float> params, m, v;
};

void save_checkpoint(const std::string& path, const CheckpointState& s);
CheckpointState load_checkpoint(const std::string& path);

}  // namespace zp
