#include "models/catalog.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "models/hf_config.h"
#include "models/input_error.h"
#include "models/json_file.h"
#include "models/model_json.h"
#include "models/name_suggest.h"

namespace fs = std::filesystem;

namespace zp {
namespace {

std::vector<fs::path> json_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".json") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

template <class T>
std::vector<std::string> names_of(const std::map<std::string, T>& m) {
  std::vector<std::string> out;
  for (const auto& [key, v] : m) out.push_back(v.name);
  return out;
}

template <class T>
const T& find_named(const std::map<std::string, T>& m, const std::string& name, const char* kind,
                    const char* list_command) {
  auto it = m.find(to_lower(name));
  if (it != m.end()) return it->second;
  std::string hint = closest_names(name, names_of(m));
  throw InputError(std::string("unknown ") + kind + " '" + name + "'" +
                   (hint.empty() ? "" : "; did you mean " + hint + "?") + " (`zeroplan " + list_command +
                   "` lists them)");
}

}  // namespace

std::string Catalog::builtin_data_dir() {
  if (const char* env = std::getenv("ZEROPLAN_DATA_DIR"); env && *env) return env;
  return ZP_DATA_DIR;
}

Catalog Catalog::load_dirs(const std::vector<std::string>& dirs) {
  Catalog c;
  for (const auto& d : dirs) c.load_dir(d);
  return c;
}

Catalog Catalog::load(const std::vector<std::string>& extra_dirs) {
  std::vector<std::string> dirs = {builtin_data_dir()};
  if (const char* env = std::getenv("ZEROPLAN_CATALOG"); env && *env) {
    std::string s = env;
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      if (end > start) dirs.push_back(s.substr(start, end - start));
      start = end + 1;
    }
  }
  dirs.insert(dirs.end(), extra_dirs.begin(), extra_dirs.end());
  for (size_t i = 1; i < dirs.size(); ++i) {
    std::error_code ec;
    if (!fs::is_directory(dirs[i], ec)) {
      throw InputError("--catalog " + dirs[i] + ": not a folder; expected one with models/, gpus/ or nodes/ inside");
    }
  }
  return load_dirs(dirs);
}

void Catalog::load_dir(const std::string& dir) {
  for (const auto& p : json_files(fs::path(dir) / "models")) {
    ModelSpec m = model_from_json(parse_json_file(p.string()), p.string());
    models_[to_lower(m.name)] = m;
  }
  for (const auto& p : json_files(fs::path(dir) / "gpus")) {
    GpuSpec g = gpu_from_json(parse_json_file(p.string()), p.string());
    gpus_[to_lower(g.name)] = g;
  }
  for (const auto& p : json_files(fs::path(dir) / "nodes")) {
    NodeSpec n = node_from_json(parse_json_file(p.string()), p.string());
    nodes_[to_lower(n.name)] = n;
  }
}

ModelSpec load_model_path(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    p /= "config.json";
    if (!fs::exists(p, ec)) throw InputError(path + ": folder has no config.json");
  }
  Json j = parse_json_file(p.string());
  if (is_hf_config(j)) return model_from_hf_config(j, p.string());
  return model_from_json(j, p.string());
}

ModelSpec Catalog::resolve_model(const std::string& name_or_path) const {
  auto it = models_.find(to_lower(name_or_path));
  if (it != models_.end()) return it->second;
  std::error_code ec;
  if (fs::exists(name_or_path, ec)) return load_model_path(name_or_path);
  return find_named(models_, name_or_path, "model", "models");
}

const GpuSpec& Catalog::gpu(const std::string& name) const { return find_named(gpus_, name, "GPU", "gpus"); }
const NodeSpec& Catalog::node(const std::string& name) const {
  return find_named(nodes_, name, "node preset", "gpus");
}

std::vector<ModelSpec> Catalog::models() const {
  std::vector<ModelSpec> out;
  for (const auto& [k, v] : models_) out.push_back(v);
  return out;
}
std::vector<GpuSpec> Catalog::gpus() const {
  std::vector<GpuSpec> out;
  for (const auto& [k, v] : gpus_) out.push_back(v);
  return out;
}
std::vector<NodeSpec> Catalog::nodes() const {
  std::vector<NodeSpec> out;
  for (const auto& [k, v] : nodes_) out.push_back(v);
  return out;
}
std::vector<std::string> Catalog::model_names() const { return names_of(models_); }

}  // namespace zp
