// Data-parallel training: the communicator (MPI or the single-process stand-in), gradient buckets, parameter sync.
#pragma once

#include "tessera/distributed/communicator.hpp"
#include "tessera/distributed/gradient_buckets.hpp"
#include "tessera/distributed/parameters.hpp"
#include "tessera/distributed/single_process.hpp"
#include "tessera/distributed/world.hpp"
