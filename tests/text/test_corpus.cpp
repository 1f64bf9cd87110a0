// read_documents: fortune-format splitting, whole-file documents, directory walking order,
// skipped files (*.dat, *.u8, hidden, symlinked directories' contents), and errors.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/error.h"
#include "support/skip.h"
#include "temp_dir.h"
#include "train/text/corpus.h"

using namespace mnemo;
using namespace mnemo::text;
using mnemo::text::testing::TempDir;

TEST_CASE("corpus: fortune files split on lines that are exactly %") {
  CHECK(split_documents("one\ntwo\n%\nthree\n%\n") ==
        std::vector<std::string>{"one\ntwo\n", "three\n"});
  // "%" inside a line or with other text does not split; empty documents are dropped.
  CHECK(split_documents("a % b\n%%\n%\n%\n \n%\nlast") ==
        std::vector<std::string>{"a % b\n%%\n", "last"});
  // No separator line: the whole file is one document, bytes unchanged.
  std::string binary("x\0y\n\xff", 5);
  CHECK(split_documents(binary) == std::vector<std::string>{binary});
  CHECK(split_documents("  \n\t").empty());
}

TEST_CASE("corpus: directories are read recursively in sorted order, skipping index files") {
  TempDir dir;
  dir.write("b/fortunes", "b1\n%\nb2\n%\n");
  dir.write("b/fortunes.dat", "binary index");
  dir.write("a.txt", "whole file\nno separators\n");
  dir.write("c/deeper/z", "z1\n%\nz2\n");
  dir.write("c/deeper/z.u8", "alias");
  dir.write(".hidden", "secret");
  dir.write(".git/config", "not text");
  dir.write("empty", "");
  std::filesystem::create_symlink(dir.file("a.txt"), dir.file("link.u8"));
  std::vector<std::string> docs = read_documents(dir.path());
  CHECK(docs ==
        std::vector<std::string>{"whole file\nno separators\n", "b1\n", "b2\n", "z1\n", "z2\n"});
  std::vector<std::string> files = corpus_files(dir.path());
  REQUIRE(files.size() == 4);
  CHECK(files[0] == dir.file("a.txt"));
  CHECK(files[2] == dir.file("c/deeper/z"));
  CHECK(files[3] == dir.file("empty"));
  // A single file is read even if it would be skipped inside a directory.
  CHECK(read_documents(dir.file("b/fortunes.dat")) == std::vector<std::string>{"binary index"});
}

TEST_CASE("corpus: missing paths and empty corpora are errors naming the path") {
  TempDir dir;
  const std::string missing = dir.file("nope");
  try {
    read_documents(missing);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(missing) != std::string::npos);
  }
  dir.write("only.dat", "index");
  try {
    read_documents(dir.path());
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("no documents") != std::string::npos);
    CHECK(std::string(e.what()).find(dir.path()) != std::string::npos);
  }
}

namespace {
bool fortunes_installed() {
  return std::filesystem::is_directory("/usr/share/games/fortunes");
}
}  // namespace

TEST_CASE("corpus: the default corpus is the fortunes directory when installed") {
  if (!fortunes_installed()) return test::skip("fortunes is not installed");
  CHECK(default_corpus_path() == "/usr/share/games/fortunes");
  for (const auto& f : corpus_files(default_corpus_path())) {
    CHECK(f.find(".dat") == std::string::npos);
    CHECK(f.find(".u8") == std::string::npos);
  }
}

TEST_CASE("corpus: without fortunes, the default corpus says how to install it") {
  if (fortunes_installed()) return test::skip("fortunes is installed");
  CHECK_THROWS_WITH_AS(default_corpus_path(), doctest::Contains("apt-get install fortunes"), Error);
}
