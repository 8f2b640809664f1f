#include "costmodel/csv_rows.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "models/input_error.h"

namespace zp {

std::vector<CsvRow> csv_rows(const std::string& text, const std::string& where, const std::string& header) {
  const size_t columns = static_cast<size_t>(std::count(header.begin(), header.end(), ',')) + 1;
  std::vector<CsvRow> out;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  bool seen_header = false;
  while (std::getline(in, line)) {
    ++number;
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    line.erase(std::remove_if(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; }),
               line.end());
    if (line.empty()) continue;
    const std::string at = where + ":" + std::to_string(number);
    if (!seen_header) {
      if (line != header) throw InputError(at + ": expected the header " + header + ", got '" + line + "'");
      seen_header = true;
      continue;
    }
    CsvRow row{at, line, {}};
    std::istringstream fields(line + ",");  // a trailing empty field still counts
    for (std::string field; std::getline(fields, field, ',');) row.fields.push_back(field);
    if (row.fields.size() != columns) {
      throw InputError(at + ": expected " + std::to_string(columns) + " fields (" + header + "), got '" + line + "'");
    }
    out.push_back(std::move(row));
  }
  if (!seen_header) throw InputError(where + ": empty; expected the header " + header + " and one row per line");
  return out;
}

double positive_field(const CsvRow& row, size_t field, const std::string& expected) {
  const std::string& s = row.fields.at(field);
  char* end = nullptr;
  const double x = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(x > 0) || !std::isfinite(x)) {
    throw InputError(row.at + ": expected " + expected + ", got '" + row.line + "'");
  }
  return x;
}

}  // namespace zp
