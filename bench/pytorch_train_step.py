#!/usr/bin/env python3
"""One training step (forward, backward, AdamW) of the vit_cifar model in plain PyTorch, timed like
bench/vit_train_step: batch 128 of random 32x32 images, repeated, median images/s.

The model is timm's VisionTransformer written out in plain torch (same layers, same shapes, the same
fused scaled_dot_product_attention timm uses), so the work matches tessera's step exactly.

It needs only PyTorch (pip install torch); timm is not needed.

    python3 bench/pytorch_train_step.py --threads 1 2      # prints one line per thread setting
"""
import argparse
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as error:
    sys.exit(f"bench/pytorch_train_step.py needs PyTorch ({error}): install it with `pip install torch` "
             f"(into a virtual environment: python3 -m venv venv && venv/bin/pip install torch), then run it again")


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, img=32, patch=4, dim=192, depth=6, heads=3, mlp_ratio=2.0, classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (img // patch) ** 2 + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def time_steps(threads, batch, warmup, steps, inference):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ViT()
    images = torch.randn(batch, 3, 32, 32)
    labels = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        if inference:
            model.eval()
            with torch.inference_mode():
                model(images)
        else:
            model.train()
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10, as bench/vit_train_step)")
    parser.add_argument("--inference", action="store_true", help="time forward only (eval, inference_mode)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {'inference' if args.inference else 'training step'}, batch {args.batch}")
    for threads in args.threads:
        rate = time_steps(threads, args.batch, args.warmup, args.steps, args.inference)
        print(f"threads {threads}: median {rate:.1f} images/s")


if __name__ == "__main__":
    main()
