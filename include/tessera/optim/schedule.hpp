// Learning-rate schedules as closed forms of the step: linear warmup then cosine decay (the reference recipe's
// per-step schedule), and PyTorch's CosineAnnealingLR.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tessera/core/error.hpp"

namespace tessera::optim {

// lr(s) = base_lr·(s+1)/warmup_steps                                          for s < warmup_steps,
//         min_lr + (base_lr - min_lr)·½·(1 + cos(π·(s - warmup)/max(1, total_steps - warmup)))   afterwards,
// exactly the formula of timm_reference.py (s counts optimizer steps from 0). Past total_steps it stays at min_lr.
class CosineSchedule {
 public:
  CosineSchedule(double base_lr, int64_t total_steps, int64_t warmup_steps = 0, double min_lr = 0.0)
      : base_lr_(base_lr), min_lr_(min_lr), total_steps_(total_steps), warmup_steps_(warmup_steps) {
    TESSERA_CHECK(base_lr >= 0.0 && min_lr >= 0.0, "CosineSchedule: learning rates must be >= 0, got base_lr ",
                  base_lr, ", min_lr ", min_lr);
    TESSERA_CHECK(total_steps >= 0 && warmup_steps >= 0 && warmup_steps <= total_steps,
                  "CosineSchedule: need 0 <= warmup_steps <= total_steps, got warmup_steps ", warmup_steps,
                  ", total_steps ", total_steps);
  }

  double lr_at(int64_t step) const {
    TESSERA_CHECK(step >= 0, "CosineSchedule::lr_at: negative step ", step);
    if (step < warmup_steps_) return base_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_steps_);
    const int64_t s = std::min(step, total_steps_);
    const double progress =
        static_cast<double>(s - warmup_steps_) / static_cast<double>(std::max<int64_t>(1, total_steps_ - warmup_steps_));
    return min_lr_ + (base_lr_ - min_lr_) * 0.5 * (1.0 + std::cos(kPi * progress));
  }
  double operator()(int64_t step) const { return lr_at(step); }

  double base_lr() const { return base_lr_; }
  double min_lr() const { return min_lr_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t warmup_steps() const { return warmup_steps_; }

 private:
  static constexpr double kPi = 3.14159265358979323846;
  double base_lr_, min_lr_;
  int64_t total_steps_, warmup_steps_;
};

// torch.optim.lr_scheduler.CosineAnnealingLR(T_max, eta_min) in its closed form:
//   lr(e) = eta_min + (base_lr - eta_min)·(1 + cos(π·e / T_max)) / 2,
// e counting scheduler steps (epochs) from 0; like torch's closed form it is periodic beyond T_max.
class CosineAnnealingLR {
 public:
  CosineAnnealingLR(double base_lr, int64_t t_max, double eta_min = 0.0)
      : base_lr_(base_lr), eta_min_(eta_min), t_max_(t_max) {
    TESSERA_CHECK(t_max > 0, "CosineAnnealingLR: T_max must be positive, got ", t_max);
  }

  double lr_at(int64_t epoch) const {
    TESSERA_CHECK(epoch >= 0, "CosineAnnealingLR::lr_at: negative epoch ", epoch);
    return eta_min_ +
           (base_lr_ - eta_min_) * (1.0 + std::cos(kPi * static_cast<double>(epoch) / static_cast<double>(t_max_))) / 2.0;
  }
  double operator()(int64_t epoch) const { return lr_at(epoch); }

 private:
  static constexpr double kPi = 3.14159265358979323846;
  double base_lr_, eta_min_;
  int64_t t_max_;
};

}  // namespace tessera::optim
