#include <CLI/CLI.hpp>
#include <iostream>

#include "train/lib/build_info.h"

int main(int argc, char** argv) {
  CLI::App app{"mnemo"};
  app.require_subcommand(1);
  app.add_subcommand("version", "print version")->callback([] { std::cout << mnemo::version() << "\n"; });
  CLI11_PARSE(app, argc, argv);
  return 0;
}
