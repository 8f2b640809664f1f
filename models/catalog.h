// Catalog: the model, GPU and node files zeroplan knows, loaded from the
// built-in data folder (models/data) and any extra folders the user names
// (--catalog DIR or ZEROPLAN_CATALOG=DIR1:DIR2), each with models/, gpus/ and
// nodes/ subfolders. A later folder's entry replaces an earlier one of the
// same name, so users can override a preset. Lookups are case-insensitive and
// a miss is an InputError that suggests the closest names.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "models/hardware.h"
#include "models/model_spec.h"

namespace zp {

class Catalog {
 public:
  // Loads the built-in data folder, then ZEROPLAN_CATALOG, then `extra_dirs`.
  static Catalog load(const std::vector<std::string>& extra_dirs = {});
  // Loads exactly these folders (tests).
  static Catalog load_dirs(const std::vector<std::string>& dirs);

  // A catalog name, a zeroplan model JSON file, a Hugging Face config.json,
  // or a folder holding config.json.
  ModelSpec resolve_model(const std::string& name_or_path) const;
  const GpuSpec& gpu(const std::string& name) const;
  const NodeSpec& node(const std::string& name) const;

  std::vector<ModelSpec> models() const;
  std::vector<GpuSpec> gpus() const;
  std::vector<NodeSpec> nodes() const;
  std::vector<std::string> model_names() const;

  static std::string builtin_data_dir();

 private:
  void load_dir(const std::string& dir);
  std::map<std::string, ModelSpec> models_;  // keyed by lower-case name
  std::map<std::string, GpuSpec> gpus_;
  std::map<std::string, NodeSpec> nodes_;
};

// Loads a model from a file or folder path (zeroplan JSON or HF config.json).
ModelSpec load_model_path(const std::string& path);

}  // namespace zp
