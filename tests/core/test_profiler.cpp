// The op-level profiler (core/profiler.h): off, dispatch returns the real backend; on, every
// backend call is recorded once with its name, shapes, dtype, device, bytes and FLOPs (checked
// against counts written out here), the summary adds them up against the wall time and the
// step ranges' time, the trace parses back (nlohmann) with one event per op, the trace file
// goes where options_from_env says, the CPU's peak is measured, and device ops take their time
// from the device's timer (a fake timer and a fake device backend stand in for CUDA, so this
// runs in CPU-only builds).
#include <doctest/doctest.h>

#include <cmath>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "autograd/ops.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"
#include "core/ops/linalg.h"
#include "core/ops/view.h"
#include "core/profiler.h"
#include "support/host_device.h"
#include "support/scratch_dir.h"

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

// The fields of the summary table's row for `name` on `device` (split at spaces; "(no op
// running)" is one field), or none.
std::vector<std::string> table_row(const std::string& table, std::string_view name,
                                   std::string_view device = "cpu") {
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(std::string(name) + " ")) continue;
    std::istringstream words(line.substr(name.size()));
    std::vector<std::string> row{std::string(name)};
    for (std::string word; words >> word;) row.push_back(word);
    if (row.size() > 1 && row[1] == device) return row;
  }
  return {};
}
// Columns of a row.
enum Column {
  kName,
  kDevice,
  kCalls,
  kTotalMs,
  kPctWall,
  kPctSteps,
  kMeanUs,
  kGbps,
  kTflops,
  kPctPeak,
  kColumns
};

