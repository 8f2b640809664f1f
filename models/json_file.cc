#include "models/json_file.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "models/input_error.h"

namespace zp {
namespace {

// nlohmann reports a byte offset; users want line and column.
std::string line_col(const std::string& text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return std::to_string(line) + ":" + std::to_string(col);
}

std::string describe(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

}  // namespace

Json parse_json_text(const std::string& text, const std::string& origin) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    size_t byte = e.byte > 0 ? e.byte - 1 : 0;
    std::string msg = e.what();
    auto pos = msg.find("syntax error");
    if (pos != std::string::npos) msg = msg.substr(pos);
    throw InputError(origin + ":" + line_col(text, byte) + ": malformed JSON: " + msg);
  }
}

Json parse_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open the file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse_json_text(buffer.str(), path);
}

JsonFields::JsonFields(const Json& object, std::string origin)
    : object_(object), origin_(std::move(origin)) {
  if (!object_.is_object()) throw InputError(origin_ + ": expected a JSON object at the top level");
}

std::string JsonFields::where(const char* field) const {
  return origin_ + ": field '" + field + "'";
}

bool JsonFields::has(const char* field) const {
  return object_.contains(field) && !object_.at(field).is_null();
}

uint64_t JsonFields::positive(const char* field) const {
  if (!has(field)) throw InputError(where(field) + ": missing; expected a positive integer");
  auto v = optional_positive(field);
  return *v;
}

std::optional<uint64_t> JsonFields::optional_positive(const char* field) const {
  if (!has(field)) return std::nullopt;
  const Json& v = object_.at(field);
  if (v.is_number_unsigned() && v.get<uint64_t>() >= 1) return v.get<uint64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d >= 1 && d < 1.8e19 && d == static_cast<double>(static_cast<uint64_t>(d))) {
      return static_cast<uint64_t>(d);
    }
  }
  throw InputError(where(field) + ": expected a positive integer, got " + describe(v));
}

uint64_t JsonFields::positive_or(const char* field, uint64_t fallback) const {
  auto v = optional_positive(field);
  return v ? *v : fallback;
}

uint64_t JsonFields::positive_at_most(const char* field, uint64_t most, uint64_t fallback) const {
  const uint64_t v = fallback == 0 ? positive(field) : positive_or(field, fallback);
  if (v > most) throw InputError(where(field) + ": expected a positive integer up to " + std::to_string(most));
  return v;
}

double JsonFields::positive_number(const char* field) const {
  if (!has(field)) throw InputError(where(field) + ": missing; expected a positive number");
  const Json& v = object_.at(field);
  if (!v.is_number() || v.get<double>() <= 0) {
    throw InputError(where(field) + ": expected a positive number, got " + describe(v));
  }
  return v.get<double>();
}

double JsonFields::number_or(const char* field, double fallback) const {
  if (!has(field)) return fallback;
  const Json& v = object_.at(field);
  if (!v.is_number() || v.get<double>() < 0) {
    throw InputError(where(field) + ": expected a number >= 0, got " + describe(v));
  }
  return v.get<double>();
}

std::string JsonFields::string(const char* field) const {
  if (!has(field)) throw InputError(where(field) + ": missing; expected a string");
  const Json& v = object_.at(field);
  if (!v.is_string()) throw InputError(where(field) + ": expected a string, got " + describe(v));
  return v.get<std::string>();
}

std::string JsonFields::string_or(const char* field, const std::string& fallback) const {
  return has(field) ? string(field) : fallback;
}

bool JsonFields::boolean_or(const char* field, bool fallback) const {
  if (!has(field)) return fallback;
  const Json& v = object_.at(field);
  if (!v.is_boolean()) throw InputError(where(field) + ": expected true or false, got " + describe(v));
  return v.get<bool>();
}

std::string JsonFields::choice(const char* field, const std::vector<std::string>& choices,
                               const std::string& fallback) const {
  if (!has(field)) return fallback;
  std::string v = string(field);
  if (std::find(choices.begin(), choices.end(), v) != choices.end()) return v;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  throw InputError(where(field) + ": expected one of " + list + ", got \"" + v + "\"");
}

void JsonFields::reject_unknown(const std::vector<std::string>& known) const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      throw InputError(where(it.key().c_str()) + ": unknown field (a typo?)");
    }
  }
}

}  // namespace zp
