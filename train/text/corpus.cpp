// read_documents: walking a corpus path and splitting files into documents (corpus.h).
#include "train/text/corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace mnemo::text {

namespace fs = std::filesystem;

namespace {

bool only_whitespace(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  });
}

bool skipped_name(const fs::path& p) {
  const std::string name = p.filename().string();
  const std::string ext = p.extension().string();
  return name.empty() || name[0] == '.' || ext == ".dat" || ext == ".u8";
}

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  MNEMO_CHECK(file.good(), "read_documents: cannot open '{}'", path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  MNEMO_CHECK(!file.bad(), "read_documents: error reading '{}'", path);
  return buffer.str();
}

}  // namespace

std::vector<std::string> split_documents(const std::string& contents) {
  std::vector<std::string> docs;
  std::string current;
  bool has_separator = false;
  size_t pos = 0;
  while (pos < contents.size()) {
    size_t end = contents.find('\n', pos);
    size_t line_end = end == std::string::npos ? contents.size() : end;
    size_t next = end == std::string::npos ? contents.size() : end + 1;
    if (line_end - pos == 1 && contents[pos] == '%') {
      has_separator = true;
      if (!only_whitespace(current)) docs.push_back(std::move(current));
      current.clear();
    } else {
      current.append(contents, pos, next - pos);
    }
    pos = next;
  }
  if (!has_separator) {
    docs.clear();
    if (!only_whitespace(contents)) docs.push_back(contents);
    return docs;
  }
  if (!only_whitespace(current)) docs.push_back(std::move(current));
  return docs;
}

std::vector<std::string> corpus_files(const std::string& path) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  MNEMO_CHECK(!ec && fs::exists(status), "read_documents: '{}' does not exist", path);
  if (fs::is_regular_file(status)) return {path};
  MNEMO_CHECK(fs::is_directory(status), "read_documents: '{}' is neither a file nor a directory",
              path);
  std::vector<std::string> files;
  fs::recursive_directory_iterator it(path, ec), end;
  MNEMO_CHECK(!ec, "read_documents: cannot list '{}': {}", path, ec.message());
  for (; it != end; it.increment(ec)) {
    MNEMO_CHECK(!ec, "read_documents: cannot list '{}': {}", path, ec.message());
    const fs::directory_entry& entry = *it;
    if (skipped_name(entry.path())) {
      if (entry.is_directory(ec) && !entry.is_symlink(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!entry.is_regular_file(ec)) continue;  // follows a symlink to its target
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> read_documents(const std::string& path) {
  std::vector<std::string> docs;
  for (const std::string& file : corpus_files(path)) {
    for (std::string& doc : split_documents(read_file(file))) docs.push_back(std::move(doc));
  }
  MNEMO_CHECK(!docs.empty(), "read_documents: no documents in '{}' (empty or only skipped files)",
              path);
  return docs;
}

std::string default_corpus_path() {
  const std::string path = "/usr/share/games/fortunes";
  std::error_code ec;
  MNEMO_CHECK(fs::is_directory(path, ec),
              "default corpus: '{}' not found; install it with `apt-get install fortunes` or give "
              "a text path",
              path);
  return path;
}

}  // namespace mnemo::text
