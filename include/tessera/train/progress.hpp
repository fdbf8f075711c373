// Progress: a live one-line progress bar on a terminal, or plain periodic lines when output is a file or pipe.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>

namespace tessera::train {

struct ProgressState {
  int epoch = 0;            // 1-based
  int epochs = 0;            // 0 while unknown (a time-budgeted run before it has planned)
  int64_t step = 0;         // within the epoch, 1-based
  int64_t steps = 0;        // per epoch
  double loss = 0.0;        // running mean over the epoch so far
  double images_per_second = 0.0;
  double eta_seconds = 0.0; // for the whole run
};

inline std::string format_duration(double seconds) {
  const auto total = static_cast<int64_t>(seconds + 0.5);
  std::ostringstream os;
  if (total >= 3600) os << total / 3600 << ':' << std::setw(2) << std::setfill('0') << (total / 60) % 60;
  else os << total / 60;
  os << ':' << std::setw(2) << std::setfill('0') << total % 60;
  return os.str();
}

class Progress {
 public:
  // interactive: redraw one line with '\r' (a terminal); otherwise print a line every `plain_interval`.
  explicit Progress(std::ostream& out = std::cout, bool interactive = isatty(STDOUT_FILENO) != 0,
                    std::chrono::seconds plain_interval = std::chrono::seconds(30))
      : out_(out), interactive_(interactive), plain_interval_(plain_interval) {}

  void update(const ProgressState& s) {
    const auto now = std::chrono::steady_clock::now();
    if (interactive_) {
      if (now - last_draw_ < std::chrono::milliseconds(100) && s.step != s.steps) return;
      last_draw_ = now;
      constexpr int kWidth = 24;
      const int filled = s.steps > 0 ? static_cast<int>(kWidth * s.step / s.steps) : 0;
      out_ << "\r\033[K" << describe(s, std::string(static_cast<size_t>(filled), '#') +
                                            std::string(static_cast<size_t>(kWidth - filled), '.'))
           << std::flush;
      line_open_ = true;
    } else if (now - last_draw_ >= plain_interval_ || s.step == s.steps) {
      last_draw_ = now;
      out_ << describe(s, "") << '\n' << std::flush;
    }
  }

  // Ends the live line so that the next message starts on its own line.
  void message(const std::string& text) {
    if (line_open_) out_ << '\n';
    line_open_ = false;
    out_ << text << '\n' << std::flush;
  }

 private:
  static std::string describe(const ProgressState& s, const std::string& bar) {
    std::ostringstream os;
    os << "epoch " << s.epoch << '/';
    if (s.epochs > 0) os << s.epochs << ' ';
    else os << "? ";
    if (!bar.empty()) os << '[' << bar << "] ";
    os << "step " << s.step << '/' << s.steps << std::fixed << std::setprecision(4) << "  loss " << s.loss
       << std::setprecision(1) << "  " << s.images_per_second << " img/s  ETA "
       << (s.epochs > 0 ? format_duration(s.eta_seconds) : std::string("?"));
    return os.str();
  }

  std::ostream& out_;
  bool interactive_;
  std::chrono::seconds plain_interval_;
  std::chrono::steady_clock::time_point last_draw_{};
  bool line_open_ = false;
};

}  // namespace tessera::train
