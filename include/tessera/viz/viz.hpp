// Attention pictures: attention maps (the class token's, or the mean attention each patch receives for pooled
// models), attention rollout, colour maps, heatmap and head-grid PNGs with titles and colour bars (a 5x7 bitmap font),
// and the same straight from a VisionTransformer.
#pragma once

#include "tessera/viz/attention_maps.hpp"
#include "tessera/viz/colormap.hpp"
#include "tessera/viz/heatmap.hpp"
#include "tessera/viz/model_attention.hpp"
#include "tessera/viz/png.hpp"
#include "tessera/viz/rollout.hpp"
#include "tessera/viz/text.hpp"
