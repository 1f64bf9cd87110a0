// The op-level profiler (core/profiler.h): off, dispatch returns the real backend; on, every
// backend call is recorded once with its name, shapes, dtype, device, bytes and FLOPs (checked
// against counts written out here), the summary adds them up, the trace is valid JSON with
// one event per op, and device ops take their time from the device's timer (a fake timer and
// a fake device backend stand in for CUDA, so this runs in CPU-only builds).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define MNEMO_TEST_HAS_JSON 1
#endif

#include "autograd/ops.h"
#include "core/cpu/cpu_backend.h"
#include "core/ops/linalg.h"
#include "core/ops/view.h"
#include "core/profiler.h"

using namespace mnemo;

namespace {

profiler::Options quiet_options(std::string trace_path = "") {
  profiler::Options options;
  options.trace_path = std::move(trace_path);
  options.print_summary = false;
  return options;
}

const profiler::OpSummary* find_op(const profiler::Report& report, std::string_view name) {
  for (const auto& op : report.ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

std::vector<std::string> names_of(const profiler::Report& report) {
  std::vector<std::string> names;
  for (const auto& e : report.events) names.push_back(e.name);
  return names;
}

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Query-key pairs a causal (bottom-right aligned) attention computes, counted one by one.
int64_t causal_pairs(int64_t Tq, int64_t Tk) {
  int64_t pairs = 0;
  for (int64_t i = 0; i < Tq; ++i) {
    for (int64_t j = 0; j < Tk; ++j) pairs += j <= i + (Tk - Tq) ? 1 : 0;
  }
  return pairs;
}

}  // namespace

TEST_CASE("profiler: off, dispatch returns the real backend") {
  profiler::stop();  // a session started from MNEMO_PROFILE would hide the real backend
  CHECK_FALSE(profiler::enabled());
  CHECK(&backend_for(Device::cpu()) == static_cast<Backend*>(&cpu::backend()));
  CHECK(profiler::stop().events.empty());  // stopping twice is harmless and reports nothing

  profiler::start(quiet_options());
  Backend& wrapped = backend_for(Device::cpu());
  CHECK(&wrapped != static_cast<Backend*>(&cpu::backend()));
  CHECK(wrapped.name() == "cpu");                  // the decorator forwards name()
  CHECK(&profiler::wrap(wrapped) == &wrapped);     // never wraps twice
  CHECK(&backend_for(Device::cpu()) == &wrapped);  // one decorator per backend
  profiler::stop();
  CHECK(&backend_for(Device::cpu()) == static_cast<Backend*>(&cpu::backend()));
}

TEST_CASE("profiler: a matmul and softmax sequence records names, shapes, bytes and FLOPs") {
  Tensor x = core::reshape(arange(12, {DType::f32}), {4, 3});
  Tensor w = core::reshape(arange(15, {DType::f32}), {3, 5});
  Tensor xb = core::reshape(arange(24, {DType::f32}), {2, 4, 3});

  profiler::start(quiet_options());
  Tensor y = core::matmul(x, w);    // (4, 5)
  Tensor p = core::softmax(y, -1);  // (4, 5)
  Tensor yb = core::matmul(xb, w);  // (2, 4, 5): w broadcast over the batch (stride 0)
  Tensor q = core::softmax(core::matmul(x, w), -1);
  profiler::Report report = profiler::stop();

  CHECK(names_of(report) ==
        std::vector<std::string>{"matmul", "softmax", "matmul", "matmul", "softmax"});
  const profiler::OpRecord& mm = report.events[0];
  CHECK(mm.category == "matmul");
  CHECK(mm.device == Device::cpu());
  CHECK(mm.dtype == DType::f32);
  CHECK(mm.shapes == std::vector<Shape>{{4, 3}, {3, 5}, {4, 5}});
  CHECK(mm.flops == 2 * 4 * 5 * 3);
  CHECK(mm.bytes == (12 + 15 + 20) * 4);
  CHECK(mm.dur_us >= 0);
  CHECK(mm.start_us >= 0);

  const profiler::OpRecord& sm = report.events[1];
  CHECK(sm.shapes == std::vector<Shape>{{4, 5}, {4, 5}});
  CHECK(sm.flops == -1);
  CHECK(sm.bytes == 2 * 20 * 4);
  CHECK(sm.start_us >= mm.start_us + mm.dur_us);  // in order, not overlapping

  const profiler::OpRecord& bmm = report.events[2];
  CHECK(bmm.shapes == std::vector<Shape>{{2, 4, 3}, {2, 3, 5}, {2, 4, 5}});
  CHECK(bmm.flops == 2 * 2 * 4 * 5 * 3);
  CHECK(bmm.bytes == (24 + 15 + 40) * 4);  // the broadcast w is read once

  const profiler::OpSummary* matmul = find_op(report, "matmul");
  const profiler::OpSummary* softmax = find_op(report, "softmax");
  REQUIRE(matmul != nullptr);
  REQUIRE(softmax != nullptr);
  CHECK(matmul->calls == 3);
  CHECK(softmax->calls == 2);
  CHECK(matmul->has_flops);
  CHECK_FALSE(softmax->has_flops);
  CHECK(matmul->flops == 2 * (2 * 4 * 5 * 3) + 2 * 2 * 4 * 5 * 3);
  CHECK(matmul->bytes == 2 * (12 + 15 + 20) * 4 + (24 + 15 + 40) * 4);
  CHECK(report.ops.size() == 2);
  CHECK(report.op_total_ms == doctest::Approx(matmul->total_ms + softmax->total_ms));
  CHECK(report.wall_ms >= report.op_total_ms);

  const std::string table = profiler::summary_table(report);
  CHECK(table.find("5 op calls") != std::string::npos);
  CHECK(table.find("TFLOP/s") != std::string::npos);
  CHECK(table.find("matmul") != std::string::npos);

  // Nothing is recorded once stopped.
  core::matmul(x, w);
  CHECK(profiler::stop().events.empty());
}

TEST_CASE("profiler: attention FLOPs count the visible query-key pairs") {
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    const int64_t B = 2, H = 4, Hkv = 2, Tq = 5, Tk = 7, D = 8, Dv = 6;
    Tensor q = randn({B, H, Tq, D}), k = randn({B, Hkv, Tk, D}), v = randn({B, Hkv, Tk, Dv});
    AttentionOptions options;
    options.causal = causal;
    profiler::start(quiet_options());
    auto fwd = core::attention(q, k, v, options);
    auto grads = core::attention_backward(q, k, v, options, fwd.out, fwd.lse, ones_like(fwd.out));
    profiler::Report report = profiler::stop();

    const int64_t pairs = causal ? causal_pairs(Tq, Tk) : Tq * Tk;
    const profiler::OpSummary* f = find_op(report, "attention");
    const profiler::OpSummary* b = find_op(report, "attention_backward");
    REQUIRE(f != nullptr);
    REQUIRE(b != nullptr);
    CHECK(f->calls == 1);
    CHECK(f->flops == 2 * B * H * pairs * (D + Dv));          // QK^T and PV
    CHECK(b->flops == 2 * B * H * pairs * (3 * D + 2 * Dv));  // 2.5x forward when Dv == D
  }
  CHECK(causal_pairs(5, 7) == 3 + 4 + 5 + 6 + 7);
}

TEST_CASE("profiler: the trace file is Chrome trace JSON with one event per op") {
  const std::string path = "test_profiler_trace.json";
  std::remove(path.c_str());
  Tensor x = core::reshape(arange(6, {DType::f32}), {2, 3});
  profiler::start(quiet_options(path));
  {
    profiler::ScopedRange range("step \"1\"");  // quotes must be escaped
    core::exp(x);
    core::add(x, x);
  }
  profiler::Report report = profiler::stop();
  CHECK(report.trace_path == path);
  CHECK(names_of(report) == std::vector<std::string>{"exp", "add", "step \"1\""});
  CHECK(report.events[2].category == "range");
  CHECK(report.ops.size() == 2);  // the range is not an op

  const std::string text = read_file(path);
  REQUIRE_FALSE(text.empty());
  CHECK(text.find("\"traceEvents\"") != std::string::npos);
#ifdef MNEMO_TEST_HAS_JSON
  const nlohmann::json trace = nlohmann::json::parse(text);  // throws if malformed
  int complete = 0;
  for (const auto& event : trace.at("traceEvents")) {
    if (event.at("ph") != "X") continue;
    ++complete;
    CHECK(event.at("ts").get<double>() >= 0);
    CHECK(event.at("dur").get<double>() >= 0);
    if (event.at("name") == "exp") {
      CHECK(event.at("args").at("shapes") == "(2,3) (2,3)");
      CHECK(event.at("args").at("dtype") == "f32");
      CHECK(event.at("args").at("bytes") == 48);
    }
  }
  CHECK(complete == 3);  // two ops and the range, all on the host
  CHECK(trace.at("traceEvents").back().at("name") == "step \"1\"");
#endif
  std::remove(path.c_str());
}

namespace {

class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override { return std::malloc(bytes); }
  void deallocate(void* p, size_t) override { std::free(p); }
};

// A device backend keeping its memory on the host; its copy and fill go through the CPU
// backend (nested calls the profiler must not record twice).
class HostBackedDevice final : public Backend {
 public:
  std::string_view name() const override { return "fake"; }
  Allocator* allocator(Device) override { return &allocator_; }
  void copy(const Tensor& src, const Tensor& dst) override {
    backend_for(Device::cpu()).copy(as_host(src), as_host(dst));
  }
  void fill(const Tensor& dst, double value) override {
    backend_for(Device::cpu()).fill(as_host(dst), value);
  }

