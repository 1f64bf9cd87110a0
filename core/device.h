// Device: where a tensor's storage lives — the CPU, or CUDA device N ("cuda:N").
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace mnemo {

enum class DeviceType : uint8_t { cpu, cuda };
inline constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;  // CUDA ordinal; always 0 for the CPU

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  static Device parse(std::string_view text);  // "cpu", "cuda", "cuda:1"; throws on bad text

  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const;
  bool operator==(const Device&) const = default;
};

}  // namespace mnemo

template <>
struct fmt::formatter<mnemo::Device> : fmt::formatter<std::string_view> {
  auto format(const mnemo::Device& d, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(d.str(), ctx);
  }
};
