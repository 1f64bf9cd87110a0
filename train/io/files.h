// Small POSIX file helpers shared by the io library: whole-file reads, atomic writes
// (write to PATH.tmp, fsync, rename over PATH, fsync the directory), and fsync of files and
// directories.
//
// "Atomic" means a reader (or a crash) sees either the old file or the complete new one,
// never a half-written file: rename() replaces a name in one step, and the fsyncs make sure the
// data reaches the disk before the name points to it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/error.h"

namespace mnemo::io {

// The whole file as bytes. Errors name the path: "read_file: cannot open 'x': No such file".
std::string read_file(const std::string& path);

// Writes contents to path + ".tmp", fsyncs it, renames it over path, fsyncs the directory.
void write_file_atomic(const std::string& path, std::string_view contents);

// fsync a file, or a directory (its entries: new names, renames, deletions).
void fsync_path(const std::string& path);

// Runs read(), which reads `path`; a mnemo::Error whose message does not name the file yet is
// rethrown (same kind) as "PATH: <message>", so every error of a reader names its file.
template <typename Read>
decltype(auto) naming_file(const std::string& path, Read&& read) {
  try {
    return read();
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.find(path) != std::string::npos) throw;
    rethrow_with(e, "{}: {}", path, message);
  }
}

// Writes a file in pieces, then publishes it atomically with commit(). Until commit() the
// bytes live in path + ".tmp", which the destructor removes if commit() never ran (an error
// midway leaves the old file untouched).
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void commit();  // fsync, close, rename over path, fsync the directory

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
};

}  // namespace mnemo::io
