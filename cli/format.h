// Text formatting for the command line: aligned tables, thousands separators,
// byte counts labelled in GiB (2^30) or GB (1e9), never mixed in one column.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace zp {

std::string with_commas(uint64_t n);
std::string gib(uint64_t bytes, int decimals = 2);   // "12.34 GiB"
std::string fixed(double v, int decimals);
std::string percent(double fraction, int decimals = 1);

// A table printed with columns padded to their widest cell; numbers right-aligned.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);
  void add(std::vector<std::string> row);
  void rule();  // a separator line before the next row
  void print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::vector<bool> rule_before_;
};

}  // namespace zp
