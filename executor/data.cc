#include "executor/data.h"

#include <fstream>
#include <iterator>
#include <random>

#include "models/input_error.h"

namespace zp {

Batch SyntheticCorpus::batch(uint64_t step, int first_row, int B, int Tn) const {
  Batch b;
  b.tokens.resize(static_cast<size_t>(B) * Tn);
  b.targets.resize(b.tokens.size());
  for (int r = 0; r < B; ++r) {
    // Four rules x_{t+1} = (a x_t + c) mod V fixed by the corpus seed; each
    // row follows one of them from a random start, and one token in ten is
    // replaced by noise. The model can learn the rules, and tell them apart
    // from context.
    std::mt19937_64 rules(seed_);
    std::mt19937_64 rng(seed_ ^ (step * 1000003ull + static_cast<uint64_t>(first_row + r) * 7919ull));
    const uint64_t which = rng() % 4;
    int a = 1, c = 0;
    for (uint64_t k = 0; k <= which; ++k) {
      a = 1 + static_cast<int>(rules() % 3);
      c = 1 + static_cast<int>(rules() % (vocab_ - 1));
    }
    int x = static_cast<int>(rng() % vocab_);
    std::vector<int> seq(static_cast<size_t>(Tn) + 1);
    for (int t = 0; t <= Tn; ++t) {
      seq[t] = (rng() % 10 == 0) ? static_cast<int>(rng() % vocab_) : x;
      x = (a * x + c) % vocab_;
    }
    for (int t = 0; t < Tn; ++t) {
      b.tokens[static_cast<size_t>(r) * Tn + t] = seq[t];
      b.targets[static_cast<size_t>(r) * Tn + t] = seq[t + 1];
    }
  }
  return b;
}

ByteCorpus::ByteCorpus(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open the text file");
  bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (bytes_.size() < 2) throw InputError(path + ": expected at least 2 bytes of text");
}

Batch ByteCorpus::batch(uint64_t step, int first_row, int B, int Tn) const {
  Batch b;
  b.tokens.resize(static_cast<size_t>(B) * Tn);
  b.targets.resize(b.tokens.size());
  const size_t span = bytes_.size() - 1;
  for (int r = 0; r < B; ++r) {
    const size_t start = ((step * 1315423911ull) + static_cast<uint64_t>(first_row + r) * 2654435761ull) % span;
    for (int t = 0; t < Tn; ++t) {
      b.tokens[static_cast<size_t>(r) * Tn + t] = bytes_[(start + t) % span];
      b.targets[static_cast<size_t>(r) * Tn + t] = bytes_[(start + t + 1) % span];
    }
  }
  return b;
}

}  // namespace zp
