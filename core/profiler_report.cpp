// What a profiling session shows (core/profiler.h): the summary table on stderr and the
// Chrome trace file.
//
// The table. One row per (op, device), largest total first:
//   % wall   = the op's total time / the session's wall time (start() to stop());
//   % steps  = its time inside step ranges / the steps' wall time ("-" without steps);
//   GB/s     = (bytes read + written) / time;  TFLOP/s = FLOPs / time (ops with a formula);
//   % peak   = TFLOP/s against the device's compute peak for ops with a FLOP formula (matmul,
//              attention), GB/s against its copy bandwidth for the rest (peak_of).
// Then one "(no op running)" row per device: wall time minus the device's busy time (the
// union of its ops' intervals), the host work between ops that no op row shows. On one
// device the op rows and that row add up to 100% of the wall (for ops that do not overlap).
//
// The trace. Chrome's "traceEvents" format: process 0 is the host (one track per thread),
// process 1 + i is GPU i (one track: its stream); a GPU op appears twice, its dispatch on
// the host track and its execution on the GPU's. Every event is a nlohmann::json object
// dumped on its own line, so escaping is the library's and a trace of 200k ops never sits
// in memory twice; only the envelope `{"displayTimeUnit":"ms","traceEvents":[ ... ]}` is
// written here.
#include <cmath>
#include <filesystem>
#include <map>
#include <ostream>
#include <sstream>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/profiler.h"

