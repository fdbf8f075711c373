"""Redoes in timm what record_steps recorded from tessera's trainer, and says where the two differ.

1. Augmentation: each recorded sample is matched against PIL's decoding of its file, zero-padded by 4, at all 81
   crop offsets and both flips; the best match must be within JPEG-decoder rounding, the offsets uniform over 0..8
   and about half the samples flipped, and the label the sample's folder.
2. Training: timm's VisionTransformer starts from tessera's starting weights (and AdamW state, when the steps continue
   a checkpoint) and takes the recorded steps on the recorded batches with torch.optim.AdamW and the recipe's
   weight-decay groups and schedule; the learning rates, the losses and every parameter afterwards must agree with
   tessera's to float32 rounding. The same steps without weight decay show how large a difference the check sees.
3. Trained model (when recorded): tessera's gradients on one batch are compared with timm's in float64, beside timm's
   own float32 error.
Usage: replay_in_timm.py OUT_DIR  (a development check; needs torch, timm, safetensors, numpy, pillow)
"""
import collections, math, sys
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from timm_recipe import MEAN, STD, adamw, lr_at, vit

out = sys.argv[1]
torch.set_num_threads(2)
X = np.fromfile(f"{out}/batches.f32", dtype=np.float32).reshape(-1, 128, 3, 32, 32)
Y = np.fromfile(f"{out}/labels.i64", dtype=np.int64).reshape(-1, 128)
samples = [line.rstrip("\n").split("\t") for line in open(f"{out}/samples.tsv")]
recorded = [line.split() for line in open(f"{out}/tessera_loss.txt")]
ours, our_lrs = [float(r[0]) for r in recorded], [float(r[1]) for r in recorded]
start = int(open(f"{out}/start_step.txt").read())
failures = []

# ---- 1. augmentation
images = X.reshape(-1, 3, 32, 32)
offsets = collections.Counter(); flips = 0; errors = []; wrong_labels = 0
for x, (path, class_name) in zip(images, samples):
    wrong_labels += path.split("/")[-2] != class_name
    padded = np.zeros((3, 40, 40), np.float32)
    padded[:, 4:36, 4:36] = np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    raw = x * STD + MEAN
    best = min((np.abs((padded[:, oy:oy + 32, ox:ox + 32][:, :, ::-1] if f else padded[:, oy:oy + 32, ox:ox + 32]) - raw).mean(),
                oy, ox, f) for oy in range(9) for ox in range(9) for f in (0, 1))
    errors.append(best[0] * 255); offsets[best[1]] += 1; offsets[best[2]] += 1; flips += best[3]
n = len(samples)
counts = [offsets[i] for i in range(9)]
chi2 = sum((c - 2 * n / 9) ** 2 / (2 * n / 9) for c in counts)
print(f"augmentation: {n} samples; best-match mean |difference| median {np.median(errors):.3f}, max {max(errors):.3f} "
      f"of 255; flipped {flips / n:.3f}; offsets 0..8 (rows and columns) {counts}, chi-square {chi2:.1f} (8 dof); "
      f"wrong labels {wrong_labels}")
if max(errors) > 1.0: failures.append("a sample matches no crop/flip of its file")
if wrong_labels: failures.append("labels differ from the folders")
if chi2 > 26.1 or abs(flips / n - 0.5) > 4 * 0.5 / math.sqrt(n): failures.append("offsets or flips not uniform")  # p < 0.001

# ---- 2. training steps
init = load_file(f"{out}/init.safetensors")
try:
    adam_state = load_file(f"{out}/optimizer.safetensors")
except FileNotFoundError:
    adam_state = None
lr_diff = max(abs(lr - lr_at(start + s)) / lr_at(start + s) for s, lr in enumerate(our_lrs))

