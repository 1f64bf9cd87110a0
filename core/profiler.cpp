// The profiler's session: collects op records, resolves device times, aggregates the
// summary, writes the Chrome trace and prints the table (core/profiler.h says what and why).
//
// One global Session guarded by a mutex. A CPU op's record is final when the op returns;
// a GPU op's record waits in `pending` until its DeviceTimer interval is read back, which
// happens in batches (when more than kMaxPending wait, the older half is resolved: those ops
// finished long ago, so this rarely waits) and at stop().
#include "core/profiler.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>

#include <fmt/ranges.h>

#include "core/error.h"

namespace mnemo::profiler {

std::atomic<bool> g_enabled{false};

namespace {

constexpr size_t kMaxPending = 8192;

double now_us() {
  using namespace std::chrono;
  return duration<double, std::micro>(steady_clock::now().time_since_epoch()).count();
}

std::array<std::atomic<DeviceTimer*>, kNumDeviceTypes>& timers() {
  static std::array<std::atomic<DeviceTimer*>, kNumDeviceTypes> table{};
  return table;
}

// Calls f on every registered timer (NVTX ranges are not tied to a device).
template <class F>
void for_each_timer(F&& f) {
  for (auto& t : timers()) {
    if (DeviceTimer* timer = t.load()) f(*timer);
  }
}

thread_local int t_depth = 0;  // recorded ops this thread is inside

int thread_number() {
  static std::atomic<int> next{0};
  thread_local int number = next++;
  return number;
}

struct Pending {
  OpRecord record;
  DeviceTimer* timer;
  int64_t token;
};

struct Session {
  Options options;
  double t0_us = 0;
  std::deque<Pending> pending;
  std::vector<OpRecord> events;
  int64_t dropped = 0;
  std::map<std::pair<std::string, std::string>, OpSummary> summary;  // (device, name)
};

std::mutex g_mutex;
std::unique_ptr<Session> g_session;  // guarded by g_mutex
std::map<DeviceType, Peak> g_peaks;  // set_peak; guarded by g_mutex

// Adds a finished record to the summary and (room permitting) to the trace.
void finish(Session& s, OpRecord record) {
  OpSummary& sum = s.summary[{record.device.str(), record.name}];
  sum.name = record.name;
  sum.device = record.device;
  sum.calls += 1;
  sum.total_ms += record.dur_us / 1000;
  sum.bytes += record.bytes;
  if (record.flops >= 0) {
    sum.flops += record.flops;
    sum.has_flops = true;
  }
  if (int64_t(s.events.size()) < s.options.max_trace_events) {
    s.events.push_back(std::move(record));
  } else {
    s.dropped += 1;
  }
}

// Reads back the device intervals of the oldest `count` pending records.
void resolve(Session& s, size_t count) {
  count = std::min(count, s.pending.size());
  for (size_t i = 0; i < count; ++i) {
    Pending p = std::move(s.pending.front());
    s.pending.pop_front();
    const DeviceTimer::Interval interval = p.timer->resolve(p.token);
    p.record.start_us = interval.start_us - s.t0_us;
    p.record.dur_us = interval.dur_us;
    finish(s, std::move(p.record));
  }
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  MNEMO_CHECK(*end == '\0' && value >= 0, "{}: expected a non-negative integer, got '{}'", name,
              text);
  return value;
}

double env_double(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  MNEMO_CHECK(*end == '\0' && value >= 0, "{}: expected a non-negative number, got '{}'", name,
              text);
  return value;
}

// The peak of each device that ran ops: set_peak, else the environment, else measured.
std::map<std::string, Peak> peaks_for(const Report& report) {
  std::map<std::string, Peak> peaks;
  const Peak env{env_double("MNEMO_PROFILE_PEAK_GBPS"), env_double("MNEMO_PROFILE_PEAK_TFLOPS")};
  for (const OpSummary& op : report.ops) {
    const std::string key = op.device.str();
    if (peaks.count(key)) continue;
    Peak peak = env;
    if (DeviceTimer* timer = timers()[size_t(op.device.type)].load();
        timer != nullptr && (peak.gbps == 0 || peak.tflops == 0)) {
      const Peak measured = timer->measure_peak(op.device);
      if (peak.gbps == 0) peak.gbps = measured.gbps;
      if (peak.tflops == 0) peak.tflops = measured.tflops;
    }
    {
      std::lock_guard lock(g_mutex);
      if (auto it = g_peaks.find(op.device.type); it != g_peaks.end()) {
        if (it->second.gbps > 0) peak.gbps = it->second.gbps;
        if (it->second.tflops > 0) peak.tflops = it->second.tflops;
      }
    }
    peaks[key] = peak;
  }
  return peaks;
}

std::string json_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", int(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string shapes_text(const std::vector<Shape>& shapes) {
  std::string out;
  for (const Shape& shape : shapes) {
    if (!out.empty()) out += ' ';
    out += fmt::format("({})", fmt::join(shape, ","));
  }
  return out;
}

// One "complete" trace event.
void append_event(std::string& out, const OpRecord& r, int pid, int tid, double ts, double dur) {
  out += fmt::format(
      "{{\"ph\":\"X\",\"name\":\"{}\",\"cat\":\"{}\",\"pid\":{},\"tid\":{},\"ts\":{:.3f},"
      "\"dur\":{:.3f},\"args\":{{\"device\":\"{}\",\"dtype\":\"{}\",\"shapes\":\"{}\","
      "\"bytes\":{},\"flops\":{}}}}},\n",
      json_escape(r.name), json_escape(r.category), pid, tid, ts, dur, r.device.str(), r.dtype,
      shapes_text(r.shapes), r.bytes, r.flops);
}

}  // namespace

