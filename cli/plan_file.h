// The zeroplan plan file (`emit --format zeroplan`) read back: the model and
// the whole layout, every field checked (unknown fields, wrong types and
// values are one-line InputErrors naming the file and field). What a consumer
// can run is its own business (`zeroplan run` refuses what the executor does
// not run yet).
#pragma once

#include <string>
#include <vector>

#include "cli/layout_flags.h"
#include "costmodel/layout.h"
#include "models/catalog.h"
#include "models/model_spec.h"
#include "planner/emit.h"

namespace zp {

struct PlanFile {
  ModelSpec model;
  Layout layout;
};

PlanFile read_plan_file(const std::string& path);

// The whole job of a plan file: its model and layout on its cluster (the GPU,
// node and GPU count it was planned for), the layout checked against them.
Job read_plan_job(const std::string& path, const Catalog& catalog);

// A job's files in `format` (planner/emit.h: `zeroplan` is its plan file),
// with the cost model's predictions they carry; `memory`, where given,
// receives the memory prediction.
std::vector<EmittedFile> emit_job(const std::string& format, const Job& job, MemoryResult* memory = nullptr);

}  // namespace zp