// Sets an environment variable for one scope and restores what it was.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The kind of the mnemo::Error f throws (REQUIREs that it throws one).
template <class F>
ErrorKind error_kind(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  FAIL("no mnemo::Error was thrown");
  return ErrorKind::internal;
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

TEST_CASE("profiler: the trace parses back as Chrome trace JSON with one event per op") {
  test::ScratchDir dir("mnemo_profiler_trace");
  const std::string path = (dir.path / "trace.json").string();
  Tensor x = core::reshape(arange(6, {DType::f32}), {2, 3});
  Tensor w = core::reshape(arange(12, {DType::f32}), {3, 4});
  profiler::start(quiet_options(path));
  {
    // Quotes, a newline and a byte that is not UTF-8: the JSON library escapes or replaces them.
    profiler::ScopedRange range("step \"1\"\n\xff");
    core::exp(x);
    core::matmul(x, w);
  }
  profiler::Report report = profiler::stop();
  CHECK(report.trace_path == path);
  REQUIRE(report.events.size() == 3);
  CHECK(names_of(report) == std::vector<std::string>{"exp", "matmul", "step \"1\"\n\xff"});
  CHECK(report.events[2].category == "range");
  CHECK(report.ops.size() == 2);  // the range is not an op

  const nlohmann::json trace = nlohmann::json::parse(read_file(path));  // throws if malformed
  CHECK(trace.at("displayTimeUnit") == "ms");
  std::vector<nlohmann::json> complete;
  for (const auto& event : trace.at("traceEvents")) {
    if (event.at("ph") == "X") complete.push_back(event);
  }
  REQUIRE(complete.size() == 3);  // two ops and the range, all on the host (pid 0)
  for (size_t i = 0; i < complete.size(); ++i) {
    const nlohmann::json& event = complete[i];
    const profiler::OpRecord& record = report.events[i];
    CAPTURE(i);
    CHECK(event.at("pid") == 0);
    CHECK(event.at("tid") == record.thread);
    // The trace keeps nanoseconds (three decimals of a microsecond): equal to half of that.
    CHECK(std::abs(event.at("ts").get<double>() - record.host_start_us) <= 5.001e-4);
    CHECK(std::abs(event.at("dur").get<double>() - record.host_dur_us) <= 5.001e-4);
    CHECK(event.at("dur").get<double>() >= 0);
  }
  CHECK(complete[0].at("name") == "exp");
  CHECK(complete[0].at("cat") == "unary");
  CHECK(complete[0].at("args") == nlohmann::json{{"device", "cpu"},
                                                 {"dtype", "f32"},
                                                 {"shapes", "(2,3) (2,3)"},
                                                 {"bytes", 48},
                                                 {"flops", -1}});
  CHECK(complete[1].at("name") == "matmul");
  CHECK(complete[1].at("args").at("shapes") == "(2,3) (3,4) (2,4)");
  CHECK(complete[1].at("args").at("bytes") == (6 + 12 + 8) * 4);
  CHECK(complete[1].at("args").at("flops") == 2 * 2 * 4 * 3);
  CHECK(complete[2].at("name") == "step \"1\"\n\xef\xbf\xbd");  // U+FFFD for the bad byte
  CHECK(complete[2].at("cat") == "range");
  CHECK_FALSE(complete[2].contains("args"));  // a range has no tensors
  CHECK(trace.at("traceEvents").at(0) ==
        nlohmann::json{
            {"ph", "M"}, {"name", "process_name"}, {"pid", 0}, {"args", {{"name", "mnemo host"}}}});
}

TEST_CASE("profiler: the trace goes to MNEMO_PROFILE_OUT, else the run directory, else here") {
  {
    ScopedEnv out("MNEMO_PROFILE_OUT", nullptr);
    CHECK(profiler::options_from_env().trace_path == "mnemo-profile.json");
    CHECK(profiler::options_from_env("runs/a").trace_path == "runs/a/profile.json");
  }
  {
    ScopedEnv out("MNEMO_PROFILE_OUT", "elsewhere/t.json");
    CHECK(profiler::options_from_env().trace_path == "elsewhere/t.json");
    CHECK(profiler::options_from_env("runs/a").trace_path == "elsewhere/t.json");
  }
  {
    ScopedEnv events("MNEMO_PROFILE_MAX_EVENTS", "12");
    CHECK(profiler::options_from_env().max_trace_events == 12);
  }
  {
    ScopedEnv events("MNEMO_PROFILE_MAX_EVENTS", "many");
    CHECK(error_kind([] { profiler::options_from_env(); }) == ErrorKind::input);
  }

  // The run directory need not exist yet (`mnemo train --out DIR` creates it later): stop()
  // creates it, and the table's last line gives the trace's absolute path.
  test::ScratchDir dir("mnemo_profiler_run_dir");
  const std::filesystem::path run = dir.path / "run" / "nested";
  ScopedEnv out("MNEMO_PROFILE_OUT", nullptr);
  profiler::Options options = profiler::options_from_env(run.string());
  options.print_summary = false;
  profiler::start(options);
  core::exp(arange(4, {DType::f32}));
  profiler::Report report = profiler::stop();
  CHECK(report.trace_path == (run / "profile.json").string());
  REQUIRE(std::filesystem::is_regular_file(run / "profile.json"));
  CHECK(nlohmann::json::parse(read_file((run / "profile.json").string())).contains("traceEvents"));
  const std::string table = profiler::summary_table(report);
  CHECK(table.ends_with("trace: " + (std::filesystem::absolute(run) / "profile.json").string() +
                        " (open it in https://ui.perfetto.dev)\n"));

  // A path that cannot be written is the user's to fix.
  const std::filesystem::path blocker = dir.path / "a_file";
  std::ofstream(blocker) << "x";
  profiler::start(quiet_options((blocker / "profile.json").string()));
  CHECK(error_kind([] { profiler::stop(); }) == ErrorKind::input);
}

TEST_CASE("profiler: the summary gives each op's share of the wall time and of the steps") {
  Tensor x = core::reshape(arange(64 * 64, {DType::f32}), {64, 64});
  const auto sleep = [] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); };
  profiler::start(quiet_options());
  core::exp(x);  // outside any step
  sleep();       // no op and no step: wall time only
  for (int step = 1; step <= 2; ++step) {
    profiler::ScopedRange range(fmt::format("step {}", step));
    core::matmul(x, x);
    {
      profiler::ScopedRange nested("step inner");  // nested: not a step of its own
      core::add(x, x);
    }
    profiler::ScopedRange other("eval");  // not a step
    sleep();                              // inside a step, no op running
  }
  profiler::Report report = profiler::stop();

  CHECK(report.steps == 2);
  CHECK(report.step_ms >= 60);
  CHECK(report.wall_ms >= report.step_ms + 30);
  const profiler::OpSummary* exp = find_op(report, "exp");
  const profiler::OpSummary* matmul = find_op(report, "matmul");
  const profiler::OpSummary* add = find_op(report, "add");
  REQUIRE(exp != nullptr);
  REQUIRE(matmul != nullptr);
  REQUIRE(add != nullptr);
  CHECK(exp->step_ms == 0);
  CHECK(matmul->step_ms == doctest::Approx(matmul->total_ms));
  CHECK(add->step_ms == doctest::Approx(add->total_ms));
  for (const profiler::OpRecord& e : report.events) {
    if (e.category != "range") CHECK(e.in_step == (e.name != "exp"));
  }

  // One thread ran the ops one after another: the union of their intervals is their sum.
  REQUIRE(report.busy.size() == 1);
  const profiler::DeviceBusy& cpu = report.busy[0];
  CHECK(cpu.device == Device::cpu());
  CHECK(cpu.busy_ms == doctest::Approx(report.op_total_ms));
  CHECK(cpu.step_busy_ms == doctest::Approx(matmul->total_ms + add->total_ms));
  CHECK(report.wall_ms - cpu.busy_ms >= 90);  // the three sleeps
  CHECK(report.step_ms - cpu.step_busy_ms >= 60);

  // The table shows the same numbers, rounded.
  const std::string table = profiler::summary_table(report);
  CHECK(table.find(fmt::format("2 steps took {:.3f} ms", report.step_ms)) != std::string::npos);
  const auto pct = [](double part, double whole) {
    return fmt::format("{:.1f}", 100 * part / whole);
  };
  const std::vector<std::string> mm = table_row(table, "matmul");
  REQUIRE(mm.size() == kColumns);
  CHECK(mm[kCalls] == "2");
  CHECK(mm[kPctWall] == pct(matmul->total_ms, report.wall_ms));
  CHECK(mm[kPctSteps] == pct(matmul->step_ms, report.step_ms));
  CHECK(table_row(table, "exp").at(kPctSteps) == "0.0");
  const std::vector<std::string> idle = table_row(table, "(no op running)");
  REQUIRE(idle.size() == kColumns);
  CHECK(idle[kTotalMs] == fmt::format("{:.3f}", report.wall_ms - cpu.busy_ms));
  CHECK(idle[kPctWall] == pct(report.wall_ms - cpu.busy_ms, report.wall_ms));
  CHECK(idle[kPctSteps] == pct(report.step_ms - cpu.step_busy_ms, report.step_ms));
  CHECK(idle[kPctPeak] == "-");

  // Without steps the column is blank.
  profiler::start(quiet_options());
  core::exp(x);
  const std::string no_steps = profiler::summary_table(profiler::stop());
  CHECK(no_steps.find("steps took") == std::string::npos);
  CHECK(table_row(no_steps, "exp").at(kPctSteps) == "-");
}

