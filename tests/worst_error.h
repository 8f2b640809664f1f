// The running worst of a test's errors. std::max(worst, NaN) keeps worst
// (NaN compares false), so an unwritten or poisoned element (NaN) would
// leave a "worst error" of zero and the check pass; here a NaN stays NaN and
// fails every `worst < tolerance`.
#pragma once

#include <algorithm>
#include <cmath>

namespace zp::test {

inline double worse(double worst, double err) { return std::isnan(worst) || std::isnan(err) ? NAN : std::max(worst, err); }

}  // namespace zp::test
