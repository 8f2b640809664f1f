#include "executor/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "models/input_error.h"

namespace zp {
namespace {

constexpr uint64_t kMagic = 0x7a65726f706c616eull;  // "zeroplan"
constexpr uint64_t kVersion = 2;  // 2: the master weights after the parameters

void write_vector(std::ofstream& out, const std::vector<float>& v) {
  const uint64_t n = v.size();
  out.write(reinterpret_cast<const char*>(&n), sizeof n);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
}

std::vector<float> read_vector(std::ifstream& in, const std::string& path, uint64_t limit) {
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), sizeof n);
  if (!in || n > limit) throw InputError(path + ": corrupt checkpoint (array size)");
  std::vector<float> v(n);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
  if (!in) throw InputError(path + ": truncated checkpoint");
  return v;
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointState& s) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(tmp + ": cannot write the checkpoint");
    out.write(reinterpret_cast<const char*>(&kMagic), sizeof kMagic);
    out.write(reinterpret_cast<const char*>(&kVersion), sizeof kVersion);
    out.write(reinterpret_cast<const char*>(&s.step), sizeof s.step);
    write_vector(out, s.params);
    write_vector(out, s.master);
    write_vector(out, s.m);
    write_vector(out, s.v);
    if (!out.flush()) throw InputError(tmp + ": writing the checkpoint failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw InputError(path + ": cannot rename the checkpoint into place: " + ec.message());
}

CheckpointState load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open the checkpoint");
  uint64_t magic = 0, version = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  in.read(reinterpret_cast<char*>(&version), sizeof version);
  if (!in || magic != kMagic) throw InputError(path + ": not a zeroplan checkpoint");
  if (version != kVersion) throw InputError(path + ": checkpoint version " + std::to_string(version) + ", expected " + std::to_string(kVersion));
  CheckpointState s;
  in.read(reinterpret_cast<char*>(&s.step), sizeof s.step);
  const uint64_t size = std::filesystem::file_size(path);
  s.params = read_vector(in, path, size / sizeof(float));
  s.master = read_vector(in, path, size / sizeof(float));
  s.m = read_vector(in, path, size / sizeof(float));
  s.v = read_vector(in, path, size / sizeof(float));
  return s;
}

}  // namespace zp
