// The whole public API of tessera in one include.
#pragma once

#include "tessera/core/error.hpp"
#include "tessera/core/memory_reuse.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/storage.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/core/threads.hpp"

#include "tessera/autograd/engine.hpp"
#include "tessera/autograd/grad_mode.hpp"
#include "tessera/autograd/node.hpp"

#include "tessera/ops/ops.hpp"

#include "tessera/nn/nn.hpp"

#include "tessera/optim/optim.hpp"

#include "tessera/distributed/distributed.hpp"

#include "tessera/data/auto_augment.hpp"
#include "tessera/data/cifar10.hpp"
#include "tessera/data/cifar10_fast.hpp"
#include "tessera/data/cutout.hpp"
#include "tessera/data/data_loader.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/image.hpp"
#include "tessera/data/image_folder.hpp"
#include "tessera/data/image_ops.hpp"
#include "tessera/data/mix.hpp"
#include "tessera/data/transforms.hpp"

#include "tessera/io/checkpoint.hpp"
#include "tessera/io/safetensors.hpp"

#include "tessera/viz/viz.hpp"

#include "tessera/train/csv_log.hpp"
#include "tessera/train/progress.hpp"
#include "tessera/train/step.hpp"
#include "tessera/train/subset.hpp"
#include "tessera/train/trainer.hpp"

#include "tessera/testing/gradcheck.hpp"
