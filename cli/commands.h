// The zeroplan subcommands. Each add_* registers one subcommand (its flags,
// help with an example, and the callback) on the CLI11 app; callbacks print to
// stdout and throw InputError for the user's mistakes, which main() turns into
// one line on stderr and exit code 2.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace zp {

struct GlobalOptions {
  std::vector<std::string> catalog_dirs;  // --catalog
};

void add_catalog_commands(CLI::App& app, const GlobalOptions& global);
void add_params_command(CLI::App& app, const GlobalOptions& global);
void add_explain_command(CLI::App& app, const GlobalOptions& global);
void add_plan_commands(CLI::App& app, const GlobalOptions& global);
void add_emit_commands(CLI::App& app, const GlobalOptions& global);
void add_run_command(CLI::App& app, const GlobalOptions& global);
void add_validate_command(CLI::App& app, const GlobalOptions& global);
void add_calibrate_command(CLI::App& app, const GlobalOptions& global);

// The question zeroplan answers with no arguments.
int run_default_question(const GlobalOptions& global);

}  // namespace zp
