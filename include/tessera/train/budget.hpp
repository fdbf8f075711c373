// Sizing a training run to a time budget: from the measured cost of a step, an evaluation and a checkpoint, the
// number of optimizer steps that ends the whole run (start-up to exit) inside the budget.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"

namespace tessera::train {

// What a budgeted run knows when it plans, all in seconds.
struct BudgetInputs {
  double budget = 0.0;           // from the run's start to its exit
  double elapsed = 0.0;          // spent already (start-up, data loading, the steps measured)
  int64_t steps_done = 0;        // optimizer steps already taken
  double step = 0.0;             // one optimizer step, data wait included
  double evaluation = 0.0;       // one evaluation pass
  double checkpoint = 0.0;       // writing one checkpoint and the CSV
  int64_t steps_per_epoch = 1;
  int64_t eval_every = 1;        // an evaluation at every eval_every-th epoch end; 0: only at the end of the run
  double reserve_fraction = 0.015;  // of the budget, left unplanned for noise in the measured speed
  double exit_seconds = 1.0;        // the run's teardown after its last checkpoint
};

// The epoch ends strictly before the last step of a run of total_steps (the last one has its own evaluation and
// checkpoint), and how many of them evaluate.
struct EpochEnds {
  int64_t checkpoints = 0;
  int64_t evaluations = 0;
};

inline EpochEnds epoch_ends_before(int64_t total_steps, int64_t steps_done, int64_t steps_per_epoch,
                                   int64_t eval_every) {
  EpochEnds ends;
  if (total_steps <= 0) return ends;
  const int64_t first = steps_done / steps_per_epoch + 1;  // 1-based epoch whose end comes next
  const int64_t last = (total_steps - 1) / steps_per_epoch;
  ends.checkpoints = std::max<int64_t>(0, last - first + 1);
  if (eval_every > 0 && ends.checkpoints > 0)
    ends.evaluations = last / eval_every - (first - 1) / eval_every;
  return ends;
}

// Seconds the rest of a run of total_steps takes: the steps left, the epoch ends on the way, and the final
// evaluation and checkpoint.
inline double seconds_to_finish(const BudgetInputs& in, int64_t total_steps) {
  const EpochEnds ends = epoch_ends_before(total_steps, in.steps_done, in.steps_per_epoch, in.eval_every);
  return static_cast<double>(total_steps - in.steps_done) * in.step +
         static_cast<double>(ends.evaluations + 1) * in.evaluation +
         static_cast<double>(ends.checkpoints + 1) * in.checkpoint + in.exit_seconds;
}

// The largest total step count (at least steps_done) whose run fits in the budget less its reserve.
inline int64_t plan_total_steps(const BudgetInputs& in) {
  TESSERA_CHECK(in.budget > 0.0 && in.step > 0.0 && in.evaluation >= 0.0 && in.checkpoint >= 0.0 &&
                    in.steps_per_epoch >= 1 && in.eval_every >= 0,
                "plan_total_steps: need a positive budget and step time, got budget ", in.budget, " s, step ",
                in.step, " s");
  const double available = in.budget * (1.0 - in.reserve_fraction) - in.elapsed;
  int64_t low = in.steps_done;  // fits, or nothing does
  int64_t high = in.steps_done + static_cast<int64_t>(std::max(0.0, available) / in.step) + 1;  // does not fit
  while (high - low > 1) {
    const int64_t mid = low + (high - low) / 2;
    (seconds_to_finish(in, mid) <= available ? low : high) = mid;
  }
  return low;
}

// A re-plan's total step count: the largest run that fits the budget at the pace measured now, at least one step
// more than those taken (the run's last step brings its final evaluation), or `planned_total` unchanged when the
// difference is under half a percent of it (not worth a change of the schedule).
inline int64_t replanned_total_steps(const BudgetInputs& in, int64_t planned_total) {
  const int64_t total = std::max(plan_total_steps(in), in.steps_done + 1);
  const double change = std::abs(static_cast<double>(total - planned_total));
  return change >= std::max(1.0, 0.005 * static_cast<double>(planned_total)) ? total : planned_total;
}

// How many timed steps a re-plan's pace is measured over: at least an epoch and a tenth of the run. A shorter window
// follows a shared machine's noise rather than its drift (with one epoch of 10 s a 3-minute run's plan swung by up
// to 18% at every epoch end, zig-zagging the slope of the decay).
inline int64_t replan_window_steps(int64_t steps_per_epoch, int64_t planned_total) {
  return std::max(steps_per_epoch, planned_total / 10);
}

// The warmup of a budgeted run of total_steps planned at step planned_at: the recipe's, unless that is more than a
// fifth of the run; then a fifth of it, but never ending before the steps already taken (their learning rates were
// the recipe's warmup, which a shorter one continues from above).
inline int64_t budget_warmup_steps(int64_t recipe_warmup, int64_t total_steps, int64_t planned_at) {
  if (recipe_warmup <= total_steps / 5) return recipe_warmup;
  return std::min(recipe_warmup, std::min(total_steps, std::max(planned_at, total_steps / 5)));
}

// The plan a budgeted run makes after its first steps and revises at epoch ends from the pace since the last plan
// (a shared machine's speed drifts; replan_window_steps), re-laying the rest of the schedule over the new length
// (optim::WarmupDecaySchedule::continued, anchored where the re-plan happened). A resumed run reads it from the
// checkpoint and keeps it.
struct BudgetPlan {
  int64_t total_steps = 0;
  int64_t warmup_steps = 0;  // the recipe's warmup, shortened to a fifth of a run too short for it
  int64_t planned_at_step = 0;
  double step_seconds = 0.0;  // the pace the plan was made with (the first steps', then the last window's)
  double evaluation_seconds = 0.0;
  double checkpoint_seconds = 0.0;
  int64_t replans = 0;           // revisions that changed total_steps
  int64_t anchor_step = -1;      // the schedule's anchor (the last re-plan's step); -1: none, the warmup's end
  double anchor_progress = 0.0;  // the decay's progress there

