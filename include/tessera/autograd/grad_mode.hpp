// Whether ops record the graph: on by default, off (per thread) inside a NoGradGuard.
#pragma once

namespace tessera::autograd {

namespace detail {
inline bool& grad_mode_flag() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

inline bool grad_mode_enabled() { return detail::grad_mode_flag(); }

}  // namespace tessera::autograd

namespace tessera {

// While alive, ops on this thread record no backward: for evaluation, optimizer updates, initialisation.
class NoGradGuard {
 public:
  NoGradGuard() : previous_(autograd::detail::grad_mode_flag()) { autograd::detail::grad_mode_flag() = false; }
  ~NoGradGuard() { autograd::detail::grad_mode_flag() = previous_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace tessera
