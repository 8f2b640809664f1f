// zeroplan's own model file format (one JSON object per architecture, as in
// models/data/models/*.json) to and from ModelSpec. Unknown fields are
// rejected so a typo never silently changes a count. docs/catalogs.md lists
// the fields.
#pragma once

#include <string>

#include "models/json_file.h"
#include "models/model_spec.h"

namespace zp {

// `origin` names the file in error messages. Throws InputError.
ModelSpec model_from_json(const Json& j, const std::string& origin);
Json model_to_json(const ModelSpec& m);

}  // namespace zp
