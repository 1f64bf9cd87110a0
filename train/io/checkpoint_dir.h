// Atomic checkpoint directories inside a run directory.
//
//   RUN/step-00000100/      complete checkpoints (config.json, model.safetensors, ...)
//   RUN/step-00000200/
//   RUN/latest -> step-00000200     a relative symlink, always to a complete checkpoint
//   RUN/.tmp-step-300-4242/  a checkpoint being written (by process 4242)
//
// Writing a checkpoint: dir = begin_checkpoint(run, step); write the files into dir;
// commit_checkpoint(run, dir, step). The commit fsyncs the files and the directory, renames it
// to step-XXXXXXXX, then makes a symlink latest.tmp and renames it over latest: rename() is
// atomic, so at every instant `latest` names a complete checkpoint — a crash before the
// rename leaves the previous one (and a stale .tmp-* dir, removed by the next commit).
#pragma once

#include <cstdint>
#include <string>

#include "train/io/files.h"

namespace mnemo::io {

// Creates (fresh, empty) and returns RUN/.tmp-step-<step>-<pid>; creates RUN if needed.
std::string begin_checkpoint(const std::string& run_dir, int64_t step);

// Publishes tmp_dir as RUN/step-<step:08d> (replacing one of that name), points RUN/latest at
// it, then deletes all but the `keep` newest step-* dirs (keep <= 0 keeps all; the one latest
// names is never deleted) and stale .tmp-* dirs of this or dead processes. Returns the
// checkpoint's path.
std::string commit_checkpoint(const std::string& run_dir, const std::string& tmp_dir, int64_t step,
                              int keep = 2);

// A run dir with `latest` -> the checkpoint it names; a dir with config.json -> itself; else
// an Error naming the path.
std::string resolve_checkpoint(const std::string& path);

// "step-00000100" for 100.
std::string checkpoint_dir_name(int64_t step);

}  // namespace mnemo::io
