// The op-level profiler: what every backend op cost, as a Chrome trace and a summary table.
//
// Turned on by MNEMO_PROFILE=1 in the environment (read once, at start-up), by `--profile` on
// any `mnemo` subcommand, or by profiler::start(). While it is on, backend_for() (core/
// backend.cpp) hands out a ProfilingBackend (core/profiling_backend.cpp) instead of the real
// backend: a decorator that forwards every Backend method unchanged and records one OpRecord
// per call: the op's name ("matmul", "exp", "add", "softmax", "copy_h2d" ...), its tensors'
// shapes, dtype and device, its time, the bytes it moves (every input and output tensor
// once; a stride-0 broadcast dimension counts once) and its FLOPs where a formula is known
// (matmul 2MNK; attention 2 (D + Dv) per visible query-key pair, the backward 2 (3D + 2Dv)).
// While it is off, backend_for returns the real backend: the only cost is one relaxed
// atomic load per dispatch.
//
// Time. On the CPU, a steady-clock interval around the call (ops are synchronous there). On
// a GPU the call only queues work, so a DeviceTimer registered by that backend (cuda/
// profiler_events.cpp: a pair of CUDA events on the device's stream) measures it; the events
// are read back later, in batches and at stop(), so profiling adds no synchronisation per op.
// The same DeviceTimer also opens an NVTX range around every op (CPU ops included), so
// Nsight Systems and Nsight Compute show op names. Calls made from inside a profiled op (the
// CUDA copy staging through the CPU copy) run unrecorded: each op's time is counted once.
//
// Steps. A ScopedRange whose name starts with "step " (kStepRangePrefix; the trainer opens
// "step 1", "step 2" ...) marks a training step: the summary reports each op's share of the
// steps' wall time beside its share of the whole session's.
//
// Output, at stop() or at process exit (whichever comes first):
//   - a Chrome trace ("traceEvents" JSON, written event by event with nlohmann::json; open in
//     https://ui.perfetto.dev or chrome://tracing) at Options::trace_path: one track per host
//     thread (the dispatch interval) and one per GPU (the device-side interval), each op
//     event carrying shapes, dtype, bytes and FLOPs;
//   - a summary on stderr (core/profiler_report.cpp): per op and device, calls, total ms, %
//     of the session's wall time, % of the steps' wall time, mean time, achieved GB/s and
//     TFLOP/s and % of the device's peak; then, per device, the wall time in which it ran no
//     op at all; then where the trace went.
// The peak of a device is MNEMO_PROFILE_PEAK_GBPS / MNEMO_PROFILE_PEAK_TFLOPS or set_peak()
// when given, else measured once per process: on the CPU a parallel copy and a matmul
// (measure_cpu_peak, core/profiler_cpu_peak.cpp), on a GPU the DeviceTimer's copy bandwidth.
// The trace keeps at most Options::max_trace_events events (MNEMO_PROFILE_MAX_EVENTS); the
// summary counts every op.
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"

namespace mnemo {
class Backend;
}

