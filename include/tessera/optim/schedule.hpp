// Learning-rate schedules as closed forms of the step: linear warmup then cosine or linear decay (the reference
// recipe's per-step schedule, and the one-cycle shape), and PyTorch's CosineAnnealingLR.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tessera/core/error.hpp"

namespace tessera::optim {

// How the learning rate falls from base_lr to min_lr after warmup, as a function of progress p in [0, 1]:
// cosine: ½·(1 + cos(π·p)) (the reference recipe); linear: 1 - p (with linear warmup, the one-cycle / triangular
// schedule of CIFAR speed runs).
enum class Decay { cosine, linear };

// lr(s) = base_lr·(s+1)/warmup_steps                                         for s < warmup_steps,
//         min_lr + (base_lr - min_lr)·decay((s - warmup)/max(1, total_steps - warmup))   afterwards,
// with the cosine decay exactly the formula of timm_reference.py (s counts optimizer steps from 0). Past
// total_steps it stays at min_lr.
//
// continued(step, total) re-lays the rest of the decay over another length (a time-budgeted run that re-plans):
// from `step` on, the progress goes on from where it stands there, straight to 1 at the new total_steps, so the
// learning rate has no jump and still ends at min_lr. A schedule holds one such anchor (anchor_step, its progress);
// before the anchor it gives the straight line from the warmup's end to it (the steps before a re-plan have been
// taken: only the learning rates from the anchor on are used).
class WarmupDecaySchedule {
 public:
  WarmupDecaySchedule(double base_lr, int64_t total_steps, int64_t warmup_steps = 0, double min_lr = 0.0,
                      Decay decay = Decay::cosine, int64_t anchor_step = -1, double anchor_progress = 0.0)
      : base_lr_(base_lr),
        min_lr_(min_lr),
        total_steps_(total_steps),
        warmup_steps_(warmup_steps),
        decay_(decay),
        anchor_step_(anchor_step < 0 ? warmup_steps : anchor_step),
        anchor_progress_(anchor_progress) {
    TESSERA_CHECK(base_lr >= 0.0 && min_lr >= 0.0, "WarmupDecaySchedule: learning rates must be >= 0, got base_lr ",
                  base_lr, ", min_lr ", min_lr);
    TESSERA_CHECK(total_steps >= 0 && warmup_steps >= 0 && warmup_steps <= total_steps,
                  "WarmupDecaySchedule: need 0 <= warmup_steps <= total_steps, got warmup_steps ", warmup_steps,
                  ", total_steps ", total_steps);
    TESSERA_CHECK(anchor_step_ >= warmup_steps_ && anchor_step_ <= total_steps_ && anchor_progress >= 0.0 &&
                      anchor_progress <= 1.0 && (anchor_step_ > warmup_steps_ || anchor_progress == 0.0),
                  "WarmupDecaySchedule: the anchor (step ", anchor_step_, ", progress ", anchor_progress,
                  ") must lie between the warmup's end (", warmup_steps_, ", progress 0) and total_steps (",
                  total_steps_, ")");
  }

  // How far the decay has gone at `step`: 0 until the warmup's end, 1 from total_steps on.
  double progress_at(int64_t step) const {
    const int64_t s = std::min(step, total_steps_);
    if (s <= warmup_steps_) return 0.0;  // also a run that is all warmup (total_steps == warmup_steps)
    if (s == total_steps_) return 1.0;
    if (s < anchor_step_)
      return anchor_progress_ * static_cast<double>(s - warmup_steps_) /
             static_cast<double>(anchor_step_ - warmup_steps_);
    // With no re-plan (anchor at the warmup's end, progress 0) this is (s - warmup) / (total - warmup) to the bit.
    return anchor_progress_ + (1.0 - anchor_progress_) * static_cast<double>(s - anchor_step_) /
                                  static_cast<double>(total_steps_ - anchor_step_);
  }

  double lr_at(int64_t step) const {
    TESSERA_CHECK(step >= 0, "WarmupDecaySchedule::lr_at: negative step ", step);
    if (step < warmup_steps_) return base_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_steps_);
    const double progress = progress_at(step);
    const double fraction = decay_ == Decay::cosine ? 0.5 * (1.0 + std::cos(kPi * progress)) : 1.0 - progress;
    return min_lr_ + (base_lr_ - min_lr_) * fraction;
  }
  double operator()(int64_t step) const { return lr_at(step); }

  // The same schedule up to `step`, then the rest of the decay laid over total_steps (at least `step`) instead.
  // During the warmup (step <= warmup_steps) nothing has decayed yet: the decay simply spans the new length.
  WarmupDecaySchedule continued(int64_t step, int64_t total_steps) const {
    TESSERA_CHECK(step >= 0 && total_steps >= step && total_steps >= warmup_steps_,
                  "WarmupDecaySchedule::continued: need 0 <= step <= total_steps and the warmup (", warmup_steps_,
                  " steps) inside them, got step ", step, ", total_steps ", total_steps);
    if (step <= warmup_steps_) return WarmupDecaySchedule(base_lr_, total_steps, warmup_steps_, min_lr_, decay_);
    return WarmupDecaySchedule(base_lr_, total_steps, warmup_steps_, min_lr_, decay_, step, progress_at(step));
  }

  double base_lr() const { return base_lr_; }
  double min_lr() const { return min_lr_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t warmup_steps() const { return warmup_steps_; }
  Decay decay() const { return decay_; }
  int64_t anchor_step() const { return anchor_step_; }
  double anchor_progress() const { return anchor_progress_; }

 private:
  static constexpr double kPi = 3.14159265358979323846;
  double base_lr_, min_lr_;
  int64_t total_steps_, warmup_steps_;
  Decay decay_;
  int64_t anchor_step_;
  double anchor_progress_;
};

// The reference recipe's name for it: with the default decay it is linear warmup, then cosine.
using CosineSchedule = WarmupDecaySchedule;

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
