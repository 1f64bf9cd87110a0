// safetensors: the standard tensor file format of the Hugging Face ecosystem.
//
// Layout of a file:
//
//   [8 bytes]  N, the header length, unsigned 64-bit little-endian
//   [N bytes]  a JSON object, padded with spaces to a multiple of 8:
//                {"__metadata__": {"key": "value", ...},          (optional, string -> string)
//                 "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
//   [rest]     the raw little-endian tensor data, row-major; data_offsets [begin, end) count
//              bytes from the end of the header
//
// dtypes: F32, F64, BF16, F16, I32, I64, BOOL (one byte, 0 or 1). The tensors' byte ranges
// must tile the data region exactly: no gaps, no overlap, nothing after the last tensor.
//
// save_safetensors writes atomically (PATH.tmp, fsync, rename). load_safetensors checks the
// whole header against the file size before it allocates anything, so a truncated or
// corrupt file is an Error naming the file (and the tensor), never a crash or a huge
// allocation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mnemo::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// One header entry: where a tensor lives in the file.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data region, [begin, end)
  uint64_t end = 0;
};

// Writes tensors (any device, any strides: each is copied to a contiguous CPU tensor) in the
// given order. Names must be unique, non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor onto the CPU, in file order (sorted by data offset; the header's own
// key order carries no meaning).
NamedTensors load_safetensors(const std::string& path);

// The validated header only (file order), without reading tensor data.
std::vector<SafetensorsEntry> read_safetensors_header(const std::string& path);

// The "__metadata__" map (empty if the file has none).
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// "F32" <-> DType::f32, ... (an unknown name is an Error naming it).
std::string_view safetensors_dtype_name(DType dtype);

}  // namespace mnemo::io
