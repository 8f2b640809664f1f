// Training data for the executor: a deterministic synthetic corpus with
// learnable structure (each sequence follows one of four affine rules modulo
// the vocabulary fixed by the seed, with noise tokens mixed in, so loss curves
// mean something) and
// a text file read as bytes (vocabulary 256). Batches are (B,T) tokens with
// their next-token targets; the same seed and step give the same batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace zp {

struct Batch {
  std::vector<int> tokens, targets;  // (B, T), row-major
};

class SyntheticCorpus {
 public:
  SyntheticCorpus(int vocab, uint64_t seed) : vocab_(vocab), seed_(seed) {}
  // Batch number `step` (rows [first_row, first_row + B) of the global batch).
  Batch batch(uint64_t step, int first_row, int B, int Tn) const;

 private:
  int vocab_;
  uint64_t seed_;
};

class ByteCorpus {
 public:
  // Throws InputError when the file cannot be read or is shorter than 2 bytes.
  explicit ByteCorpus(const std::string& path);
  Batch batch(uint64_t step, int first_row, int B, int Tn) const;
  size_t size() const { return bytes_.size(); }

 private:
  std::vector<unsigned char> bytes_;
};

}  // namespace zp
