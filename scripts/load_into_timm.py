#!/usr/bin/env python3
"""Loads a tessera ViT checkpoint into timm's VisionTransformer, strictly by name, and optionally checks its logits.

  python3 scripts/load_into_timm.py CHECKPOINT [--check EXPECTED] [--data DIR] [--save WEIGHTS]

CHECKPOINT is a file of io::save_checkpoint ("model.<timm name>" tensors, the ViTConfig JSON under the metadata key
"config"). The timm model is built from that config, field by field under timm's argument names (docs/architecture.md,
"Model options"); what timm lacks is mapped or refused:
  pos_embed "sincos"     timm has no fixed table: the model gets a learned pos_embed (pos_embed="learn") holding the
                         checkpoint's table, which computes the same function (timm would train it);
  global_pool "seqpool"  timm has no sequence pooling: refused;
  stem_channels, patch_kernel  a convolutional stem or overlapping patches: no VisionTransformer argument, but timm
                         has the layers: the model gets embed_layer=HybridEmbed(proj=False) around a ConvStem of the
                         same stages (docs/architecture.md, "Model options"), and patch_size 1 over its feature map;
  init_values 0          timm's None (no LayerScale); layer_norm_eps other than 1e-6: timm's LayerNorm with that eps.
--check EXPECTED: a safetensors file with "input" (B, C, H, W) and "logits" (B, classes) that tessera computed (eval
mode); prints the largest difference of timm's logits and fails above 1e-4 * max(1, |logit|).
--data DIR: the accuracy of the timm model on DIR/test (the CIFAR-10 image-folder layout, decoded by PIL, normalised
with the checkpoint's constants, no flips): compare it with `train_cifar10 --evaluate CHECKPOINT --no-eval-flip`.
--save WEIGHTS: writes the timm model's state_dict as a plain safetensors file (timm.create_model's
pretrained_cfg_overlay=dict(file=WEIGHTS) or load_state_dict read it).
Needs torch, timm and safetensors (pip install torch timm safetensors); --data also numpy and pillow.
"""
import argparse, functools, json, math, os, sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from timm.layers import LayerNorm
from timm.layers import HybridEmbed
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_hybrid import ConvStem

# ViTConfig fields that are timm arguments of the same name and meaning.
SAME = ["img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "mlp_ratio",
        "qkv_bias", "drop_rate", "pos_drop_rate", "attn_drop_rate", "proj_drop_rate", "drop_path_rate", "weight_init",
        "class_token", "global_pool", "fc_norm"]


def stem_embed_layer(config):
    """timm's layers computing tessera's convolutional stem or overlapping patch embedding (docs/architecture.md,
    "Model options"): a ConvStem of the stem's stages (3x3, padding 1, no bias, BatchNorm, ReLU) and a last stage
    without norm and activation that projects to embed_dim with the stride left over, inside HybridEmbed(proj=False).
    None for the plain patch embedding (timm's own PatchEmbed)."""
    channels = list(config.get("stem_channels") or [])
    strides = list(config.get("stem_strides") or [2] * len(channels))
    patch_size = config.get("patch_size", 16)
    stride = patch_size // math.prod(strides)
    kernel = config.get("patch_kernel", 0) or stride
    if not channels and kernel == patch_size:
        return None
    padding = -(-(kernel - stride) // 2)  # ceil((kernel - stride) / 2) on every side
    backbone = ConvStem(in_chans=config.get("in_chans", 3), depth=len(channels) + 1,
                        channels=(*channels, config["embed_dim"]), kernel_size=(*[3] * len(channels), kernel),
                        stride=(*strides, stride), padding=(*[1] * len(channels), padding))
    return functools.partial(HybridEmbed, backbone=backbone, proj=False)


def test_set_accuracy(model, root, mean, std):
    """Top-1 accuracy of `model` on root/test/<class>/<image> (classes in sorted order), 500 images a forward."""
    import numpy as np
    from PIL import Image

    folder = os.path.join(root, "test")
    if not os.path.isdir(folder):
        sys.exit(f"load_into_timm: --data: no folder '{folder}' (the CIFAR-10 image-folder layout)")
    images, labels = [], []
    for label, name in enumerate(sorted(os.listdir(folder))):
        for file in sorted(os.listdir(os.path.join(folder, name))):
            pixels = np.asarray(Image.open(os.path.join(folder, name, file)).convert("RGB"), np.float32) / 255
            images.append(((pixels - mean) / std).transpose(2, 0, 1))
            labels.append(label)
    x, y = torch.from_numpy(np.stack(images).astype(np.float32)), torch.tensor(labels)
    with torch.no_grad():
        correct = sum((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item() for i in range(0, len(y), 500))
    return 100.0 * correct / len(y), correct, len(y)


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
            pass  # the embedding as a whole, below
        else:
            sys.exit(f"load_into_timm: unknown ViTConfig field '{key}' in the checkpoint's config")
    embed_layer = stem_embed_layer(config)
    if embed_layer:
        kwargs["embed_layer"] = embed_layer
        kwargs["patch_size"] = 1  # HybridEmbed's tokens are the pixels of the stem's feature map
        notes.append("the convolutional stem / overlapping patch embedding loads as timm's ConvStem in HybridEmbed")
    if kwargs.get("global_pool") == "seqpool":
        sys.exit("load_into_timm: global_pool 'seqpool' (sequence pooling, attention_pool.*) has no timm equivalent")
    return kwargs, notes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--check", help="safetensors with 'input' and tessera's 'logits'")
    parser.add_argument("--data", help="CIFAR-10 image folder: print the timm model's test accuracy")
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
    shown = {k: v for k, v in kwargs.items() if k not in ("norm_layer", "embed_layer")}
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
    if args.data:
        import numpy as np

        classifier = json.loads(metadata.get("trainer", "{}")).get("classifier")
        if not classifier:
            sys.exit(f"load_into_timm: --data: '{args.checkpoint}' records no Normalize constants (not a Trainer's)")
        mean, std = (np.array(classifier[k], np.float32) for k in ("mean", "std"))
        percent, correct, total = test_set_accuracy(model, args.data, mean, std)
        print(f"test accuracy in timm: {percent:.2f}% ({correct} of {total}, no flips)")
    if args.save:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save)
        print("wrote", args.save)


if __name__ == "__main__":
    main()
