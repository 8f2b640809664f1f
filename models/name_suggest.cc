#include "models/name_suggest.h"

#include <algorithm>
#include <cctype>

namespace zp {

std::string to_lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string closest_names(const std::string& wanted, const std::vector<std::string>& candidates,
                          size_t limit) {
  const std::string w = to_lower(wanted);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& c : candidates) {
    const std::string lc = to_lower(c);
    size_t d = edit_distance(w, lc);
    // A prefix or substring match is as good as a near-miss spelling.
    if (!w.empty() && lc.find(w) != std::string::npos) d = std::min<size_t>(d, 1);
    if (d <= std::max<size_t>(3, w.size() / 2)) scored.emplace_back(d, c);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::string out;
  for (size_t i = 0; i < scored.size() && i < limit; ++i) {
    if (i > 0) out += (i + 1 == std::min(limit, scored.size())) ? " or " : ", ";
    out += scored[i].second;
  }
  return out;
}

}  // namespace zp
