// Host memory that counts what it is asked to do: its copies (each would be
// a launch on a GPU) and the bytes it zeroes.
#pragma once

#include <cstdint>
#include <string>

#include "executor/device.h"

namespace zp::test {

class CountingDevice final : public Device {
 public:
  std::string name() const override { return "counting host"; }
  void* allocate(uint64_t bytes) override { return host_device().allocate(bytes); }
  void release(void* p) override { host_device().release(p); }
  void zero(void* p, uint64_t bytes) override {
    zeroed_bytes += bytes;
    host_device().zero(p, bytes);
  }
  void fill_bytes(void* p, unsigned char byte, uint64_t bytes) override { host_device().fill_bytes(p, byte, bytes); }
  void copy(void* dst, const void* src, uint64_t bytes) override {
    ++copies;
    host_device().copy(dst, src, bytes);
  }
  int copies = 0;
  uint64_t zeroed_bytes = 0;
};

}  // namespace zp::test
