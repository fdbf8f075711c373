// The optimizers and their helpers: AdamW, parameter groups, gradient clipping, learning-rate schedules.
#pragma once

#include "tessera/optim/adamw.hpp"
#include "tessera/optim/clip.hpp"
#include "tessera/optim/param_groups.hpp"
#include "tessera/optim/schedule.hpp"
