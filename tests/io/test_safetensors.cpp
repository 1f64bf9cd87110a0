// safetensors: round trips for every dtype, the exact byte layout, and every corruption case.
#include "train/io/safetensors.h"

#include <doctest/doctest.h>

#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "io/temp_dir.h"
#include "train/io/files.h"

namespace mnemo::io {
namespace {

using testing::TempDir;
using testing::write_bytes;

// An 8-byte little-endian length, the header text, the data: built by hand, independently of
// save_safetensors.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string f32_bytes(const std::vector<float>& values) {
  std::string out(values.size() * 4, '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// Runs fn, requires an Error whose message contains every given fragment.
template <typename Fn>
void check_error(Fn&& fn, std::initializer_list<std::string> fragments) {
  std::string message;
  try {
    fn();
  } catch (const Error& e) {
    message = e.what();
  }
  INFO("message: ", message);
  REQUIRE_FALSE(message.empty());
  for (const std::string& fragment : fragments) CHECK(message.find(fragment) != std::string::npos);
}

// One tensor's header entry: "name": {"dtype": ..., "shape": ..., "data_offsets": ...}.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape +
         ", \"data_offsets\": " + offsets + "}";
}

// A header of these entries, in order.
std::string header(std::initializer_list<std::string> entries) {
  std::string out = "{";
  for (const std::string& e : entries) out += (out.size() > 1 ? ", " : "") + e;
  return out + "}";
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, bit for bit") {
  TempDir dir;
  std::vector<double> values = {1.5, -2.25, 0.0, 3.0, -7.0, 100.0};
  NamedTensors tensors;
  for (DType dtype :
       {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::boolean}) {
    tensors.emplace_back(std::string(dtype_name(dtype)),
                         from_vector(values, {2, 3}, TensorOptions{}.with_dtype(dtype)));
  }
  tensors.emplace_back("scalar", scalar_tensor(42.0));
  tensors.emplace_back("empty", zeros({0, 4}));
  std::string path = dir / "all.safetensors";
  save_safetensors(path, tensors, {{"format", "pt"}, {"step", "12"}});

  NamedTensors loaded = load_safetensors(path);
  REQUIRE(loaded.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {  // saved in order, so file order == input order
    const auto& [name, expected] = tensors[i];
    const auto& [loaded_name, got] = loaded[i];
    CAPTURE(name);
    CHECK(loaded_name == name);
    CHECK(got.dtype() == expected.dtype());
    CHECK(got.shape() == expected.shape());
    size_t bytes = size_t(expected.numel()) * expected.element_size();
    if (bytes > 0) {  // an empty tensor may have no storage (memcmp needs valid pointers)
      CHECK(std::memcmp(got.data_ptr(), expected.data_ptr(), bytes) == 0);
    }
  }
  CHECK(loaded[2].second.to_vector<double>() == std::vector<double>{1.5, -2.25, 0, 3, -7, 100});
  auto metadata = read_safetensors_metadata(path);
  CHECK(metadata.size() == 2);
  CHECK(metadata["step"] == "12");
}

TEST_CASE("safetensors: non-contiguous input is saved in row-major order") {
  TempDir dir;
  Tensor x = from_vector(std::vector<double>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor xt = core::transpose(x, 0, 1);  // (3, 2): [[0,3],[1,4],[2,5]]
  REQUIRE_FALSE(xt.is_contiguous());
  std::string path = dir / "t.safetensors";
  save_safetensors(path, {{"xt", xt}, {"row", core::select(x, 1, 1)}});
  NamedTensors loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0].second.shape() == Shape{3, 2});
  CHECK(loaded[0].second.to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(loaded[1].second.to_vector<double>() == std::vector<double>{1, 4});
}

TEST_CASE("safetensors: the written bytes follow the format exactly") {
  TempDir dir;
  std::string path = dir / "exact.safetensors";
  save_safetensors(path, {{"b", from_vector(std::vector<float>{1, 2}, {2})},
                          {"a", from_vector(std::vector<int64_t>{-1}, {1})}});
  std::string bytes = read_file(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  CHECK(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 16);
  std::string header = bytes.substr(8, n);
  std::string unpadded = header.substr(0, header.find_last_not_of(' ') + 1);
  CHECK(unpadded == R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("a":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})");
  CHECK(bytes.substr(8 + n) == f32_bytes({1, 2}) + std::string("\xff\xff\xff\xff\xff\xff\xff\xff"));
}

TEST_CASE("safetensors: a hand-built file loads, in offset order") {
  TempDir dir;
  std::string path = dir / "hand.safetensors";
  // Header keys in an order different from the data order; no padding; one metadata entry.
  std::string header = R"({"second": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]},)"
                       R"( "__metadata__": {"who": "test"},)"
                       R"( "first": {"dtype": "F32", "shape": [3, 1], "data_offsets": [0, 12]}})";
  write_bytes(path, make_file(header, f32_bytes({1, 2, 3, 4})));
  NamedTensors loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0].first == "first");
  CHECK(loaded[0].second.shape() == Shape{3, 1});
  CHECK(loaded[0].second.to_vector<float>() == std::vector<float>{1, 2, 3});
  CHECK(loaded[1].first == "second");
  CHECK(loaded[1].second.to_vector<float>() == std::vector<float>{4});
  CHECK(read_safetensors_metadata(path).at("who") == "test");
  auto entries = read_safetensors_header(path);
  REQUIRE(entries.size() == 2);
  CHECK(entries[1].begin == 12);
  CHECK(entries[1].end == 16);
}

TEST_CASE("safetensors: truncation anywhere is an error naming the file") {
  TempDir dir;
  std::string good = dir / "good.safetensors";
  save_safetensors(good, {{"w", from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3})},
                          {"b", from_vector(std::vector<float>{7, 8}, {2})}});
  std::string bytes = read_file(good);
  uint64_t header_end = 8 + uint64_t(uint8_t(bytes[0])) + (uint64_t(uint8_t(bytes[1])) << 8);
  for (size_t cut : {size_t(0), size_t(3), size_t(7), size_t(8), size_t(20), size_t(header_end - 1),
                     size_t(header_end), size_t(header_end + 5), bytes.size() - 1}) {
    CAPTURE(cut);
    std::string path = dir / "cut.safetensors";
    write_bytes(path, bytes.substr(0, cut));
    check_error([&] { load_safetensors(path); }, {path});
  }
  std::string path = dir / "long.safetensors";
  write_bytes(path, bytes + "junk");
  check_error([&] { load_safetensors(path); }, {path, "trailing"});
  check_error([&] { load_safetensors(dir / "missing.safetensors"); }, {"missing.safetensors"});
}