  nlohmann::json to_json() const {
    nlohmann::json j = {{"total_steps", total_steps},
                        {"warmup_steps", warmup_steps},
                        {"planned_at_step", planned_at_step},
                        {"step_seconds", step_seconds},
                        {"evaluation_seconds", evaluation_seconds},
                        {"checkpoint_seconds", checkpoint_seconds}};
    if (replans > 0) {
      j["replans"] = replans;
      j["anchor_step"] = anchor_step;
      j["anchor_progress"] = anchor_progress;
    }
    return j;
  }
  static BudgetPlan from_json(const nlohmann::json& j) {
    TESSERA_CHECK(j.is_object() && j.contains("total_steps") && j.at("total_steps").is_number_integer() &&
                      j.at("total_steps").get<int64_t>() >= 1,
                  "BudgetPlan: expected an object with a positive integer total_steps, got ", j.dump().substr(0, 200));
    BudgetPlan plan;
    plan.total_steps = j.at("total_steps").get<int64_t>();
    plan.warmup_steps = j.value("warmup_steps", int64_t{0});
    TESSERA_CHECK(plan.warmup_steps >= 0 && plan.warmup_steps <= plan.total_steps,
                  "BudgetPlan: warmup_steps ", plan.warmup_steps, " is outside [0, total_steps = ", plan.total_steps,
                  "]");
    plan.planned_at_step = j.value("planned_at_step", int64_t{0});
    plan.step_seconds = j.value("step_seconds", 0.0);
    plan.evaluation_seconds = j.value("evaluation_seconds", 0.0);
    plan.checkpoint_seconds = j.value("checkpoint_seconds", 0.0);
    plan.replans = j.value("replans", int64_t{0});
    plan.anchor_step = j.value("anchor_step", int64_t{-1});
    plan.anchor_progress = j.value("anchor_progress", 0.0);
    TESSERA_CHECK(plan.replans >= 0 && plan.anchor_step <= plan.total_steps && plan.anchor_progress >= 0.0 &&
                      plan.anchor_progress <= 1.0,
                  "BudgetPlan: replans ", plan.replans, ", anchor_step ", plan.anchor_step, " and anchor_progress ",
                  plan.anchor_progress, " do not fit a run of ", plan.total_steps, " steps");
    return plan;
  }
};

}  // namespace tessera::train
