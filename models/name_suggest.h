// "Did you mean": the catalog names closest to a mistyped one (edit distance,
// case-insensitive), for one-line error messages.
#pragma once

#include <string>
#include <vector>

namespace zp {

// Up to `limit` candidates, closest first, joined as "a, b or c"; "" if none is close.
std::string closest_names(const std::string& wanted, const std::vector<std::string>& candidates,
                          size_t limit = 3);

std::string to_lower(std::string s);

}  // namespace zp