def train_in_timm(weight_decay):
    m = vit(); m.load_state_dict(init, strict=True)
    opt = adamw(m, weight_decay)
    if adam_state is not None:
        for n, p in m.named_parameters():
            opt.state[p] = {"step": adam_state["step." + n].reshape(()).clone(), "exp_avg": adam_state["exp_avg." + n].clone(),
                            "exp_avg_sq": adam_state["exp_avg_sq." + n].clone()}
    m.train(); losses = []
    for s in range(steps):
        for g in opt.param_groups: g["lr"] = lr_at(start + s)
        loss = F.cross_entropy(m(torch.from_numpy(X[s])), torch.from_numpy(Y[s]), label_smoothing=0.1)
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    return m, losses

def differences(m):  # |tessera - timm| / |timm's change| of each parameter
    final = load_file(f"{out}/final.safetensors")
    rel = {}
    for name, p in m.named_parameters():
        moved = (p.detach().double() - init[name].double()).norm()
        rel[name] = ((final[name].double() - p.detach().double()).norm() / moved.clamp_min(1e-30)).item()
    return rel

steps = len(ours)
m, theirs = train_in_timm(0.05)
loss_diff = max(abs(a - b) for a, b in zip(ours, theirs))
rel = differences(m)
# The key bias gets no gradient in exact arithmetic (softmax ignores a per-row constant): both libraries step on
# rounding noise there, so it is reported apart.
key_bias = {k: v for k, v in rel.items() if k.endswith("qkv.bias")}
rest = {k: v for k, v in rel.items() if k not in key_bias}
worst = max(rest, key=rest.get)
no_decay = differences(train_in_timm(0.0)[0])
sensitivity = max(v for k, v in no_decay.items() if k in rest)
print(f"training: {steps} steps from step {start}{' (continuing the AdamW state)' if adam_state else ''}; learning "
      f"rates agree with the recipe to {lr_diff:.1e}; losses {ours[0]:.4f} -> {ours[-1]:.4f} (tessera), {theirs[0]:.4f} -> {theirs[-1]:.4f} "
      f"(timm), largest difference {loss_diff:.2e}; parameters after the steps: |tessera - timm| / |timm's change| "
      f"at most {rest[worst]:.2e} ({worst}), median {np.median(list(rest.values())):.2e}; qkv biases (key part "
      f"has no gradient) at most {max(key_bias.values()):.2e}; timm without weight decay would differ by up to "
      f"{sensitivity:.2e}")
if loss_diff > 1e-4 * steps ** 0.5: failures.append("losses differ")
if rest[worst] > 1e-3: failures.append(f"{worst} differs")
elif sensitivity < 10 * rest[worst]: failures.append("the steps are too few to tell whether weight decay is applied")
if lr_diff > 1e-6: failures.append("learning rates differ from the recipe's schedule")

# ---- 3. gradients of a trained model
try:
    t = load_file(f"{out}/trained_gradients.safetensors")
except FileNotFoundError:
    t = None
if t is not None:
    res = {}
    for dtype in (torch.float32, torch.float64):
        m = vit(); m.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("param.")}); m = m.to(dtype)
        m.train(); logits = m(torch.from_numpy(X[0]).to(dtype))
        F.cross_entropy(logits, torch.from_numpy(Y[0]), label_smoothing=0.1).backward()
        res[dtype] = {n: p.grad.double() for n, p in m.named_parameters()}
    exact, single = res[torch.float64], res[torch.float32]
    err = lambda g, n: ((g - exact[n]).norm() / exact[n].norm()).item()
    ratios = {n: err(t["grad." + n].double(), n) / max(err(single[n], n), 1e-12) for n in exact}
    ours_err = max(err(t["grad." + n].double(), n) for n in exact)
    print(f"trained model: gradient error against timm float64 at most {ours_err:.2e} (tessera), "
          f"{max(err(single[n], n) for n in exact):.2e} (timm float32); tessera/timm error ratio median "
          f"{np.median(list(ratios.values())):.2f}, max {max(ratios.values()):.2f}")
    if ours_err > 1e-4: failures.append("trained-model gradients differ")

print("FAIL: " + "; ".join(failures) if failures else "OK: tessera's trainer and timm agree to float32 rounding")
sys.exit(1 if failures else 0)
