// Checkpoint directories: begin (a temporary dir), commit (fsync, rename, repoint latest,
// prune), resolve. See checkpoint_dir.h for the layout and why each step is atomic.
#include "train/io/checkpoint_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace mnemo::io {
namespace fs = std::filesystem;
namespace {

std::string errno_text() {
  return std::strerror(errno);
}

// "step-00000100" -> 100; -1 if name is not a checkpoint dir name.
int64_t parse_step_name(const std::string& name) {
  if (name.size() <= 5 || name.rfind("step-", 0) != 0) return -1;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > INT64_MAX / 10 - 9) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// ".tmp-step-300-4242" -> 4242; -1 if it does not match.
pid_t parse_tmp_pid(const std::string& name) {
  if (name.rfind(".tmp-step-", 0) != 0 && name.rfind(".old-step-", 0) != 0) return -1;
  size_t dash = name.rfind('-');
  if (dash == std::string::npos || dash + 1 >= name.size()) return -1;
  long pid = 0;
  for (size_t i = dash + 1; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || pid > 1 << 30) return -1;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid_t(pid);
}

bool process_alive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

// fsync every regular file under dir, then every directory (deepest first), then dir itself.
void fsync_tree(const fs::path& dir) {
  std::vector<std::string> dirs;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_symlink()) continue;
    if (entry.is_regular_file()) fsync_path(entry.path().string());
    if (entry.is_directory()) dirs.push_back(entry.path().string());
  }
  std::reverse(dirs.begin(), dirs.end());
  for (const std::string& d : dirs) fsync_path(d);
  fsync_path(dir.string());
}

// Makes `to` name the directory `from`, atomically if `to` already exists (the two are
// swapped, then the old contents removed), so a reader never finds `to` missing.
void rename_dir_over(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) == 0) return;
  if (errno != EEXIST && errno != ENOTEMPTY) {
    fail_system("commit_checkpoint: cannot rename '{}' to '{}': {}", from.string(), to.string(),
                errno_text());
  }
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(from);  // now holds the replaced checkpoint
    return;
  }
  // No RENAME_EXCHANGE on this file system: move the old one aside first (a short window
  // without `to`; `latest` keeps naming it and becomes valid again on the next rename).
  fs::path aside =
      to.parent_path() / (".old-" + to.filename().string() + "-" + std::to_string(::getpid()));
  fs::remove_all(aside);
  MNEMO_CHECK(::rename(to.c_str(), aside.c_str()) == 0 && ::rename(from.c_str(), to.c_str()) == 0,
              "commit_checkpoint: cannot replace '{}': {}", to.string(), errno_text());
  fs::remove_all(aside);
}

// Points run/latest at target_name with a symlink renamed over it.
void point_latest(const fs::path& run, const std::string& target_name) {
  fs::path link_tmp = run / "latest.tmp";
  fs::path latest = run / "latest";
  std::error_code ignored;
  fs::remove(link_tmp, ignored);
  MNEMO_CHECK(::symlink(target_name.c_str(), link_tmp.c_str()) == 0,
              "commit_checkpoint: cannot create symlink '{}': {}", link_tmp.string(), errno_text());
  if (::rename(link_tmp.c_str(), latest.c_str()) != 0) {
    std::string why = errno_text();
    fs::remove(link_tmp, ignored);
    fail("commit_checkpoint: cannot replace '{}' ({}; is it a real directory?)", latest.string(),
         why);
  }
}

// The name `latest` points to ("" if none or not a symlink).
std::string latest_target(const fs::path& run) {
  std::error_code error;
  fs::path target = fs::read_symlink(run / "latest", error);
  return error ? "" : target.filename().string();
}

