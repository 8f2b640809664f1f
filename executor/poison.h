// The switch for Buffer::allocate's poison (executor/tagged_buffer.h), in a
// header of its own so a test's main can turn it on without the executor's
// dependencies.
#pragma once

#include <cstdlib>

namespace zp {

// Whether Buffer::allocate poisons what it hands out (every byte 0xff: NaN
// in fp32, bf16 and fp64, -1 in an index), so a kernel that reads an element
// before anything wrote it makes the result NaN or fails its bounds, instead
// of reading a zero it was never promised. Off by default (poisoning costs
// the write that allocate saves); the test suites turn it on
// (tests/test_main.cc), and so does ZP_POISON_UNWRITTEN=1 for any program.
inline bool& poison_unwritten() {
  static bool on = [] {
    const char* v = std::getenv("ZP_POISON_UNWRITTEN");
    return v != nullptr && v[0] == '1';
  }();
  return on;
}

}  // namespace zp
