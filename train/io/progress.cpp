// The terminal progress line (see progress.h).
#include "train/io/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace mnemo::io {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = int64_t(std::llround(std::min(seconds, 1e9)));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string format_count(double value) {
  if (!std::isfinite(value)) return "?";
  double a = std::fabs(value);
  if (a < 1e3) return fmt::format("{:.0f}", value);
  if (a < 1e6) return fmt::format("{:.1f}k", value / 1e3);
  if (a < 1e9) return fmt::format("{:.2f}M", value / 1e6);
  return fmt::format("{:.2f}G", value / 1e9);
}

Progress::Progress(int64_t total_steps, int64_t plain_every, FILE* out, Mode mode)
    : total_(std::max<int64_t>(total_steps, 0)),
      plain_every_(std::max<int64_t>(plain_every, 1)),
      out_(out),
      tty_(mode == Mode::tty || (mode == Mode::automatic && ::isatty(::fileno(out)))) {}

std::string Progress::line() const {
  int width = int(fmt::formatted_size("{}", total_));
  std::string text = fmt::format("step {:>{}}/{}", step_, width, total_);
  if (tty_ && total_ > 0) {
    constexpr int kBar = 24;
    double fraction = std::clamp(double(step_) / double(total_), 0.0, 1.0);
    int filled = int(fraction * kBar);
    text += fmt::format(" [{}{}] {:3.0f}%", std::string(filled, '#'),
                        std::string(kBar - filled, '.'), fraction * 100);
  }
  text += fmt::format("  loss {:.4f}  {} tok/s", loss_, format_count(tokens_per_s_));
  double elapsed = std::chrono::duration<double>(last_draw_ - start_).count();
  int64_t done = step_ - first_step_;
  if (done > 0 && step_ < total_) {
    text += "  ETA " + format_duration(elapsed / double(done) * double(total_ - step_));
  } else if (step_ >= total_ && total_ > 0) {
    text += "  done in " + format_duration(elapsed);
  }
  return text;
}

void Progress::draw() {
  last_draw_ = Clock::now();
  if (tty_) {
    std::fprintf(out_, "\r\033[K%s", line().c_str());
    line_open_ = true;
  } else {
    std::fprintf(out_, "%s\n", line().c_str());
  }
  std::fflush(out_);
  drawn_ = true;
}

void Progress::update(int64_t step, double loss, double tokens_per_s) {
  Clock::time_point now = Clock::now();
  if (!started_) {
    started_ = true;
    start_ = now;
    first_step_ = step;  // the ETA comes from the steps after this one
    last_draw_ = now - std::chrono::seconds(1);
  }
  step_ = step;
  loss_ = loss;
  tokens_per_s_ = tokens_per_s;
  drawn_ = false;
  bool last = step >= total_;
  if (tty_) {
    if (last || now - last_draw_ >= std::chrono::milliseconds(100)) draw();
  } else if (step % plain_every_ == 0 || last) {
    last_draw_ = now;
    draw();
  }
}

void Progress::message(std::string_view text) {
  if (tty_ && line_open_) std::fputs("\r\033[K", out_);
  std::fprintf(out_, "%.*s\n", int(text.size()), text.data());
  if (tty_ && line_open_) std::fprintf(out_, "%s", line().c_str());  // redraw below it
  std::fflush(out_);
}

void Progress::finish() {
  if (!started_) return;
  if (!drawn_) draw();  // e.g. stopped between two plain lines
  if (tty_ && line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fflush(out_);
  started_ = false;
}

}  // namespace mnemo::io