TEST_CASE("profiler: the CPU's peak is measured once and fills the % peak column") {
  // A thread count not measured yet in this process (ctest runs each case on its own), so
  // the measurement below runs inside the session and must record nothing.
  const int threads = num_threads();
  set_num_threads(threads == 1 ? 2 : 1);
  profiler::start(quiet_options());
  const auto start = std::chrono::steady_clock::now();
  const profiler::Peak peak = profiler::measure_cpu_peak();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const profiler::Report during = profiler::stop();
  CHECK(during.events.empty());
  CHECK(during.ops.empty());
  MESSAGE(fmt::format("CPU peak with {} threads: {:.1f} GB/s, {:.3f} TFLOP/s, measured in {:.2f} s",
                      num_threads(), peak.gbps, peak.tflops, seconds));
  CHECK(peak.gbps > 0.1);     // any machine copies faster than 100 MB/s
  CHECK(peak.tflops > 1e-4);  // and multiplies faster than 0.1 GFLOP/s
  CHECK(seconds < 5);         // "well under a second" on an idle machine; slack for a busy one
  const profiler::Peak again = profiler::measure_cpu_peak();
  CHECK(again.gbps == peak.gbps);  // cached: the same numbers, not a second run
  CHECK(again.tflops == peak.tflops);
  set_num_threads(threads);

  // The table judges matmul by TFLOP/s and the rest by GB/s against that peak ...
  Tensor x = core::reshape(arange(128 * 128, {DType::f32}), {128, 128});
  profiler::start(quiet_options());
  core::matmul(x, x);
  core::exp(x);
  profiler::Report report = profiler::stop();
  const profiler::Peak cpu = profiler::peak_of(Device::cpu());
  CHECK(cpu.gbps == profiler::measure_cpu_peak().gbps);
  const std::string table = profiler::summary_table(report);
  for (const char* name : {"matmul", "exp"}) {
    CAPTURE(name);
    const profiler::OpSummary* op = find_op(report, name);
    REQUIRE(op != nullptr);
    const std::vector<std::string> row = table_row(table, name);
    REQUIRE(row.size() == kColumns);
    const double seconds_op = op->total_ms / 1000;
    const double expected = op->has_flops ? 100 * double(op->flops) / seconds_op / 1e12 / cpu.tflops
                                          : 100 * double(op->bytes) / seconds_op / 1e9 / cpu.gbps;
    CHECK(row[kPctPeak] == fmt::format("{:.1f}", expected));
  }
  CHECK(table.find(fmt::format("peak of cpu: {:.1f} GB/s, {:.3f} TFLOP/s", cpu.gbps, cpu.tflops)) !=
        std::string::npos);

  // ... and a peak set by hand (or by MNEMO_PROFILE_PEAK_*) takes precedence.
  profiler::set_peak(DeviceType::cpu, {1000, 0});
  CHECK(profiler::peak_of(Device::cpu()).gbps == 1000);
  CHECK(profiler::peak_of(Device::cpu()).tflops == cpu.tflops);  // 0: still the measured one
  {
    ScopedEnv env("MNEMO_PROFILE_PEAK_TFLOPS", "2.5");
    CHECK(profiler::peak_of(Device::cpu()).tflops == 2.5);
  }
  profiler::set_peak(DeviceType::cpu, {});
  CHECK(profiler::peak_of(Device::cpu()).gbps == cpu.gbps);
}

