// InputError: the one exception type for a user's mistake (a bad flag, catalog
// file, config.json or layout). Its message is a single line that names the
// file, field or flag and says what was expected. The command line catches it
// at the boundary and exits with code 2; nothing below the boundary prints.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace zp {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

// Checked 64-bit arithmetic for byte and parameter counts: a result that would
// not fit in uint64 is a user's mistake (absurd sizes), reported with `what`.
uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what);
uint64_t checked_add(uint64_t a, uint64_t b, const std::string& what);

}  // namespace zp