Options options_from_env() {
  Options options;
  if (const char* out = std::getenv("MNEMO_PROFILE_OUT"); out != nullptr && *out != '\0') {
    options.trace_path = out;
  }
  options.max_trace_events = env_int("MNEMO_PROFILE_MAX_EVENTS", options.max_trace_events);
  return options;
}

void start(const Options& options) {
  MNEMO_CHECK(options.max_trace_events >= 0, "profiler: max_trace_events must be >= 0, got {}",
              options.max_trace_events);
  static const bool registered = std::atexit(detail::stop_at_exit) == 0;
  (void)registered;
  auto session = std::make_unique<Session>();
  session->options = options;
  session->t0_us = now_us();
  std::unique_ptr<Session> previous;
  {
    std::lock_guard lock(g_mutex);
    previous = std::move(g_session);
    g_session = std::move(session);
    g_enabled.store(true);
  }
  if (previous) resolve(*previous, previous->pending.size());  // frees its device markers
}

Report stop() {
  std::unique_ptr<Session> session;
  {
    std::lock_guard lock(g_mutex);
    g_enabled.store(false);
    session = std::move(g_session);
  }
  Report report;
  if (!session) return report;
  resolve(*session, session->pending.size());
  report.wall_ms = (now_us() - session->t0_us) / 1000;
  report.events = std::move(session->events);
  report.dropped_events = session->dropped;
  for (auto& [key, op] : session->summary) {
    report.op_total_ms += op.total_ms;
    report.ops.push_back(op);
  }
  std::stable_sort(report.ops.begin(), report.ops.end(),
                   [](const OpSummary& a, const OpSummary& b) { return a.total_ms > b.total_ms; });
  const Options& options = session->options;
  if (!options.trace_path.empty()) {
    std::ofstream file(options.trace_path, std::ios::binary | std::ios::trunc);
    MNEMO_CHECK(file.good(), "profiler: cannot write the trace to '{}'", options.trace_path);
    file << trace_json(report);
    file.close();
    MNEMO_CHECK(file.good(), "profiler: writing the trace to '{}' failed", options.trace_path);
    report.trace_path = options.trace_path;
  }
  if (options.print_summary) std::cerr << summary_table(report) << std::flush;
  return report;
}

void set_peak(DeviceType type, Peak peak) {
  std::lock_guard lock(g_mutex);
  g_peaks[type] = peak;
}

DeviceTimer* register_device_timer(DeviceType type, DeviceTimer* timer) {
  return timers().at(size_t(type)).exchange(timer);
}

std::string summary_table(const Report& report) {
  const std::map<std::string, Peak> peaks = peaks_for(report);
  int64_t calls = 0;
  for (const OpSummary& op : report.ops) calls += op.calls;
  std::string out =
      fmt::format("mnemo profile: {} op calls, {:.3f} ms of op time in {:.3f} ms wall{}\n", calls,
                  report.op_total_ms, report.wall_ms,
                  report.trace_path.empty() ? "" : "; trace: " + report.trace_path);
  out += fmt::format("{:<24} {:>8} {:>8} {:>11} {:>7} {:>10} {:>9} {:>9} {:>7}\n", "op", "device",
                     "calls", "total ms", "% time", "mean us", "GB/s", "TFLOP/s", "% peak");
  for (const OpSummary& op : report.ops) {
    const double seconds = op.total_ms / 1000;
    const double gbps = seconds > 0 ? double(op.bytes) / seconds / 1e9 : 0;
    const double tflops = seconds > 0 && op.has_flops ? double(op.flops) / seconds / 1e12 : 0;
    const Peak peak = peaks.at(op.device.str());
    // Ops with a FLOP formula (matmul, attention) are judged by compute, the rest by memory.
    double pct_peak = -1;
    if (op.has_flops && peak.tflops > 0) {
      pct_peak = 100 * tflops / peak.tflops;
    } else if (!op.has_flops && peak.gbps > 0) {
      pct_peak = 100 * gbps / peak.gbps;
    }
    out += fmt::format("{:<24} {:>8} {:>8} {:>11.3f} {:>7.1f} {:>10.1f} {:>9.1f} {:>9} {:>7}\n",
                       op.name, op.device.str(), op.calls, op.total_ms,
                       report.op_total_ms > 0 ? 100 * op.total_ms / report.op_total_ms : 0.0,
                       1000 * op.total_ms / double(op.calls), gbps,
                       op.has_flops ? fmt::format("{:.3f}", tflops) : std::string("-"),
                       pct_peak >= 0 ? fmt::format("{:.1f}", pct_peak) : std::string("-"));
  }
  for (const auto& [device, peak] : peaks) {
    if (peak.gbps > 0 || peak.tflops > 0) {
      out +=
          fmt::format("peak of {}: {:.1f} GB/s, {:.1f} TFLOP/s\n", device, peak.gbps, peak.tflops);
    }
  }
  if (report.dropped_events > 0) {
    out += fmt::format("(the trace kept the first {} ops; {} more are in this table only)\n",
                       report.events.size(), report.dropped_events);
  }
  return out;
}

