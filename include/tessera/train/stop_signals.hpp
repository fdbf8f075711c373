// StopOnSignals: while it lives, the first SIGINT or SIGTERM asks a training run to stop after the step under way
// (the Trainer then saves where it stands and returns); a second one ends the process at once, as it would have.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace tessera::train {

namespace detail {
inline std::atomic<int> signal_stop_request{0};  // constant-initialised: safe to touch from a signal handler
static_assert(std::atomic<int>::is_always_lock_free, "the stop request is set from a signal handler");

inline void stop_signal_handler(int signal_number) {
  int none = 0;
  if (signal_stop_request.compare_exchange_strong(none, signal_number)) {
    // write() is async-signal-safe; iostreams and printf are not.
    const char* text = signal_number == SIGTERM
                           ? "\nSIGTERM: stopping after this step and saving a checkpoint (a second SIGTERM quits at "
                             "once)\n"
                           : "\nCtrl-C: stopping after this step and saving a checkpoint (press Ctrl-C again to quit "
                             "at once)\n";
    const ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
    (void)ignored;
    return;
  }
  // The second signal: the default action (termination), delivered as soon as this handler returns.
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  ::sigaction(signal_number, &action, nullptr);
  ::raise(signal_number);
}
}  // namespace detail

// The stop request that a Trainer checks between steps by default (TrainerOptions::stop_request): 0, or the number
// of the signal that asked to stop.
inline const std::atomic<int>& signal_stop_request() { return detail::signal_stop_request; }

// Usage: { train::StopOnSignals stop; trainer.fit(); if (trainer.interrupted()) ... } — installs the handlers of
// SIGINT and SIGTERM, clears the stop request, and puts the previous handlers back when it goes out of scope. A signal
// that the process inherited as ignored (nohup, a background job of a shell script) stays ignored.
class StopOnSignals {
 public:
  StopOnSignals() {
    detail::signal_stop_request.store(0);
    install(SIGINT, previous_interrupt_);
    install(SIGTERM, previous_terminate_);
  }
  ~StopOnSignals() {
    ::sigaction(SIGINT, &previous_interrupt_, nullptr);
    ::sigaction(SIGTERM, &previous_terminate_, nullptr);
    detail::signal_stop_request.store(0);
  }
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;

  // The signal that asked to stop, or 0.
  int signal() const { return detail::signal_stop_request.load(); }

 private:
  static void install(int signal_number, struct sigaction& previous) {
    ::sigaction(signal_number, nullptr, &previous);
    if (previous.sa_handler == SIG_IGN) return;
    struct sigaction action {};
    action.sa_handler = &detail::stop_signal_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // reads and waits interrupted by the first signal carry on
    ::sigaction(signal_number, &action, nullptr);
  }

  struct sigaction previous_interrupt_ {};
  struct sigaction previous_terminate_ {};
};

// "SIGINT", "SIGTERM", or "a stop request" for any other value (one a program or a test set), for messages.
inline const char* signal_name(int signal_number) {
  if (signal_number == SIGINT) return "SIGINT";
  if (signal_number == SIGTERM) return "SIGTERM";
  return "a stop request";
}

}  // namespace tessera::train
