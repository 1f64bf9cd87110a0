// mnemo — the command-line tool. Subcommands:
//
//   mnemo version                 the version and the features this build has
//   mnemo demo-mlp [options]      train a small MLP on a generated spiral (train/lib/demo_mlp.h)
//
// This file only parses arguments (CLI11) and maps failures to exit codes; the work lives
// in train/lib. Exit codes: 0 success; 2 bad input (a command-line error, or a mnemo::Error
// raised by what the input asked for); 1 an internal error. Every error is one line on stderr.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <string>

#include "core/error.h"
#include "train/lib/build_info.h"
#include "train/lib/demo_mlp.h"

namespace {

constexpr int kExitBadInput = 2;
constexpr int kExitInternal = 1;

// Prints "mnemo: <message>" as one line (any newline in message becomes "; ").
void print_error(const std::string& message) {
  std::string line = message;
  while (!line.empty() && line.back() == '\n') line.pop_back();
  for (size_t at = line.find('\n'); at != std::string::npos; at = line.find('\n', at)) {
    line.replace(at, 1, "; ");
  }
  std::cerr << "mnemo: " << line << "\n";
}

void add_demo_mlp_options(CLI::App& demo, mnemo::DemoMlpOptions& o, std::string& device) {
  demo.add_option("--steps", o.steps, "Gradient-descent steps")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  demo.add_option("--seed", o.seed, "Seed of the data and the initial weights")
      ->capture_default_str();
  demo.add_option("--threads", o.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(1, 4096));
  demo.add_option("--lr", o.learning_rate, "Learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  demo.add_option("--classes", o.classes, "Spiral arms (classes)")
      ->check(CLI::Range(int64_t(2), int64_t(1000)))
      ->capture_default_str();
  demo.add_option("--points", o.points_per_class, "Points per arm")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 24))
      ->capture_default_str();
  demo.add_option("--hidden", o.hidden, "Width of the two hidden layers")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16))
      ->capture_default_str();
  demo.add_option("--print-every", o.print_every, "Print every N steps (default: ~20 lines)")
      ->check(CLI::NonNegativeNumber);
  demo.add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mnemo: a from-scratch deep-learning framework in C++20 and CUDA", "mnemo"};
  // At most one subcommand; "none" is reported after parsing, so that an unknown word is
  // named in the error ("not expected: frobnicate") rather than hidden behind "required".
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", "mnemo " + mnemo::version());
  CLI::App* version = app.add_subcommand("version", "Print the version and the build's features");
  CLI::App* demo = app.add_subcommand(
      "demo-mlp", "Train a small MLP on a generated spiral with plain SGD, printing the loss");
  mnemo::DemoMlpOptions demo_options;
  std::string device = "cpu";
  add_demo_mlp_options(*demo, demo_options, device);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    print_error(std::string(e.what()) + " (see mnemo --help)");
    return kExitBadInput;
  }
  if (app.get_subcommands().empty()) {
    print_error("a subcommand is required: version or demo-mlp (see mnemo --help)");
    return kExitBadInput;
  }

  try {
    if (*version) {
      std::cout << mnemo::version_report();
    } else if (*demo) {
      demo_options.device = mnemo::Device::parse(device);
      mnemo::run_demo_mlp(demo_options, std::cout);
    }
    return 0;
  } catch (const mnemo::Error& e) {
    print_error(e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    print_error(std::string("internal error: ") + e.what());
    return kExitInternal;
  } catch (...) {
    print_error("internal error: an exception of unknown type");
    return kExitInternal;
  }
}
