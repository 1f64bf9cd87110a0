// The profiler's session: collects op records, resolves device times, aggregates the
// summary and each device's busy time, and at stop() writes the Chrome trace and prints the
// table (core/profiler.h says what and why; the table and the JSON are made in
// core/profiler_report.cpp).
//
// One global Session guarded by a mutex. A CPU op's record is final when the op returns;
// a GPU op's record waits in `pending` until its DeviceTimer interval is read back, which
// happens in batches (when more than kMaxPending wait, the older half is resolved: those ops
// finished long ago, so this rarely waits) and at stop().
//
// Busy time: per device, the union of the finished ops' intervals, kept as a running total
// and the end of the last interval ("until"): an interval adds only its part after `until`.
// Step time: open step ranges are counted in one atomic; an op dispatched while it is
// non-zero is "in a step", and the outermost step range adds its duration to the session.
#include "core/profiler.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>

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

thread_local int t_depth = 0;      // recorded ops this thread is inside
std::atomic<int> g_open_steps{0};  // step ranges open now, on any thread

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

// The union of intervals that arrive in start order: `until` is the end of the union so far.
struct Union {
  double until_us = std::numeric_limits<double>::lowest();
  double total_us = 0;
  void add(double start_us, double end_us) {
    if (end_us <= until_us) return;
    total_us += end_us - std::max(start_us, until_us);
    until_us = end_us;
  }
};

struct Busy {
  Device device;
  Union all, in_steps;
};

struct Session {
  Options options;
  double t0_us = 0;
  std::deque<Pending> pending;
  std::vector<OpRecord> events;
  int64_t dropped = 0;
  std::map<std::pair<std::string, std::string>, OpSummary> summary;  // (device, name)
  std::map<std::string, Busy> busy;                                  // by device
  int64_t steps = 0;
  double step_us = 0;
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
  if (record.in_step) sum.step_ms += record.dur_us / 1000;
  sum.bytes += record.bytes;
  if (record.flops >= 0) {
    sum.flops += record.flops;
    sum.has_flops = true;
  }
  Busy& busy = s.busy[record.device.str()];
  busy.device = record.device;
  busy.all.add(record.start_us, record.start_us + record.dur_us);
  if (record.in_step) busy.in_steps.add(record.start_us, record.start_us + record.dur_us);
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

// Writes the trace to path, creating its directory if need be (`mnemo train --out DIR`
// starts profiling before the trainer creates DIR).
void write_trace_file(const std::string& path, const Report& report) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  MNEMO_CHECK(file.good(), "profiler: cannot write the trace to '{}'{}", path,
              error ? " (" + error.message() + ")" : std::string());
  write_trace(file, report);
  file.close();
  if (!file.good()) fail_system("profiler: writing the trace to '{}' failed", path);
}

}  // namespace

Options options_from_env(const std::string& run_dir) {
  Options options;
  if (const char* out = std::getenv("MNEMO_PROFILE_OUT"); out != nullptr && *out != '\0') {
    options.trace_path = out;
  } else if (!run_dir.empty()) {
    options.trace_path = (std::filesystem::path(run_dir) / kRunTraceFile).string();
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
  for (const auto& [key, busy] : session->busy) {
    report.busy.push_back({busy.device, busy.all.total_us / 1000, busy.in_steps.total_us / 1000});
  }
  report.steps = session->steps;
  report.step_ms = session->step_us / 1000;
  const Options& options = session->options;
  if (!options.trace_path.empty()) {
    write_trace_file(options.trace_path, report);
    report.trace_path = options.trace_path;
  }
  if (options.print_summary) std::cerr << summary_table(report) << std::flush;
  return report;
}

void set_peak(DeviceType type, Peak peak) {
  std::lock_guard lock(g_mutex);
  g_peaks[type] = peak;
}

Peak peak_of(Device device) {
  Peak peak;
  {
    std::lock_guard lock(g_mutex);
    if (auto it = g_peaks.find(device.type); it != g_peaks.end()) peak = it->second;
  }
  if (peak.gbps == 0) peak.gbps = env_double("MNEMO_PROFILE_PEAK_GBPS");
  if (peak.tflops == 0) peak.tflops = env_double("MNEMO_PROFILE_PEAK_TFLOPS");
  if (peak.gbps > 0 && peak.tflops > 0) return peak;
  Peak measured;
  if (device.is_cpu()) {
    measured = measure_cpu_peak();
  } else if (DeviceTimer* timer = timers()[size_t(device.type)].load()) {
    measured = timer->measure_peak(device);
  }
  if (peak.gbps == 0) peak.gbps = measured.gbps;
  if (peak.tflops == 0) peak.tflops = measured.tflops;
  return peak;
}

DeviceTimer* register_device_timer(DeviceType type, DeviceTimer* timer) {
  return timers().at(size_t(type)).exchange(timer);
}

ScopedRange::ScopedRange(std::string name) : name_(std::move(name)) {
  if (!enabled()) return;
  start_us_ = now_us();
  step_ = name_.starts_with(kStepRangePrefix);
  if (step_) outer_step_ = g_open_steps.fetch_add(1) == 0;
  for_each_timer([&](DeviceTimer& t) { t.push_range(name_); });
}

ScopedRange::~ScopedRange() {
  if (start_us_ < 0) return;
  for_each_timer([&](DeviceTimer& t) { t.pop_range(); });
  if (step_) g_open_steps.fetch_sub(1);
  const double end_us = now_us();
  std::lock_guard lock(g_mutex);
  if (!g_session) return;
  Session& s = *g_session;
  if (outer_step_) {
    s.steps += 1;
    s.step_us +=
        end_us - std::max(start_us_, s.t0_us);  // a session started mid-step counts its part
  }
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

Unrecorded::Unrecorded() {
  ++t_depth;
}
Unrecorded::~Unrecorded() {
  --t_depth;
}

// The destructor undoes exactly this, so nothing here may throw after ++t_depth.
OpCall::OpCall(OpRecord record) : record_(std::move(record)) {
  record_.thread = thread_number();
  record_.in_step = g_open_steps.load(std::memory_order_relaxed) > 0;
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
