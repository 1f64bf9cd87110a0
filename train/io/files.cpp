// POSIX implementation of the file helpers in files.h.
#include "train/io/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace mnemo::io {
namespace {

std::string errno_text() {
  return std::strerror(errno);
}

std::string parent_dir(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MNEMO_CHECK(fd >= 0, "read_file: cannot open '{}': {}", path, errno_text());
  struct stat info {};
  if (::fstat(fd, &info) != 0 || S_ISDIR(info.st_mode)) {
    ::close(fd);
    fail("read_file: cannot read '{}': {}", path,
         S_ISDIR(info.st_mode) ? "is a directory" : errno_text());
  }
  std::string contents;
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string why = errno_text();
      ::close(fd);
      fail("read_file: cannot read '{}': {}", path, why);
    }
    if (n == 0) break;
    contents.append(buffer, size_t(n));
  }
  ::close(fd);
  return contents;
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MNEMO_CHECK(fd >= 0, "fsync: cannot open '{}': {}", path, errno_text());
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the data is as safe as it gets.
  if (rc != 0 && error != EINVAL) fail_system("fsync: '{}': {}", path, std::strerror(error));
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MNEMO_CHECK(fd_ >= 0, "write: cannot create '{}': {}", tmp_path_, errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFileWriter::write(const void* data, size_t size) {
  MNEMO_CHECK(fd_ >= 0, "write: '{}' was already committed", path_);
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_system("write: cannot write '{}': {}", tmp_path_, errno_text());
    bytes += n;
    size -= size_t(n);
  }
}

void AtomicFileWriter::commit() {
  MNEMO_CHECK(fd_ >= 0, "write: '{}' was already committed", path_);
  if (::fsync(fd_) != 0) fail_system("write: cannot fsync '{}': {}", tmp_path_, errno_text());
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0 || ::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp_path_.c_str());
    fail_system("write: cannot replace '{}': {}", path_, why);
  }
  fsync_path(parent_dir(path_));
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFileWriter writer(path);
  writer.write(contents);
  writer.commit();
}

}  // namespace mnemo::io
