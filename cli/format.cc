#include "cli/format.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ostream>

namespace zp {

std::string with_commas(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  int count = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (count > 0 && count % 3 == 0) out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++count;
  }
  return out;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string gib(uint64_t bytes, int decimals) {
  return fixed(static_cast<double>(bytes) / 1073741824.0, decimals) + " GiB";
}

std::string percent(double fraction, int decimals) { return fixed(fraction * 100.0, decimals) + "%"; }

TextTable::TextTable(std::vector<std::string> header) {
  rows_.push_back(std::move(header));
  rule_before_.push_back(false);
  rule_before_.push_back(true);  // under the header
}

void TextTable::add(std::vector<std::string> row) {
  rows_.push_back(std::move(row));
  if (rule_before_.size() < rows_.size() + 1) rule_before_.push_back(false);
}

void TextTable::rule() {
  if (rule_before_.size() == rows_.size() + 1) rule_before_.back() = true;
}

void TextTable::print(std::ostream& out) const {
  std::vector<size_t> width;
  for (const auto& r : rows_) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  auto is_numeric = [](const std::string& s) {
    return !s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-' || s[0] == '+');
  };
  for (size_t r = 0; r < rows_.size(); ++r) {
    if (r > 0 && rule_before_[r]) out << std::string(total > 2 ? total - 2 : total, '-') << "\n";
    const auto& row = rows_[r];
    for (size_t i = 0; i < row.size(); ++i) {
      const std::string& cell = row[i];
      std::string pad(width[i] - cell.size(), ' ');
      bool right = r > 0 && i > 0 && is_numeric(cell);
      out << (right ? pad + cell : cell + (i + 1 < row.size() ? pad : ""));
      if (i + 1 < row.size()) out << "  ";
    }
    out << "\n";
  }
}

}  // namespace zp