 private:
  static Tensor as_host(const Tensor& t) {
    if (t.device().is_cpu()) return t;
    auto storage = std::make_shared<StorageImpl>(t.storage()->data(), t.storage()->nbytes(),
                                                 Device::cpu(), nullptr);
    return Tensor::view_of(storage, t.shape(), t.strides(), t.offset(), t.dtype());
  }
  HostAllocator allocator_;
};

// A timer whose op k (in start order) ran on the device from 1000 + 10 k us for k + 1 us.
class FakeTimer final : public profiler::DeviceTimer {
 public:
  int64_t start(Device device) override {
    CHECK(device == Device::cuda(0));
    return started++;
  }
  void stop(int64_t token) override { CHECK(token == started - 1); }
  Interval resolve(int64_t token) override {
    CHECK(token == resolved++);  // in start order, each once
    return {base_us + 1000 + 10 * double(token), double(token) + 1};
  }
  void push_range(std::string_view) override { ++depth; }
  void pop_range() override { --depth; }
  profiler::Peak measure_peak(Device) override { return {1.0, 0}; }

  double base_us = 0;
  int64_t started = 0, resolved = 0;
  int depth = 0;
};

}  // namespace

TEST_CASE("profiler: device ops take their time from the device timer, nested calls once") {
  HostBackedDevice device_backend;
  FakeTimer timer;
  Backend* previous = has_backend(DeviceType::cuda) ? &backend_for(Device::cuda(0)) : nullptr;
  register_backend(DeviceType::cuda, &device_backend);
  profiler::DeviceTimer* previous_timer = profiler::register_device_timer(DeviceType::cuda, &timer);
  const Device gpu = Device::cuda(0);

  Tensor host = arange(6, {DType::f32});
  profiler::start(quiet_options());
  timer.base_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
  Tensor on_device = core::to(host, gpu);                // copy_h2d (its CPU copy nested)
  Tensor filled = full({2, 3}, 2.0, {DType::f32, gpu});  // fill
  Tensor back = core::to(on_device, Device::cpu());      // copy_d2h
  CHECK(timer.depth == 0);                               // every range closed
  profiler::Report report = profiler::stop();
  // The timer's measured peak (1 GB/s) is the device's peak in the table.
  const std::string table = profiler::summary_table(report);

  register_backend(DeviceType::cuda, previous);
  profiler::register_device_timer(DeviceType::cuda, previous_timer);
  CHECK(back.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK(names_of(report) == std::vector<std::string>{"copy_h2d", "fill", "copy_d2h"});
  CHECK(timer.started == 3);
  CHECK(timer.resolved == 3);
  for (size_t k = 0; k < report.events.size(); ++k) {
    const profiler::OpRecord& e = report.events[k];
    CAPTURE(e.name);
    CHECK(e.device == gpu);
    CHECK(e.dur_us == doctest::Approx(double(k) + 1));  // the device's time, not the host's
    CHECK(e.start_us > 1000 + 10 * double(k) - 1);
  }
  CHECK(report.events[0].bytes == 2 * 6 * 4);
  const profiler::OpSummary* fill = find_op(report, "fill");
  REQUIRE(fill != nullptr);
  CHECK(fill->total_ms == doctest::Approx(0.002));
  CHECK(table.find("peak of cuda:0: 1.0 GB/s") != std::string::npos);
}
