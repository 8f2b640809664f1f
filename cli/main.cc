// zeroplan: what fits on N GPUs, and how should it be laid out.
// main() owns the error boundary: a user's mistake (InputError, a CLI11 parse
// error) becomes one line on stderr and exit code 2, and so does running out
// of host memory; a bug that escapes as another exception is reported as an
// internal error with exit code 3.
#include <iostream>
#include <new>

#include "cli/commands.h"
#include "models/input_error.h"

int main(int argc, char** argv) {
  CLI::App app{"zeroplan: memory and parallel-layout planner for large-model training"};
  app.set_version_flag("--version", "zeroplan 0.1.0");
  app.footer("Example: zeroplan explain --model llama-3.1-8b --gpus 8 --gpu H100-80GB --zero 1");
  zp::GlobalOptions global;
  app.add_option("--catalog", global.catalog_dirs,
                 "Extra catalog folder(s) with models/, gpus/, nodes/ JSON files (also ZEROPLAN_CATALOG)")
      ->check(CLI::ExistingDirectory);
  zp::add_catalog_commands(app, global);
  zp::add_params_command(app, global);
  zp::add_explain_command(app, global);
  zp::add_plan_commands(app, global);
  zp::add_emit_commands(app, global);
  zp::add_run_command(app, global);
  zp::add_validate_command(app, global);
  zp::add_calibrate_command(app, global);
  try {
    app.parse(argc, argv);
    if (app.get_subcommands().empty()) return zp::run_default_question(global);
    return 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "zeroplan: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const zp::InputError& e) {
    std::cerr << "zeroplan: " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    // run and validate check a plan's host memory first (cli/host_memory.h);
    // what still runs out is the machine's limit, not a bug to report.
    std::cerr << "zeroplan: out of host memory (std::bad_alloc): the model or layout is too large for this machine\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "zeroplan: internal error: " << e.what() << "\n";
    return 3;
  }
}