TEST_CASE("safetensors: corrupt headers are errors naming the file and tensor") {
  TempDir dir;
  std::string path = dir / "bad.safetensors";
  std::string data = f32_bytes({1, 2, 3, 4});
  struct Case {
    const char* what;
    std::string header;
    std::vector<std::string> fragments;
  };
  std::vector<Case> cases = {
      {"bad JSON", R"({"a": {"dtype": "F32", )", {"invalid JSON"}},
      {"not an object", R"([1, 2])", {"JSON object"}},
      {"bad dtype", header({entry("a", "Q8", "[4]", "[0, 16]")}), {"'a'", "Q8"}},
      {"shape/size mismatch",
       header({entry("a", "F32", "[3]", "[0, 16]")}),
       {"'a'", "needs 12 bytes"}},
      {"wrong dtype size",
       header({entry("a", "F64", "[4]", "[0, 16]")}),
       {"'a'", "needs 32 bytes"}},
      {"offsets beyond file",
       header({entry("a", "F32", "[8]", "[0, 32]")}),
       {"'a'", "past the end"}},
      {"huge offsets", header({entry("a", "F32", "[1]", "[1e30, 4]")}), {"'a'"}},
      {"overflowing shape",
       header({entry("a", "F32", "[4294967296, 4294967296, 16]", "[0, 16]")}),
       {"'a'", "2^64"}},
      {"negative shape", header({entry("a", "F32", "[-4]", "[0, 16]")}), {"'a'", "non-negative"}},
      {"reversed offsets", header({entry("a", "F32", "[0]", "[16, 0]")}), {"'a'"}},
      {"overlap",
       header({entry("a", "F32", "[3]", "[0, 12]"), entry("b", "F32", "[2]", "[8, 16]")}),
       {"'b'", "overlap", "'a'"}},
      {"gap",
       header({entry("a", "F32", "[1]", "[0, 4]"), entry("b", "F32", "[2]", "[8, 16]")}),
       {"'b'", "gap"}},
      {"uncovered tail", header({entry("a", "F32", "[2]", "[0, 8]")}), {"trailing"}},
      {"duplicate name",
       header({entry("a", "F32", "[2]", "[0, 8]"), entry("a", "F32", "[2]", "[8, 16]")}),
       {"duplicate", "'a'"}},
      {"missing field", R"({"a": {"dtype": "F32", "shape": [4]}})", {"'a'", "data_offsets"}},
      {"unknown field",
       R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "x": 1}})",
       {"'a'", "'x'"}},
      {"bad metadata",
       R"({"__metadata__": {"k": 1}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
       {"__metadata__", "'k'"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    write_bytes(path, make_file(c.header, data));
    std::vector<std::string> fragments = c.fragments;
    fragments.push_back(path);
    std::string message;
    try {
      load_safetensors(path);
    } catch (const Error& e) {
      message = e.what();
    }
    INFO("message: ", message);
    REQUIRE_FALSE(message.empty());
    for (const std::string& f : fragments) CHECK(message.find(f) != std::string::npos);
  }

  // A header length field far beyond the file (a huge allocation if it were trusted).
  write_bytes(path, std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}");
  check_error([&] { load_safetensors(path); }, {path, "header length"});
  // BOOL bytes other than 0/1.
  write_bytes(path, make_file(R"({"m": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}})",
                              std::string("\x01\x07", 2)));
  check_error([&] { load_safetensors(path); }, {path, "'m'"});
}

TEST_CASE("safetensors: bad input to save is an error and leaves the old file") {
  TempDir dir;
  std::string path = dir / "keep.safetensors";
  save_safetensors(path, {{"a", ones({2})}});
  check_error(
      [&] {
        save_safetensors(path, {{"a", ones({2})}, {"a", ones({3})}});
      },
      {path, "duplicate", "'a'"});
  check_error([&] { save_safetensors(path, {{"", ones({2})}}); }, {path, "name"});
  check_error([&] { save_safetensors(path, {{"__metadata__", ones({2})}}); }, {path});
  check_error([&] { save_safetensors(path, {{"u", Tensor()}}); }, {path, "'u'"});
  NamedTensors loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 1);
  CHECK(loaded[0].second.shape() == Shape{2});
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace mnemo::io
