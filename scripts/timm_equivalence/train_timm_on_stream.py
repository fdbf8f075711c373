"""Trains timm's VisionTransformer on exactly what tessera's trainer feeds one seed's run (record_stream's output):
tessera's initial weights, its decoded pixels, its sample order, crops and flips; torch.optim.AdamW with the reference
recipe's weight-decay groups, schedule and label smoothing. Only the arithmetic differs from tessera's run (PyTorch's
kernels in float32), so the final accuracy says whether tessera's implementation costs accuracy over a whole run.
Writes a train_cifar10-format CSV; prints the first losses to compare with tessera's (record_steps).
Usage: train_timm_on_stream.py STREAM_DIR OUT.csv [--threads N]  (a development check; needs torch, timm, safetensors)
"""
import argparse, time
import numpy as np, torch, torch.nn.functional as F
from safetensors.torch import load_file
from timm_recipe import MEAN, STD, adamw, lr_at, vit

ap = argparse.ArgumentParser()
ap.add_argument("stream"); ap.add_argument("csv"); ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)
d = args.stream
epochs, spe, batch_size = (int(v) for v in open(f"{d}/recipe.txt").read().split())
train = np.fromfile(f"{d}/train_u8.bin", np.uint8).reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2)
padded = np.zeros((len(train), 3, 40, 40), np.uint8); padded[:, :, 4:36, 4:36] = train
train_labels = np.fromfile(f"{d}/train_labels.i64", np.int64)
test = np.fromfile(f"{d}/test_u8.bin", np.uint8).reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2)
test_x = torch.from_numpy((test.astype(np.float32) / 255 - MEAN) / STD)
test_y = torch.from_numpy(np.fromfile(f"{d}/test_labels.i64", np.int64))
stream = np.fromfile(f"{d}/stream.i32", np.int32).reshape(epochs, spe, batch_size, 4)  # index, top, left, flip

m = vit()
m.load_state_dict(load_file(f"{d}/init.safetensors"), strict=True)
opt = adamw(m)

def make_batch(records):
    x = np.empty((len(records), 3, 32, 32), np.uint8)
    for i, (index, top, left, flip) in enumerate(records):
        crop = padded[index, :, top:top + 32, left:left + 32]
        x[i] = crop[:, :, ::-1] if flip else crop
    return torch.from_numpy((x.astype(np.float32) / 255 - MEAN) / STD), torch.from_numpy(train_labels[records[:, 0]])

csv = open(args.csv, "w"); csv.write("epoch,step,train_loss,test_acc,img_per_s,elapsed_s\n"); csv.flush()
start = time.time(); step = 0
for epoch in range(epochs):
    m.train(); loss_sum = 0.0; epoch_start = time.time()
    for k in range(spe):
        x, y = make_batch(stream[epoch, k])
        for g in opt.param_groups: g["lr"] = lr_at(step, spe, epochs)
        loss = F.cross_entropy(m(x), y, label_smoothing=0.1)
        opt.zero_grad(); loss.backward(); opt.step(); step += 1; loss_sum += loss.item()
        if step <= 3: print(f"step {step}: loss {loss.item():.8f}", flush=True)
        if k % 50 == 0: print(f"epoch {epoch + 1} step {k}/{spe} loss {loss.item():.4f}", flush=True)
    img_per_s = batch_size * spe / (time.time() - epoch_start)
    m.eval(); correct = 0
    with torch.no_grad():
        for i in range(0, len(test_y), 500): correct += (m(test_x[i:i + 500]).argmax(1) == test_y[i:i + 500]).sum().item()
    accuracy = 100 * correct / len(test_y)
    csv.write(f"{epoch + 1},{step},{loss_sum / spe:.6f},{accuracy:.2f},{img_per_s:.1f},{time.time() - start:.1f}\n"); csv.flush()
    print(f"epoch {epoch + 1}: train loss {loss_sum / spe:.4f}, test accuracy {accuracy:.2f}%", flush=True)
