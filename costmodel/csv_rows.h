// The rows of a measurement CSV as bench/'s GPU programs write them
// (bench/gpu_gemm_sweep, bench/gpu_attention_bench): `#` starts a comment,
// blank lines and spaces are ignored, and the first line is the header.
#pragma once

#include <string>
#include <vector>

namespace zp {

struct CsvRow {
  std::string at;                   // "<where>:<line number>", for messages
  std::string line;                 // the line without comment and spaces
  std::vector<std::string> fields;  // split at the commas
};

// Throws InputError naming `where` (and the line) for a text without the
// header `header` first or a row with another number of fields.
std::vector<CsvRow> csv_rows(const std::string& text, const std::string& where, const std::string& header);

// `field` of `row` as a positive finite number, or InputError naming the row
// and what it should hold (`expected`).
double positive_field(const CsvRow& row, size_t field, const std::string& expected);

}  // namespace zp
