// Reading JSON files and typed fields with one-line, located error messages.
// parse_json_file reports syntax errors with line and column; the field readers
// name the file and the field and say what was expected. All errors are
// InputError. Nothing here knows about models or hardware.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace zp {

using Json = nlohmann::json;

// Reads and parses `path`; throws InputError("<path>:<line>:<col>: ...").
Json parse_json_file(const std::string& path);
// Parses `text` that came from `origin` (used for messages only).
Json parse_json_text(const std::string& text, const std::string& origin);

// A view of one JSON object with its origin, for reading fields.
class JsonFields {
 public:
  JsonFields(const Json& object, std::string origin);

  uint64_t positive(const char* field) const;  // required integer >= 1
  uint64_t positive_or(const char* field, uint64_t fallback) const;
  std::optional<uint64_t> optional_positive(const char* field) const;
  // An integer from 1 to `most` (required when `fallback` is 0), so a size
  // narrowed or looped over later cannot wrap or run for ever.
  uint64_t positive_at_most(const char* field, uint64_t most, uint64_t fallback = 0) const;
  double positive_number(const char* field) const;  // required number > 0
  double number_or(const char* field, double fallback) const;  // >= 0 when present
  std::string string(const char* field) const;
  std::string string_or(const char* field, const std::string& fallback) const;
  bool boolean_or(const char* field, bool fallback) const;
  bool has(const char* field) const;
  // One of `choices` (case-sensitive); the message lists them.
  std::string choice(const char* field, const std::vector<std::string>& choices,
                     const std::string& fallback) const;
  // Rejects any field not in `known` (catches typos in catalog files).
  void reject_unknown(const std::vector<std::string>& known) const;

  const std::string& origin() const { return origin_; }
  std::string where(const char* field) const;

 private:
  const Json& object_;
  std::string origin_;
};

}  // namespace zp
