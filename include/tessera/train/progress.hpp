// Progress: a live one-line progress bar on a terminal, fitted to its width, or plain periodic lines when output is
// a file or pipe.
#pragma once

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

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

// The width of the terminal on standard output (TIOCGWINSZ), else $COLUMNS, else 80.
inline int terminal_width() {
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  if (const char* columns = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long value = std::strtol(columns, &end, 10);
    if (end != columns && *end == '\0' && value > 0 && value <= 10000) return static_cast<int>(value);
  }
  return 80;
}

// The line of `s` in at most `max_chars` characters: "epoch 3/10 [#####.....] step 120/390  loss 1.2345  1234.5
// img/s  ETA 12:34" with a bar (when `with_bar`) of at most 24 characters, which shrinks, then goes; then the speed,
// the ETA and the loss go, in that order; what still does not fit is cut.
inline std::string progress_line(const ProgressState& s, int max_chars, bool with_bar = true) {
  std::ostringstream head, step, loss, speed, eta;
  head << "epoch " << s.epoch << '/';
  if (s.epochs > 0) head << s.epochs;
  else head << '?';
  step << "step " << s.step << '/' << s.steps;
  loss << std::fixed << std::setprecision(4) << "  loss " << s.loss;
  speed << std::fixed << std::setprecision(1) << "  " << s.images_per_second << " img/s";
  eta << "  ETA " << (s.epochs > 0 ? format_duration(s.eta_seconds) : std::string("?"));
  std::vector<std::string> tail = {loss.str(), speed.str(), eta.str()};  // in display order
  const auto text = [&](int bar_width) {
    std::string line = head.str() + ' ';
    if (bar_width > 0) {
      const int filled = s.steps > 0 ? static_cast<int>(bar_width * std::clamp<int64_t>(s.step, 0, s.steps) / s.steps)
                                     : 0;
      line += '[' + std::string(static_cast<size_t>(filled), '#') +
              std::string(static_cast<size_t>(bar_width - filled), '.') + "] ";
    }
    line += step.str();
    for (const auto& field : tail) line += field;
    return line;
  };
  constexpr int kBarWidth = 24, kMinBarWidth = 8;
  const int room = std::max(0, max_chars);
  const int without_bar = static_cast<int>(text(0).size());
  if (with_bar && without_bar + 3 + kMinBarWidth <= room) return text(std::min(kBarWidth, room - without_bar - 3));
  for (const size_t drop : {size_t{1}, size_t{2}, size_t{0}}) {  // speed, ETA, loss
    std::string line = text(0);
    if (static_cast<int>(line.size()) <= room) return line;
    tail[drop].clear();
  }
  std::string line = text(0);
  line.resize(std::min(line.size(), static_cast<size_t>(room)));
  return line;
}

class Progress {
 public:
  // interactive: redraw one line with '\r' (a terminal), never wider than `width` - 1 characters (0: the terminal's
  // width at each redraw, see terminal_width); otherwise print a line every `plain_interval`.
  explicit Progress(std::ostream& out = std::cout, bool interactive = isatty(STDOUT_FILENO) != 0,
                    std::chrono::seconds plain_interval = std::chrono::seconds(30), int width = 0)
      : out_(out), interactive_(interactive), plain_interval_(plain_interval), width_(width) {}

  void update(const ProgressState& s) {
    const auto now = std::chrono::steady_clock::now();
    if (interactive_) {
      if (now - last_draw_ < std::chrono::milliseconds(100) && s.step != s.steps) return;
      last_draw_ = now;
      // One character short of the width: a line that fills the last column wraps on some terminals.
      out_ << "\r\033[K" << progress_line(s, (width_ > 0 ? width_ : terminal_width()) - 1) << std::flush;
      line_open_ = true;
    } else if (now - last_draw_ >= plain_interval_ || s.step == s.steps) {
      last_draw_ = now;
      out_ << progress_line(s, 0x7fff, false) << '\n' << std::flush;  // a file or pipe: the whole line
    }
  }

  // Ends the live line so that the next message starts on its own line.
  void message(const std::string& text) {
    if (line_open_) out_ << '\n';
    line_open_ = false;
    out_ << text << '\n' << std::flush;
  }

 private:
  std::ostream& out_;
  bool interactive_;
  std::chrono::seconds plain_interval_;
  int width_;
  std::chrono::steady_clock::time_point last_draw_{};
  bool line_open_ = false;
};

}  // namespace tessera::train
