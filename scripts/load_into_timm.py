#!/usr/bin/env python3
"""Loads a tessera ViT checkpoint into timm's VisionTransformer, strictly by name, and optionally checks its logits.

  python3 scripts/load_into_timm.py CHECKPOINT [--check EXPECTED] [--save WEIGHTS]

CHECKPOINT is a file of io::save_checkpoint ("model.<timm name>" tensors, the ViTConfig JSON under the metadata key
"config"). The timm model is built from that config, field by field under timm's argument names (docs/architecture.md,
"Model options"); what timm lacks is mapped or refused:
  pos_embed "sincos"     timm has no fixed table: the model gets a learned pos_embed (pos_embed="learn") holding the
                         checkpoint's table, which computes the same function (timm would train it);
  global_pool "seqpool"  timm has no sequence pooling: refused;
  stem_channels, patch_kernel  a convolutional stem or overlapping patches: refused (no VisionTransformer argument);
  init_values 0          timm's None (no LayerScale); layer_norm_eps other than 1e-6: timm's LayerNorm with that eps.
--check EXPECTED: a safetensors file with "input" (B, C, H, W) and "logits" (B, classes) that tessera computed (eval
mode); prints the largest difference of timm's logits and fails above 1e-4 * max(1, |logit|).
--save WEIGHTS: writes the timm model's state_dict as a plain safetensors file (timm.create_model's
pretrained_cfg_overlay=dict(file=WEIGHTS) or load_state_dict read it).
Needs torch, timm and safetensors (pip install torch timm safetensors).
"""
import argparse, functools, json, sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from timm.layers import LayerNorm
from timm.models.vision_transformer import VisionTransformer

# ViTConfig fields that are timm arguments of the same name and meaning.
SAME = ["img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "mlp_ratio",
        "qkv_bias", "drop_rate", "pos_drop_rate", "attn_drop_rate", "proj_drop_rate", "drop_path_rate", "weight_init",
        "class_token", "global_pool", "fc_norm"]


def timm_kwargs(config):
    kwargs, notes = {}, []
    for key, value in config.items():
        if key in SAME:
            kwargs[key] = value
        elif key == "init_values":
            kwargs[key] = value if value else None
        elif key == "layer_norm_eps":
            if value != 1e-6:
                kwargs["norm_layer"] = functools.partial(LayerNorm, eps=value)
        elif key == "pos_embed":
            if value == "sincos":
                kwargs[key] = "learn"
                notes.append("pos_embed 'sincos' loads as timm's learned pos_embed holding the fixed table")
            else:
                kwargs[key] = "none" if value in ("", "none") else value
        elif key in ("stem_channels", "stem_strides", "patch_kernel"):
            pass  # the plain patch embedding is checked below
        else:
            sys.exit(f"load_into_timm: unknown ViTConfig field '{key}' in the checkpoint's config")
    if config.get("stem_channels") or config.get("patch_kernel", 0) not in (0, config.get("patch_size", 16)):
        sys.exit("load_into_timm: a convolutional stem (stem_channels) or an overlapping patch embedding "
                 "(patch_kernel) has no timm VisionTransformer argument (timm has the layers, ConvStem in HybridEmbed, "
                 "but not as an option of this model)")
    if kwargs.get("global_pool") == "seqpool":
        sys.exit("load_into_timm: global_pool 'seqpool' (sequence pooling, attention_pool.*) has no timm equivalent")
    return kwargs, notes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--check", help="safetensors with 'input' and tessera's 'logits'")
    parser.add_argument("--save", help="write the timm model's state_dict here")
    args = parser.parse_args()

    with safe_open(args.checkpoint, "pt") as f:
        metadata = f.metadata() or {}
        if "config" not in metadata:
            sys.exit(f"load_into_timm: '{args.checkpoint}' has no 'config' metadata (not a tessera checkpoint)")
        state = {k[len("model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
    if not state:
        sys.exit(f"load_into_timm: '{args.checkpoint}' holds no 'model.' tensors")
    config = json.loads(metadata["config"])
    kwargs, notes = timm_kwargs(config)
    model = VisionTransformer(**{k: v for k, v in kwargs.items()})
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model.eval()
    shown = {k: v for k, v in kwargs.items() if k != "norm_layer"}
    print(f"loaded {len(state)} tensors into timm VisionTransformer({json.dumps(shown)}) strictly")
    for note in notes:
        print("note:", note)

    if args.check:
        with safe_open(args.check, "pt") as f:
            x, expected = f.get_tensor("input").float(), f.get_tensor("logits").float()
        with torch.no_grad():
            logits = model(x)
        error = ((logits - expected).abs() / expected.abs().clamp(min=1)).max().item()
        print(f"logits {tuple(logits.shape)}: max |timm - tessera| / max(1, |tessera|) = {error:.3g}")
        if not error <= 1e-4:
            sys.exit("load_into_timm: timm's logits differ from tessera's")
    if args.save:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save)
        print("wrote", args.save)


if __name__ == "__main__":
    main()
