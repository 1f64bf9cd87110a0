// Pre-tokenization: cutting text into chunks that BPE merges never cross.
//
// GPT-2 splits text with a regex before BPE, so that "dog", " dog" and "dog." learn one token
// each instead of a token per punctuation variant. This is a simplified, byte-level version
// of that regex (named "mnemo-v1" in tokenizer files). Byte classes:
//
//   letter  A-Z a-z, and every byte >= 0x80 (so UTF-8 multi-byte letters stay in one chunk)
//   digit   0-9
//   space   ' ' \t \n \v \f \r
//   other   everything else (punctuation, control bytes, NUL)
//
// Chunks, scanning left to right (each rule takes the longest match):
//
//   ' '? letter+        a word with at most one leading space      " hello"
//   ' '? digit+         a number with at most one leading space    " 2024"
//   ' '? other+         punctuation with at most one leading space " ..."
//   space+              a whitespace run; if it is followed by a non-space and ends in ' ',
//                       that last ' ' is left to start the next chunk ("\n  x" -> "\n ", " x")
//
// GPT-2's contraction rule ('s, 't, ...) is left out. Every byte lands in exactly one chunk,
// so concatenating the chunks gives back the text.
#pragma once

#include <string_view>

namespace mnemo::text {

// Calls fn(std::string_view chunk) for each chunk of text, in order.
template <typename Fn>
void for_each_chunk(std::string_view text, Fn&& fn);

namespace detail {
enum class ByteClass : unsigned char { letter, digit, space, other };

inline ByteClass byte_class(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return ByteClass::letter;
  if (c >= '0' && c <= '9') return ByteClass::digit;
  if (c == ' ' || (c >= '\t' && c <= '\r')) return ByteClass::space;
  return ByteClass::other;
}
}  // namespace detail

template <typename Fn>
void for_each_chunk(std::string_view text, Fn&& fn) {
  using detail::byte_class;
  using detail::ByteClass;
  const size_t n = text.size();
  auto cls = [&](size_t i) { return byte_class(static_cast<unsigned char>(text[i])); };
  size_t i = 0;
  while (i < n) {
    size_t start = i;
    // A single ' ' directly before a non-space joins the following run.
    size_t body = (text[i] == ' ' && i + 1 < n && cls(i + 1) != ByteClass::space) ? i + 1 : i;
    ByteClass c = cls(body);
    size_t end = body + 1;
    while (end < n && cls(end) == c) ++end;
    if (c == ByteClass::space && end < n && end - start > 1 && text[end - 1] == ' ') {
      --end;  // leave the last ' ' to lead the next chunk
    }
    fn(text.substr(start, end - start));
    i = end;
  }
}

}  // namespace mnemo::text
