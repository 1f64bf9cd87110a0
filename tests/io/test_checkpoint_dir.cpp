// Checkpoint directories: commit, latest, pruning, resolve, and a crash before commit.
#include "train/io/checkpoint_dir.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "io/temp_dir.h"

namespace mnemo::io {
namespace {

namespace fs = std::filesystem;

// Writes a minimal checkpoint (config.json holding the step) through begin/commit.
std::string save(const std::string& run, int64_t step, int keep = 2) {
  std::string tmp = begin_checkpoint(run, step);
  write_file_atomic(tmp + "/config.json", "{\"step\": " + std::to_string(step) + "}");
  write_file_atomic(tmp + "/model.safetensors", std::string(16, 'x'));
  return commit_checkpoint(run, tmp, step, keep);
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("checkpoint: commit twice, latest follows, keep prunes") {
  testing::TempDir dir;
  std::string run = dir / "run";
  std::string first = save(run, 100);
  CHECK(first == run + "/step-00000100");
  CHECK(fs::read_symlink(run + "/latest") == "step-00000100");
  CHECK(read_file(run + "/latest/config.json") == "{\"step\": 100}");

  save(run, 200);
  CHECK(fs::read_symlink(run + "/latest") == "step-00000200");
  CHECK(read_file(run + "/latest/config.json") == "{\"step\": 200}");
  CHECK(entries(run) == std::vector<std::string>{"latest", "step-00000100", "step-00000200"});

  save(run, 300);  // keep = 2: step 100 goes
  CHECK(entries(run) == std::vector<std::string>{"latest", "step-00000200", "step-00000300"});
  save(run, 400, /*keep=*/1);
  CHECK(entries(run) == std::vector<std::string>{"latest", "step-00000400"});
  save(run, 500, /*keep=*/0);  // keep everything
  save(run, 600, /*keep=*/0);
  CHECK(entries(run).size() == 4);

  // A lower step committed later (e.g. a resumed run) is latest and survives pruning.
  save(run, 50, /*keep=*/1);
  CHECK(fs::read_symlink(run + "/latest") == "step-00000050");
  CHECK(entries(run) == std::vector<std::string>{"latest", "step-00000050", "step-00000600"});
}

TEST_CASE("checkpoint: committing the same step again replaces it") {
  testing::TempDir dir;
  std::string run = dir / "run";
  save(run, 7);
  std::string tmp = begin_checkpoint(run, 7);
  write_file_atomic(tmp + "/config.json", "{\"v\": 2}");
  commit_checkpoint(run, tmp, 7);
  CHECK(read_file(run + "/latest/config.json") == "{\"v\": 2}");
  CHECK_FALSE(fs::exists(run + "/step-00000007/model.safetensors"));  // old contents gone
  CHECK(entries(run) == std::vector<std::string>{"latest", "step-00000007"});
}

TEST_CASE("checkpoint: a crash before commit leaves latest on the previous checkpoint") {
  testing::TempDir dir;
  std::string run = dir / "run";
  save(run, 100);
  // The "crash": files half-written into a temporary dir, commit never called. A dead
  // process's leftover as well (pid 0x7ffffff0 does not exist).
  std::string tmp = begin_checkpoint(run, 200);
  CHECK(fs::path(tmp).filename().string().rfind(".tmp-step-200-", 0) == 0);
  write_file_atomic(tmp + "/config.json", "{\"step\": 2");
  fs::create_directory(run + "/.tmp-step-150-2147483632");
  CHECK(resolve_checkpoint(run) == run + "/step-00000100");
  CHECK(read_file(run + "/latest/config.json") == "{\"step\": 100}");

  // The next successful commit removes the leftovers.
  save(run, 300);
  CHECK(entries(run) == std::vector<std::string>{"latest", "step-00000100", "step-00000300"});
}

TEST_CASE("checkpoint: resolve a run dir, a checkpoint dir, and errors") {
  testing::TempDir dir;
  std::string run = dir / "run";
  save(run, 1);
  save(run, 2);
  CHECK(resolve_checkpoint(run) == run + "/step-00000002");
  CHECK(resolve_checkpoint(run + "/step-00000001") == run + "/step-00000001");

  auto message_of = [](const std::string& path) {
    try {
      resolve_checkpoint(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string empty = dir / "empty";
  fs::create_directory(empty);
  CHECK(message_of(empty).find(empty) != std::string::npos);
  CHECK(message_of(dir / "missing").find("missing") != std::string::npos);
  fs::remove_all(run + "/step-00000002");  // latest now dangles
  CHECK(message_of(run).find("latest") != std::string::npos);

  CHECK_THROWS_AS(commit_checkpoint(run, dir / "nope", 3), Error);
  CHECK(checkpoint_dir_name(12345) == "step-00012345");
}

}  // namespace mnemo::io
