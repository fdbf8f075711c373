#!/usr/bin/env python3
"""Trains timm's VisionTransformer with the reference recipe on the CPU, for one or more seeds, and writes each
run as a train_cifar10-style CSV — to measure how far timm's own result moves from seed to seed on this data.

Usage: timm_reference_cpu.py DATA_ROOT OUT_DIR [--seeds 0 1 ...] [--epochs 10] [--threads 2]

DATA_ROOT is the image-folder tree (DATA_ROOT/{train,test}/<class>/*.jpg, the extracted shared archive).
Writes OUT_DIR/timm_cpu_seed<S>.csv with the header epoch,step,train_loss,test_acc,img_per_s,elapsed_s
(train_loss: mean over the epoch's steps), so scripts/plot_training_curve.py reads it, and a line per epoch
to stdout.

The recipe is the one in ../shared/reference/timm_reference.py (which ran it once, on a GPU with TF32): timm
VisionTransformer img 32, patch 4, dim 192, depth 6, heads 3, MLP ratio 2, qkv bias, timm's own init after
torch.manual_seed(seed); batch 128 with drop-last over a fresh randperm each epoch; AdamW lr 1e-3, betas
(0.9, 0.999), eps 1e-8, weight decay 0.05 on parameters of two or more dimensions except pos_embed and cls_token;
per-step linear warmup over the first epoch, then cosine to 1e-5; label smoothing 0.1; random 32x32 crop from
the image zero-padded by 4 and a horizontal flip with probability 0.5, then the CIFAR mean/std normalisation;
test images only normalised. Here everything runs in float32 on the CPU. A development tool: needs torch, timm,
numpy and pillow, never a dependency of the library.
"""
import argparse
import csv
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def decode(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def load_split(root, split):
    files, labels = [], []
    for label, name in enumerate(CLASSES):
        folder = os.path.join(root, split, name)
        if not os.path.isdir(folder):
            sys.exit(f"{folder}: missing; DATA_ROOT must hold {split}/<class>/*.jpg for the ten CIFAR-10 classes")
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png")))
        files += [os.path.join(folder, n) for n in names]
        labels += [label] * len(names)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        images = list(pool.map(decode, files, chunksize=500))
    return np.stack(images), np.array(labels)


def train_one_seed(seed, epochs, train, test, out_path, batch=128, lr=1e-3, wd=0.05, warmup_epochs=1,
                   min_lr=1e-5, label_smoothing=0.1):
    import torch
    import torch.nn.functional as F
    from timm.models.vision_transformer import VisionTransformer

    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x_train = torch.from_numpy(train[0]).permute(0, 3, 1, 2).float().div(255)  # (N, 3, 32, 32) in [0, 1]
    y_train = torch.from_numpy(train[1])
    x_test = (torch.from_numpy(test[0]).permute(0, 3, 1, 2).float().div(255) - mean) / std
    y_test = torch.from_numpy(test[1])

    torch.manual_seed(seed)
    model = VisionTransformer(img_size=32, patch_size=4, num_classes=10, embed_dim=192, depth=6, num_heads=3,
                              mlp_ratio=2.0, qkv_bias=True)

    def decays(name, p):
        return p.ndim >= 2 and "pos_embed" not in name and "cls_token" not in name

    params = list(model.named_parameters())
    optimizer = torch.optim.AdamW([{"params": [p for n, p in params if decays(n, p)], "weight_decay": wd},
                                   {"params": [p for n, p in params if not decays(n, p)], "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = len(x_train) // batch
    total_steps, warmup_steps = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch

    def lr_at(step):
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    def augment(images):  # random crop from the 4-padded image and a coin-flip mirror, then normalise
        padded = F.pad(images, (4, 4, 4, 4))
        offsets = torch.randint(0, 9, (len(images), 2))
        flips = torch.rand(len(images)) < 0.5
        crops = []
        for image, (oy, ox), flip in zip(padded, offsets.tolist(), flips.tolist()):
            crop = image[:, oy:oy + 32, ox:ox + 32]
            crops.append(crop.flip(2) if flip else crop)
        return (torch.stack(crops) - mean) / std

    with open(out_path, "w", newline="") as f:
        csv.writer(f).writerow(["epoch", "step", "train_loss", "test_acc", "img_per_s", "elapsed_s"])
    step, start = 0, time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))
        loss_sum, epoch_start = 0.0, time.time()
        for i in range(steps_per_epoch):
            index = order[i * batch:(i + 1) * batch]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = F.cross_entropy(model(augment(x_train[index])), y_train[index], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            step += 1
        images_per_s = steps_per_epoch * batch / (time.time() - epoch_start)
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(x_test), 1000):
                correct += (model(x_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum().item()
        accuracy = 100.0 * correct / len(x_test)
        elapsed = time.time() - start
        with open(out_path, "a", newline="") as f:
            csv.writer(f).writerow([epoch, step, f"{loss_sum / steps_per_epoch:.6f}", f"{accuracy:.2f}",
                                    f"{images_per_s:.1f}", f"{elapsed:.1f}"])
        print(f"seed {seed} epoch {epoch}/{epochs}: train loss {loss_sum / steps_per_epoch:.4f}, "
              f"test {accuracy:.2f}%, {images_per_s:.1f} img/s, {elapsed / 60:.1f} min", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root")
    parser.add_argument("out_dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import timm
    import torch

    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    print(f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} threads, seeds {args.seeds}",
          flush=True)
    t0 = time.time()
    train, test = load_split(args.data_root, "train"), load_split(args.data_root, "test")
    print(f"decoded {len(train[0])} train and {len(test[0])} test images in {time.time() - t0:.0f} s", flush=True)
    for seed in args.seeds:
        train_one_seed(seed, args.epochs, train, test, os.path.join(args.out_dir, f"timm_cpu_seed{seed}.csv"))


if __name__ == "__main__":
    main()
