"""Evaluates a train_cifar10 checkpoint with timm: its weights in timm's VisionTransformer, the test images decoded by
PIL and normalised as the reference does. Its accuracy beside train_cifar10's own says whether tessera's evaluation
(stb_image decoding, forward pass, argmax) agrees with timm's.
Usage: eval_in_timm.py CHECKPOINT DATA_ROOT  (DATA_ROOT in the image-folder layout; needs torch, timm, safetensors, pillow)
"""
import os, sys
import numpy as np, torch
from PIL import Image
from safetensors.torch import load_file
from timm_recipe import MEAN, STD, vit

checkpoint, root = sys.argv[1], os.path.join(sys.argv[2], "test")
torch.set_num_threads(2)
m = vit()
m.load_state_dict({k[len("model."):]: v for k, v in load_file(checkpoint).items() if k.startswith("model.")}, strict=True)
m.eval()
images, labels = [], []
for label, name in enumerate(sorted(os.listdir(root))):
    for file in sorted(os.listdir(os.path.join(root, name))):
        pixels = np.asarray(Image.open(os.path.join(root, name, file)).convert("RGB"), np.float32)
        images.append(pixels.transpose(2, 0, 1) / 255); labels.append(label)
x = torch.from_numpy((np.stack(images) - MEAN) / STD); y = torch.tensor(labels)
with torch.no_grad():
    correct = sum((m(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item() for i in range(0, len(y), 500))
print(f"{checkpoint}: test accuracy in timm {100 * correct / len(y):.2f}% of {len(y)} images")
