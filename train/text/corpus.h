// Reading a text corpus: a file or a directory of files -> a list of documents.
//
// A directory is walked recursively in sorted path order, skipping hidden entries (names
// starting with '.'), anything that is not a regular file (or a symlink to one; symlinked
// directories are not entered), and fortune index/alias files (*.dat, *.u8: the fortunes
// package links every *.u8 to its text file).
// Each file gives documents: if it has lines consisting of exactly "%" (the fortune format),
// those lines separate documents; otherwise the whole file is one document. Documents that
// are empty or only whitespace are dropped. Bytes are kept exactly as in the file.
#pragma once

#include <string>
#include <vector>

namespace mnemo::text {

// Throws naming the path if it is missing or unreadable, or if no document is found.
std::vector<std::string> read_documents(const std::string& path);

// Documents of one file's contents (the splitting rule above).
std::vector<std::string> split_documents(const std::string& contents);

// The files read_documents reads under path (path itself if it is a file), in order.
std::vector<std::string> corpus_files(const std::string& path);

// /usr/share/games/fortunes when present; otherwise throws saying to install `fortunes`.
std::string default_corpus_path();

}  // namespace mnemo::text