namespace {

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
  test::FakeCudaDevice fake("fake");  // cuda:0 tensors in host memory (support/host_device.h)
  FakeTimer timer;
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
  // The device was busy 1 + 2 + 3 us, in three intervals that do not overlap.
  REQUIRE(report.busy.size() == 1);
  CHECK(report.busy[0].device == gpu);
  CHECK(report.busy[0].busy_ms == doctest::Approx(0.006));

  // In the trace each op shows twice: its dispatch on the host (pid 0) and its device
  // interval on the GPU's track (pid 1).
  const nlohmann::json trace = nlohmann::json::parse(profiler::trace_json(report));
  int host_events = 0, gpu_events = 0;
  for (const auto& event : trace.at("traceEvents")) {
    if (event.at("ph") == "M" && event.at("pid") == 1)
      CHECK(event.at("args").at("name") == "cuda:0");
    if (event.at("ph") != "X") continue;
    CHECK(event.at("args").at("device") == "cuda:0");
    if (event.at("pid") == 0) ++host_events;
    if (event.at("pid") == 1) {
      CHECK(event.at("dur").get<double>() == doctest::Approx(double(gpu_events) + 1));
      ++gpu_events;
    }
  }
  CHECK(host_events == 3);
  CHECK(gpu_events == 3);
}