void prune(const fs::path& run, int keep) {
  std::string protect = latest_target(run);
  std::vector<std::pair<int64_t, fs::path>> steps;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(run)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_directory() || entry.is_symlink()) continue;
    if (int64_t step = parse_step_name(name); step >= 0) {
      steps.emplace_back(step, entry.path());
    } else if (pid_t pid = parse_tmp_pid(name); pid > 0) {
      if (pid == ::getpid() || !process_alive(pid)) stale.push_back(entry.path());
    }
  }
  std::sort(steps.begin(), steps.end(), [](const auto& a, const auto& b) { return a > b; });
  for (size_t i = keep > 0 ? size_t(keep) : steps.size(); i < steps.size(); ++i) {
    if (steps[i].second.filename() != protect) stale.push_back(steps[i].second);
  }
  for (const fs::path& path : stale) fs::remove_all(path);
}

// The four steps of commit_checkpoint (which turns file system exceptions into Errors).
std::string commit_checkpoint_steps(const std::string& run_dir, const std::string& tmp_dir,
                                    int64_t step, int keep) {
  fs::path run(run_dir);
  fs::path tmp(tmp_dir);
  MNEMO_CHECK(fs::is_directory(tmp), "commit_checkpoint: '{}' is not a directory", tmp_dir);
  std::error_code error;
  MNEMO_CHECK(fs::equivalent(tmp.parent_path().empty() ? "." : tmp.parent_path(), run, error),
              "commit_checkpoint: '{}' is not inside the run directory '{}'", tmp_dir, run_dir);
  std::string name = checkpoint_dir_name(step);
  fs::path final_path = run / name;

  fsync_tree(tmp);                   // 1. the files' bytes are on disk
  rename_dir_over(tmp, final_path);  // 2. the checkpoint gets its name
  fsync_path(run.string());
  point_latest(run, name);  // 3. latest moves to it in one rename
  fsync_path(run.string());
  prune(run, keep);  // 4. old checkpoints and crash leftovers go
  return final_path.string();
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  MNEMO_CHECK(step >= 0, "checkpoint: step must be >= 0, got {}", step);
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  return name;
}

std::string begin_checkpoint(const std::string& run_dir, int64_t step) {
  MNEMO_CHECK(step >= 0, "begin_checkpoint: step must be >= 0, got {}", step);
  std::error_code error;
  fs::create_directories(run_dir, error);
  MNEMO_CHECK(!error && fs::is_directory(run_dir),
              "begin_checkpoint: cannot create run directory '{}': {}", run_dir,
              error ? error.message() : "not a directory");
  fs::path tmp =
      fs::path(run_dir) / (".tmp-step-" + std::to_string(step) + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp, error);
  MNEMO_CHECK(fs::create_directory(tmp, error) && !error,
              "begin_checkpoint: cannot create '{}': {}", tmp.string(), error.message());
  return tmp.string();
}

std::string commit_checkpoint(const std::string& run_dir, const std::string& tmp_dir, int64_t step,
                              int keep) {
  try {
    return commit_checkpoint_steps(run_dir, tmp_dir, step, keep);
  } catch (const fs::filesystem_error& e) {  // e.g. permissions, a full disk
    fail_system("commit_checkpoint: {}: {}", run_dir, e.what());
  }
}

std::string resolve_checkpoint(const std::string& path) {
  fs::path dir(path);
  std::error_code error;
  MNEMO_CHECK(fs::is_directory(dir, error), "checkpoint: '{}' is not a directory", path);
  fs::path latest = dir / "latest";
  if (fs::is_symlink(latest, error) || fs::exists(latest, error)) {
    MNEMO_CHECK(fs::is_directory(latest, error),
                "checkpoint: '{}' points to a missing checkpoint directory", latest.string());
    std::string target = latest_target(dir);
    fs::path resolved = target.empty() ? latest : dir / target;
    MNEMO_CHECK(fs::exists(resolved / "config.json", error), "checkpoint: '{}' has no config.json",
                resolved.string());
    return resolved.string();
  }
  if (fs::exists(dir / "config.json", error)) return dir.string();
  fail(
      "checkpoint: '{}' is neither a run directory (no 'latest') nor a checkpoint directory "
      "(no config.json)",
      path);
}

}  // namespace mnemo::io
