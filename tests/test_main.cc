// The test suites' main: doctest's, with Buffer::allocate's poison on
// (executor/tagged_buffer.h), so a kernel or model that reads an element
// nothing wrote fails its test with a NaN instead of passing on a zero.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "executor/poison.h"

int main(int argc, char** argv) {
  zp::poison_unwritten() = true;
  return doctest::Context(argc, argv).run();
}
