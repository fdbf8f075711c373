"""The reference recipe on timm's side, shared by the equivalence scripts: the model, the normalisation, AdamW with
the weight-decay groups, and the learning-rate schedule (as in ../shared/reference/timm_reference.py)."""
import math
import numpy as np, torch
from timm.models.vision_transformer import VisionTransformer

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(3, 1, 1)  # broadcasts over CHW and NCHW
STD = np.array([0.2470, 0.2435, 0.2616], np.float32).reshape(3, 1, 1)


def vit():
    return VisionTransformer(img_size=32, patch_size=4, num_classes=10, embed_dim=192, depth=6, num_heads=3,
                             mlp_ratio=2.0, qkv_bias=True)


def adamw(model, weight_decay=0.05):
    """Decay on weights of rank >= 2 except pos_embed and cls_token; none on the rest."""
    decayed = lambda n, p: p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n
    named = list(model.named_parameters())
    return torch.optim.AdamW([{"params": [p for n, p in named if decayed(n, p)], "weight_decay": weight_decay},
                              {"params": [p for n, p in named if not decayed(n, p)], "weight_decay": 0.0}],
                             lr=1e-3, betas=(0.9, 0.999), eps=1e-8)


def lr_at(step, steps_per_epoch=390, epochs=10, lr=1e-3, min_lr=1e-5):
    """Linear warmup over the first epoch, per step, then cosine to min_lr."""
    warm, total = steps_per_epoch, epochs * steps_per_epoch
    if step < warm:
        return lr * (step + 1) / warm
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
