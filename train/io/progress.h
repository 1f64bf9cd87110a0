// Progress: the training progress line on the terminal.
//
// On a TTY it is one line redrawn in place ("\r" + clear-to-end-of-line), at most ~10 times a
// second, e.g.
//   step  120/1000 [###.....................]  12%  loss 3.2140  12.3k tok/s  ETA 1m23s
// When the output is not a TTY (a log file, CI) it prints a plain line every `plain_every`
// steps and at the last step, so logs stay readable. The rate (tokens/s) is the caller's;
// the ETA comes from the wall time per step since the first update (a resumed run starts
// counting at its first step, not at 0).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mnemo::io {

class Progress {
 public:
  enum class Mode { automatic, tty, plain };  // automatic: tty if isatty(out)

  Progress(int64_t total_steps, int64_t plain_every, FILE* out = stderr,
           Mode mode = Mode::automatic);
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(int64_t step, double loss, double tokens_per_s);
  // Prints a whole line (e.g. an eval result) without garbling the progress line.
  void message(std::string_view line);
  // Ends the progress line (TTY: draws the last state and a newline). Idempotent.
  void finish();

  bool is_tty() const { return tty_; }
  std::string line() const;  // the current status text, without "\r" or newline

 private:
  using Clock = std::chrono::steady_clock;
  void draw();

  int64_t total_;
  int64_t plain_every_;
  FILE* out_;
  bool tty_;
  bool started_ = false;
  bool drawn_ = true;       // the last update is on screen
  bool line_open_ = false;  // a TTY line is on screen without its newline
  int64_t first_step_ = 0, step_ = 0;
  double loss_ = 0, tokens_per_s_ = 0;
  Clock::time_point start_, last_draw_;
};

// "42s", "3m05s", "1h02m" (for ETAs); "?" for negative or non-finite seconds.
std::string format_duration(double seconds);
// "950", "12.3k", "1.25M" (for rates).
std::string format_count(double value);

}  // namespace mnemo::io