// Process 0 is the host (one track per thread); process 1 + i is GPU i (one track: its
// stream). A GPU op appears twice: its dispatch on the host track, its execution on the GPU's.
std::string trace_json(const Report& report) {
  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  out += "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":0,\"args\":{\"name\":\"mnemo host\"}},\n";
  std::map<int, bool> threads;
  std::map<int, std::string> gpus;
  for (const OpRecord& r : report.events) {
    threads[r.thread] = true;
    if (!r.device.is_cpu()) gpus[1 + r.device.index] = r.device.str();
  }
  for (const auto& [tid, unused] : threads) {
    out += fmt::format(
        "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":0,\"tid\":{},\"args\":{{\"name\":"
        "\"thread {}\"}}}},\n",
        tid, tid);
  }
  for (const auto& [pid, name] : gpus) {
    out += fmt::format(
        "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{},\"args\":{{\"name\":\"{}\"}}}},\n",
        pid, name);
  }
  for (const OpRecord& r : report.events) {
    append_event(out, r, 0, r.thread, r.host_start_us, r.host_dur_us);
    if (!r.device.is_cpu()) append_event(out, r, 1 + r.device.index, 0, r.start_us, r.dur_us);
  }
  if (out.ends_with(",\n")) out.resize(out.size() - 2);  // JSON has no trailing comma
  out += "\n]}\n";
  return out;
}

ScopedRange::ScopedRange(std::string name) : name_(std::move(name)) {
  if (!enabled()) return;
  start_us_ = now_us();
  for_each_timer([&](DeviceTimer& t) { t.push_range(name_); });
}

ScopedRange::~ScopedRange() {
  if (start_us_ < 0) return;
  for_each_timer([&](DeviceTimer& t) { t.pop_range(); });
  const double end_us = now_us();
  std::lock_guard lock(g_mutex);
  if (!g_session) return;
  Session& s = *g_session;
  if (int64_t(s.events.size()) >= s.options.max_trace_events) return;
  OpRecord r;
  r.name = name_;
  r.category = "range";
  r.thread = thread_number();
  r.host_start_us = r.start_us = start_us_ - s.t0_us;
  r.host_dur_us = r.dur_us = end_us - start_us_;
  s.events.push_back(std::move(r));
}

namespace detail {

bool inside_op() {
  return t_depth > 0;
}

// The destructor undoes exactly this, so nothing here may throw after ++t_depth.
OpCall::OpCall(OpRecord record) : record_(std::move(record)) {
  record_.thread = thread_number();
  if (!record_.device.is_cpu()) timer_ = timers()[size_t(record_.device.type)].load();
  host_start_us_ = now_us();
  if (timer_ != nullptr) token_ = timer_->start(record_.device);
  for_each_timer([&](DeviceTimer& t) { t.push_range(record_.name); });
  ++t_depth;
}

OpCall::~OpCall() {
  --t_depth;
  try {
    if (timer_ != nullptr) timer_->stop(token_);
    const double host_end_us = now_us();
    for_each_timer([&](DeviceTimer& t) { t.pop_range(); });
    std::lock_guard lock(g_mutex);
    if (!g_session) return;  // stopped meanwhile (its token is never resolved)
    Session& s = *g_session;
    record_.host_start_us = host_start_us_ - s.t0_us;
    record_.host_dur_us = host_end_us - host_start_us_;
    if (timer_ == nullptr) {
      // CPU ops (and devices without a timer) are synchronous: the host interval is the op.
      record_.start_us = record_.host_start_us;
      record_.dur_us = record_.host_dur_us;
      finish(s, std::move(record_));
      return;
    }
    s.pending.push_back({std::move(record_), timer_, token_});
    if (s.pending.size() > kMaxPending) resolve(s, kMaxPending / 2);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mnemo: profiler: %s\n", e.what());
  }
}

void stop_at_exit() noexcept {
  try {
    stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mnemo: profiler: %s\n", e.what());
  }
}

}  // namespace detail

// MNEMO_PROFILE=1 starts a session before main (this file is linked whenever dispatch is).
namespace {
const bool g_started_from_env = [] {
  const char* flag = std::getenv("MNEMO_PROFILE");
  if (flag == nullptr || *flag == '\0' || std::string_view(flag) == "0") return false;
  try {
    start(options_from_env());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mnemo: profiler: %s\n", e.what());
    return false;
  }
  return true;
}();
}  // namespace

}  // namespace mnemo::profiler
