// All differentiable ops.
#pragma once

#include "tessera/ops/activation.hpp"
#include "tessera/ops/attention.hpp"
#include "tessera/ops/batch_norm.hpp"
#include "tessera/ops/broadcast.hpp"
#include "tessera/ops/conv2d.hpp"
#include "tessera/ops/dropout.hpp"
#include "tessera/ops/elementwise.hpp"
#include "tessera/ops/layer_norm.hpp"
#include "tessera/ops/loss.hpp"
#include "tessera/ops/matmul.hpp"
#include "tessera/ops/patchify.hpp"
#include "tessera/ops/reduce.hpp"
#include "tessera/ops/reshape.hpp"
#include "tessera/ops/shape_ops.hpp"
#include "tessera/ops/tokens.hpp"
