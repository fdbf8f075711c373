// All differentiable ops.
#pragma once

#include "tessera/ops/broadcast.hpp"
#include "tessera/ops/elementwise.hpp"
#include "tessera/ops/reduce.hpp"
#include "tessera/ops/reshape.hpp"