namespace mnemo::profiler {

namespace {

using nlohmann::json;

std::string percent(double part, double whole) {
  return whole > 0 ? fmt::format("{:.1f}", 100 * part / whole) : std::string("-");
}

std::string shapes_text(const std::vector<Shape>& shapes) {
  std::string out;
  for (const Shape& shape : shapes) {
    if (!out.empty()) out += ' ';
    out += fmt::format("({})", fmt::join(shape, ","));
  }
  return out;
}

// Microseconds to the nanosecond: the trace's resolution, and shorter numbers.
double round_us(double us) {
  return std::round(us * 1000) / 1000;
}

// One "complete" event: an op (with its arguments) or a range.
json complete_event(const OpRecord& r, int pid, int tid, double ts, double dur) {
  json event = {{"ph", "X"},  {"name", r.name},     {"cat", r.category},   {"pid", pid},
                {"tid", tid}, {"ts", round_us(ts)}, {"dur", round_us(dur)}};
  if (r.category != "range") {
    event["args"] = {{"device", r.device.str()},
                     {"dtype", std::string(dtype_name(r.dtype))},
                     {"shapes", shapes_text(r.shapes)},
                     {"bytes", r.bytes},
                     {"flops", r.flops}};
  }
  return event;
}

json metadata_event(std::string_view what, int pid, int tid, std::string name) {
  json event = {{"ph", "M"}, {"name", what}, {"pid", pid}, {"args", {{"name", std::move(name)}}}};
  if (tid >= 0) event["tid"] = tid;
  return event;
}

}  // namespace

std::string summary_table(const Report& report) {
  std::map<std::string, Peak> peaks;  // of each device that ran ops
  for (const OpSummary& op : report.ops) {
    if (!peaks.count(op.device.str())) peaks[op.device.str()] = peak_of(op.device);
  }
  int64_t calls = 0;
  for (const OpSummary& op : report.ops) calls += op.calls;
  std::string out =
      fmt::format("mnemo profile: {} op calls, {:.3f} ms of op time in {:.3f} ms wall", calls,
                  report.op_total_ms, report.wall_ms);
  if (report.steps > 0) {
    out += fmt::format("; {} steps took {:.3f} ms ({}% of wall)", report.steps, report.step_ms,
                       percent(report.step_ms, report.wall_ms));
  }
  out += '\n';
  out += fmt::format("{:<24} {:>8} {:>8} {:>11} {:>7} {:>8} {:>10} {:>9} {:>9} {:>7}\n", "op",
                     "device", "calls", "total ms", "% wall", "% steps", "mean us", "GB/s",
                     "TFLOP/s", "% peak");
  for (const OpSummary& op : report.ops) {
    const double seconds = op.total_ms / 1000;
    const double gbps = seconds > 0 ? double(op.bytes) / seconds / 1e9 : 0;
    const double tflops = seconds > 0 && op.has_flops ? double(op.flops) / seconds / 1e12 : 0;
    const Peak peak = peaks.at(op.device.str());
    // Ops with a FLOP formula (matmul, attention) are judged by compute, the rest by memory.
    const std::string pct_peak =
        op.has_flops ? percent(tflops, peak.tflops) : percent(gbps, peak.gbps);
    out += fmt::format("{:<24} {:>8} {:>8} {:>11.3f} {:>7} {:>8} {:>10.1f} {:>9.1f} {:>9} {:>7}\n",
                       op.name, op.device.str(), op.calls, op.total_ms,
                       percent(op.total_ms, report.wall_ms), percent(op.step_ms, report.step_ms),
                       1000 * op.total_ms / double(op.calls), gbps,
                       op.has_flops ? fmt::format("{:.3f}", tflops) : std::string("-"), pct_peak);
  }
  for (const DeviceBusy& busy : report.busy) {
    const double idle_ms = std::max(0.0, report.wall_ms - busy.busy_ms);
    const double step_idle_ms = std::max(0.0, report.step_ms - busy.step_busy_ms);
    out += fmt::format("{:<24} {:>8} {:>8} {:>11.3f} {:>7} {:>8} {:>10} {:>9} {:>9} {:>7}\n",
                       "(no op running)", busy.device.str(), "-", idle_ms,
                       percent(idle_ms, report.wall_ms), percent(step_idle_ms, report.step_ms), "-",
                       "-", "-", "-");
  }
  if (!report.busy.empty()) {
    out +=
        "(no op running): wall time in which that device ran none of the ops above: host work\n"
        "  between ops (autograd bookkeeping, the optimizer's loop, data loading, allocation,\n"
        "  logging, the profiler's own records), or a GPU waiting for the host\n";
  }
  for (const auto& [device, peak] : peaks) {
    if (peak.gbps > 0 || peak.tflops > 0) {
      out +=
          fmt::format("peak of {}: {:.1f} GB/s, {:.3f} TFLOP/s\n", device, peak.gbps, peak.tflops);
    }
  }
  if (report.dropped_events > 0) {
    out += fmt::format("(the trace kept the first {} ops; {} more are in this table only)\n",
                       report.events.size(), report.dropped_events);
  }
  if (!report.trace_path.empty()) {
    std::error_code error;
    const std::filesystem::path absolute = std::filesystem::absolute(report.trace_path, error);
    out += fmt::format("trace: {} (open it in https://ui.perfetto.dev)\n",
                       error ? report.trace_path : absolute.lexically_normal().string());
  }
  return out;
}

void write_trace(std::ostream& out, const Report& report) {
  bool first = true;
  auto put = [&](const json& event) {
    out << (first ? "\n" : ",\n")
        << event.dump(-1, ' ', false, json::error_handler_t::replace);  // bad UTF-8 -> U+FFFD
    first = false;
  };
  out << R"({"displayTimeUnit":"ms","traceEvents":[)";
  put(metadata_event("process_name", 0, -1, "mnemo host"));
  std::map<int, bool> threads;
  std::map<int, std::string> gpus;
  for (const OpRecord& r : report.events) {
    threads[r.thread] = true;
    if (!r.device.is_cpu()) gpus[1 + r.device.index] = r.device.str();
  }
  for (const auto& [tid, unused] : threads) {
    put(metadata_event("thread_name", 0, tid, fmt::format("thread {}", tid)));
  }
  for (const auto& [pid, name] : gpus) put(metadata_event("process_name", pid, -1, name));
  for (const OpRecord& r : report.events) {
    put(complete_event(r, 0, r.thread, r.host_start_us, r.host_dur_us));
    if (!r.device.is_cpu()) put(complete_event(r, 1 + r.device.index, 0, r.start_us, r.dur_us));
  }
  out << "\n]}\n";
}

std::string trace_json(const Report& report) {
  std::ostringstream out;
  write_trace(out, report);
  return out.str();
}

}  // namespace mnemo::profiler