namespace mnemo::profiler {

// The trace's file name: in the current directory, or inside a command's run directory.
inline constexpr std::string_view kTraceFile = "mnemo-profile.json";
inline constexpr std::string_view kRunTraceFile = "profile.json";

struct Options {
  std::string trace_path{kTraceFile};  // "" writes no trace; missing directories are created
  bool print_summary = true;           // to stderr at stop()
  int64_t max_trace_events = 200'000;  // ops kept for the trace (~100 MB of JSON on a GPU)
};

// Options from the environment (MNEMO_PROFILE_OUT, MNEMO_PROFILE_MAX_EVENTS) for a command
// whose run directory is run_dir ("" = it has none). The trace goes to MNEMO_PROFILE_OUT when
// it is set, else to run_dir/profile.json, else to mnemo-profile.json in the current
// directory.
Options options_from_env(const std::string& run_dir = "");

// A ScopedRange named "step ..." is a training step (the summary's "% steps" column).
inline constexpr std::string_view kStepRangePrefix = "step ";

// One recorded op call. Times are microseconds since the profiler started.
struct OpRecord {
  std::string name;           // "matmul", "exp", "add", "sum", "softmax", "copy_h2d" ...
  std::string category;       // the Backend method family: "unary", "binary", "matmul" ...
  Device device;              // where it ran (the GPU side of a host-device copy)
  DType dtype = DType::f32;   // of its first tensor
  std::vector<Shape> shapes;  // its tensors, inputs first then outputs
  int thread = 0;             // host thread, numbered in order of first op
  double host_start_us = 0, host_dur_us = 0;  // the call on the host
  double start_us = 0, dur_us = 0;            // the op's own time: host interval on the CPU, device
                                              // interval on a GPU
  int64_t bytes = 0;                          // read + written
  int64_t flops = -1;                         // -1: no formula
  bool in_step = false;                       // dispatched while a step range was open
};

// Per (op, device) totals.
struct OpSummary {
  std::string name;
  Device device;
  int64_t calls = 0;
  double total_ms = 0;
  double step_ms = 0;  // of the calls made inside step ranges
  int64_t bytes = 0;
  int64_t flops = 0;  // of the calls with a formula
  bool has_flops = false;
};

// How long a device was running ops: the union of its ops' intervals (overlapping ops count
// once; exact for ops that reach the profiler in start order: one dispatching host thread,
// one GPU stream), over the whole session and inside step ranges. Wall time minus busy time
// is the time no op ran there.
struct DeviceBusy {
  Device device;
  double busy_ms = 0;
  double step_busy_ms = 0;
};

// What one profiling session produced.
struct Report {
  std::vector<OpRecord> events;  // in order of issue, at most max_trace_events
  int64_t dropped_events = 0;    // recorded in the summary but not kept for the trace
  std::vector<OpSummary> ops;    // sorted by total time, largest first
  std::vector<DeviceBusy> busy;  // one per device that ran ops, in Device::str() order
  double op_total_ms = 0;        // sum over ops
  double wall_ms = 0;            // start() to stop()
  int64_t steps = 0;             // step ranges closed (outermost ones)
  double step_ms = 0;            // their wall time
  std::string trace_path;        // as given in Options; "" if no trace was written
};

// The peak rates the summary compares against (0 = unknown).
struct Peak {
  double gbps = 0;
  double tflops = 0;
};

// Starts a session (ends a running one first, discarding it). Throws if options are bad.
void start(const Options& options = {});
// Ends the session: resolves pending device times, writes the trace, prints the summary (as
// the options say) and returns the report. An empty report when none is running.
Report stop();
// Whether a session is running. Inline so that dispatch pays one relaxed load.
extern std::atomic<bool> g_enabled;
inline bool enabled() {
  return g_enabled.load(std::memory_order_relaxed);
}

// The summary table and the trace JSON of a report (what stop() prints and writes;
// core/profiler_report.cpp).
std::string summary_table(const Report& report);
void write_trace(std::ostream& out, const Report& report);
std::string trace_json(const Report& report);

// Sets the peak used for a device type's "% of peak" (overrides a measured one; a zero
// field leaves that rate to the environment or the measurement).
void set_peak(DeviceType type, Peak peak);
// The peak the summary uses for `device`: set_peak, else MNEMO_PROFILE_PEAK_GBPS /
// MNEMO_PROFILE_PEAK_TFLOPS, else measured (measure_cpu_peak, or the DeviceTimer's
// measure_peak); 0 where none is known.
Peak peak_of(Device device);
// The CPU's peak with the current thread count, measured on the first call for that count
// and cached (core/profiler_cpu_peak.cpp): GB/s of a parallel copy of 128 MiB (bytes read +
// written, as the summary counts an op's bytes) and TFLOP/s of a 1024 x 1024 x 1024 f32
// matmul, each the best of a few runs; under a second in all.
Peak measure_cpu_peak();

// A named region (a training step, an evaluation) that shows in the trace and in Nsight;
// does nothing while the profiler is off. Not counted in the op summary.
class ScopedRange {
 public:
  explicit ScopedRange(std::string name);
  ~ScopedRange();
  ScopedRange(const ScopedRange&) = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;

 private:
  std::string name_;
  double start_us_ = -1;     // -1: profiler was off
  bool step_ = false;        // a step range (counted in the open steps)
  bool outer_step_ = false;  // the outermost open step range: its time counts as step time
};

// ---- hooks for device backends and for dispatch ----

// A device backend's timer: brackets an op with markers on the device's queue and reads the
// interval back later. Implementations must be thread-safe.
class DeviceTimer {
 public:
  virtual ~DeviceTimer() = default;
  // Places a start marker on device's queue; returns a token for stop() and resolve().
  virtual int64_t start(Device device) = 0;
  virtual void stop(int64_t token) = 0;
  // Waits for token's markers and returns the interval in microseconds on the host's
  // steady_clock scale (time_since_epoch). Tokens of one device are resolved in the order
  // they were started; each exactly once. Frees the token.
  struct Interval {
    double start_us = 0;
    double dur_us = 0;
  };
  virtual Interval resolve(int64_t token) = 0;
  // Annotation ranges for external tools (NVTX); nested, per host thread.
  virtual void push_range(std::string_view name) = 0;
  virtual void pop_range() = 0;
  // The device's peak rates if it can measure them cheaply (0 = unknown). Called at stop().
  virtual Peak measure_peak(Device /*device*/) { return {}; }
};
// Registers the timer of a device type (null unregisters) and returns the one it replaces.
// CPU ops use the steady clock.
DeviceTimer* register_device_timer(DeviceType type, DeviceTimer* timer);

// Used by backend_for while enabled(): the profiling decorator of `real` (one per backend,
// kept for the process's lifetime; `real` itself if it is already a decorator).
Backend& wrap(Backend& real);

}  // namespace mnemo::profiler

// ---- internals shared with the profiling decorator (core/profiling_backend.cpp) ----
namespace mnemo::profiler::detail {

// Whether this thread is inside a recorded op (its nested backend calls go unrecorded).
bool inside_op();

// Runs the ops of its scope unrecorded, as if inside a recorded op (the peak measurements).
class Unrecorded {
 public:
  Unrecorded();
  ~Unrecorded();
  Unrecorded(const Unrecorded&) = delete;
  Unrecorded& operator=(const Unrecorded&) = delete;
};

// Times one op call from construction to destruction and hands the record to the session.
// record: name, category, device, dtype, shapes, bytes and flops filled in by the caller.
class OpCall {
 public:
  explicit OpCall(OpRecord record);
  ~OpCall();
  OpCall(const OpCall&) = delete;
  OpCall& operator=(const OpCall&) = delete;

 private:
  OpRecord record_;
  DeviceTimer* timer_ = nullptr;  // null on the CPU
  int64_t token_ = 0;
  double host_start_us_ = 0;
};

// Called at process exit (registered by start(), and by device timers once their runtime is
// up, so that it runs before the runtime is torn down): stop() with errors printed, not thrown.
void stop_at_exit() noexcept;

}  // namespace mnemo::profiler::detail
