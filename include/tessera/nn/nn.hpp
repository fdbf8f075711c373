// The layers and models: Module, Linear, LayerNorm, Dropout, Conv2d, BatchNorm2d, ConvStem, MultiHeadAttention, MLP,
// PatchEmbedding, LayerScale, TransformerBlock, VisionTransformer, ViTConfig, position embeddings and the initialisers.
#pragma once

#include "tessera/nn/attention.hpp"
#include "tessera/nn/batch_norm.hpp"
#include "tessera/nn/config.hpp"
#include "tessera/nn/conv2d.hpp"
#include "tessera/nn/conv_stem.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/layer_norm.hpp"
#include "tessera/nn/layer_scale.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/mlp.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/patch_embedding.hpp"
#include "tessera/nn/pos_embed.hpp"
#include "tessera/nn/transformer_block.hpp"
#include "tessera/nn/vision_transformer.hpp"
