"""A PyTorch mirror of imgclf's Fashion-MNIST recipe, to rank recipes on a GPU in minutes.

imgclf trains on the user's CPU: a 20-minute recipe trial on this project's
2-core machine takes 20 minutes, so only a handful fit in a working session.
This script mirrors the recipe closely enough to rank alternatives at the
image budget the CPU affords (the `epochs` of each config), many at once on
one GPU: the same architectures as src/imgclf/models/custom.py (Keras
he_normal initialisers, BatchNorm momentum 0.9 and epsilon 1e-3, dropout 0.2
head), AdamW with weight decay off BatchNorm and biases (epsilon 1e-7), the
`schedules.lr_at` cosine (3% warmup, 1% floor), label smoothing, `light`
augmentation (horizontal flip + RandomTranslation(0.1) with bilinear
sampling and black fill), bfloat16 autocast, and imgclf's validation split
(the indices of a run's manifest). Each config reports the best-validation
epoch's validation and test accuracy, plain, with flip TTA and with
flip-shift TTA (10 views, as `imgclf.inference.tta`), and with 18 and 26 views (adding
diagonal one-pixel and two-pixel shifts).

Config keys beyond the recipe's own (round3.json, round4.json): `interp`
(translation sampling, "bilinear" or "nearest" = whole pixels), `altflip`
(each image mirrored every other epoch, airbench-style), `whiten` ("train" or
"frozen": the stem's first 18 filters start as +/- 3x3 patch-whitening
filters), `opt` ("sgd": Nesterov, decoupled weight decay as Keras applies
it), `prog` ({"size", "frac"}: progressive resizing, the first `frac` of the
steps at `size` pixels), `eval_from` (evaluate only from this fraction of the
epochs on). PROXY_EVAL_N=200 evaluates on a few images (smoke tests on a CPU).

It is a proxy: it chose what to try on the CPU, the CPU run decides
(bench/RESULTS.md, issue 5, says how well the two agreed). Needs torch, which
imgclf does not depend on.

usage (data: Debian's dataset-fashion-mnist .gz files and val_idx.npy, the
validation indices, in FMNIST_DIR, default: beside this script):
    python recipe_proxy_torch.py round1.json results.jsonl --parallel 12 --deadline 510
    (make val_idx.npy from a run: the 5-digit file names of its manifest.csv rows with split val)
"""
import gzip
import json
import math
import multiprocessing as mp
import os
import sys
import time
import traceback

import numpy as np

HERE = os.environ.get("FMNIST_DIR", os.path.dirname(os.path.abspath(__file__)))


def load():
    def imgs(p):
        with gzip.open(p) as f:
            return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)

    def labs(p):
        with gzip.open(p) as f:
            return np.frombuffer(f.read(), np.uint8, offset=8)

    xtr = imgs(f"{HERE}/train-images-idx3-ubyte.gz"); ytr = labs(f"{HERE}/train-labels-idx1-ubyte.gz")
    xte = imgs(f"{HERE}/t10k-images-idx3-ubyte.gz"); yte = labs(f"{HERE}/t10k-labels-idx1-ubyte.gz")
    val = np.load(f"{HERE}/val_idx.npy")
    mask = np.zeros(len(xtr), bool); mask[val] = True
    return xtr[~mask], ytr[~mask], xtr[mask], ytr[mask], xte, yte


def lr_at(p, peak, warmup=0.03, floor=0.01):
    p = min(max(p, 0.0), 1.0)
    if warmup > 0 and p < warmup:
        return peak * (0.1 + 0.9 * p / warmup)
    q = (p - warmup) / max(1 - warmup, 1e-9)
    return peak * (floor + (1 - floor) * (1 + math.cos(math.pi * q)) / 2)


def build(cfg):
    import torch.nn as nn

    mom = 1 - cfg.get("bn", 0.9)

    def cbr(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-3, momentum=mom), nn.ReLU()]

    class Res(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.f = nn.Sequential(*cbr(w, w), *cbr(w, w))

        def forward(self, x):
            return x + self.f(x)

    kind = cfg["arch"]["kind"]; widths = cfg["arch"]["widths"]
    layers, c, size = [], 1, 28
    if kind == "cnn":
        for i, w in enumerate(widths):
            if i > 0 and size >= 4:
                layers.append(nn.MaxPool2d(2)); size //= 2
            layers += cbr(c, w) + cbr(w, w); c = w
    else:
        stem = cfg["arch"]["stem"]; nres = cfg["arch"].get("nres", 1)
        layers += cbr(1, stem); c = stem
        for w in widths:
            if size >= 4:
                layers.append(nn.MaxPool2d(2)); size //= 2
            layers += cbr(c, w); c = w
            layers += [Res(w) for _ in range(nres)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.get("dropout", 0.2)), nn.Linear(c, 10)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * 9
            nn.init.trunc_normal_(m.weight, std=math.sqrt(2 / fan_in) / 0.8796, a=-2 * math.sqrt(2 / fan_in) / 0.8796 , b=2 * math.sqrt(2 / fan_in) / 0.8796)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight); nn.init.zeros_(m.bias)
    return model


def augment(x, cfg, gen, flip=None):
    """x: (B,1,28,28) float in [0,1] on the GPU; flip: per-image booleans (alternating flips) or None (random)."""
    import torch
    import torch.nn.functional as F

    aug = cfg.get("aug", "light")
    b = x.shape[0]
    if aug == "none":
        return x
    if flip is None:
        flip = torch.rand(b, device=x.device, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if aug == "flip":
        return x
    t = cfg.get("translate", 0.1)
    if t > 0:
        shift = (torch.rand(b, 2, device=x.device, generator=gen) * 2 - 1) * t * 2  # normalised coords: 2 * fraction
        theta = torch.zeros(b, 2, 3, device=x.device)
        theta[:, 0, 0] = 1; theta[:, 1, 1] = 1; theta[:, :, 2] = shift
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        x = F.grid_sample(x, grid, mode=cfg.get("interp", "bilinear"), padding_mode="zeros", align_corners=False)
    if cfg.get("erase", 0) > 0:
        p = cfg["erase"]
        area = torch.empty(b, device=x.device).uniform_(0.02, 0.25, generator=gen) * 784
        logr = torch.empty(b, device=x.device).uniform_(math.log(0.3), math.log(3.3), generator=gen)
        h = torch.sqrt(area * torch.exp(logr)).clamp(1, 28); w = torch.sqrt(area / torch.exp(logr)).clamp(1, 28)
        y0 = torch.rand(b, device=x.device, generator=gen) * (28 - h); x0 = torch.rand(b, device=x.device, generator=gen) * (28 - w)
        ii = torch.arange(28, device=x.device).float()
        m = ((ii[None, :, None] >= y0[:, None, None]) & (ii[None, :, None] < (y0 + h)[:, None, None])
             & (ii[None, None, :] >= x0[:, None, None]) & (ii[None, None, :] < (x0 + w)[:, None, None]))
        m = m & (torch.rand(b, device=x.device, generator=gen) < p)[:, None, None]
        noise = torch.rand(x.shape, device=x.device, generator=gen)
        x = torch.where(m[:, None], noise, x)
    return x


def whiten_stem(model, xtr, cfg):
    """Initialise the stem conv's first filters as patch-whitening filters (airbench), +/- each eigenvector."""
    import torch
    import torch.nn.functional as F

    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    patches = F.unfold(xtr[:10000].float(), 3)  # (N, 9, L)
    patches = patches.transpose(1, 2).reshape(-1, 9)
    patches = patches - patches.mean(0)
    cov = patches.T @ patches / len(patches)
    evals, evecs = torch.linalg.eigh(cov)
    filt = (evecs / torch.sqrt(evals + cfg.get("whiten_eps", 5e-4))).T.reshape(9, 1, 3, 3)
    filt = torch.cat([filt, -filt])
    with torch.no_grad():
        w = conv.weight
        w[:18] = filt.to(w.dtype) * (w[18:].std() / filt.std())
    if cfg.get("whiten") == "frozen":
        conv.weight.requires_grad_(False)


def run_one(cfg, data, dev):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.get("seed", 0))
    gen = torch.Generator(device=dev); gen.manual_seed(cfg.get("seed", 0) + 1)
    xtr, ytr, xva, yva, xte, yte = data
    if os.environ.get("PROXY_EVAL_N"):  # smoke tests on a CPU: evaluate on a few images only
        k = int(os.environ["PROXY_EVAL_N"]); xva, yva, xte, yte = xva[:k], yva[:k], xte[:k], yte[:k]
    model = build(cfg).to(dev)
    if cfg.get("whiten"):
        whiten_stem(model, xtr, cfg)
    model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim == 1 else decay).append(p)
    lr = cfg.get("lr", 0.002)
    if cfg.get("opt") == "sgd":  # Keras SGD: Nesterov momentum 0.9, decoupled weight decay scaled by lr
        opt = torch.optim.SGD([{"params": decay, "weight_decay": 0}, {"params": no_decay, "weight_decay": 0}],
                              lr=lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.get("wd", 1e-4)}, {"params": no_decay, "weight_decay": 0}],
                                lr=lr, betas=(0.9, 0.999), eps=1e-7, fused=dev.type == "cuda")
    bs = cfg.get("bs", 64)
    n = len(xtr)
    steps_per_epoch = n // bs
    epochs = cfg["epochs"]
    total = int(round(epochs * steps_per_epoch))
    ls = cfg.get("ls", 0.1)
    ema = None
    if cfg.get("ema"):
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg["ema"]), use_buffers=True)

    def evaluate(m, x, y):
        """Accuracy plain, with flip TTA, and with 10 (imgclf's flip-shift), 18 and 26 views."""
        m.eval()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
            p = torch.cat([F.softmax(m(x[i:i + 2000]).float(), 1) for i in range(0, len(x), 2000)])
            pf = torch.cat([F.softmax(m(x[i:i + 2000].flip(3)).float(), 1) for i in range(0, len(x), 2000)])
            def view(dy, dx):
                t = 0
                for xx in (x, x.flip(3)):
                    sh = F.pad(xx, (2, 2, 2, 2))[:, :, 2 - dy:30 - dy, 2 - dx:30 - dx]
                    t = t + torch.cat([F.softmax(m(sh[i:i + 2000]).float(), 1) for i in range(0, len(x), 2000)])
                return t
            tot = p + pf
            for d in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                tot = tot + view(*d)
            tot18 = tot.clone()
            for d in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                tot18 = tot18 + view(*d)
            tot26 = tot18.clone()
            for d in ((2, 0), (-2, 0), (0, 2), (0, -2)):
                tot26 = tot26 + view(*d)
        m.train()
        acc = lambda q: (q.argmax(1) == y).float().mean().item()
        return {"": acc(p), "_flip": acc(p + pf), "_fs": acc(tot), "_fs18": acc(tot18), "_fs26": acc(tot26)}

    hist, step, t0 = [], 0, time.time()
    ep = 0
    flip0 = torch.rand(n, device=dev, generator=gen) < 0.5  # alternating flips: each image flips every other epoch
    while step < total:
        perm = torch.randperm(n, device=dev, generator=gen)
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * bs:(i + 1) * bs]
            flip = (flip0[idx] ^ bool(ep % 2)) if cfg.get("altflip") else None
            xb = augment(xtr[idx], cfg, gen, flip)
            prog = cfg.get("prog")  # progressive resizing: the first `frac` of the steps at `size` pixels
            if prog and step < prog["frac"] * total:
                xb = F.interpolate(xb, size=(prog["size"], prog["size"]), mode="bilinear", antialias=True, align_corners=False)
            xb = xb.contiguous(memory_format=torch.channels_last); yb = ytr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step / total, lr)
            if cfg.get("opt") == "sgd":
                with torch.no_grad():
                    for p_ in decay:
                        p_.mul_(1 - g["lr"] * cfg.get("wd", 5e-4))
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(xb).float(), yb, label_smoothing=ls)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
        ep += 1
        m = ema.module if ema is not None else model
        if ep < cfg.get("eval_from", 0.0) * epochs and step < total:
            continue  # the best epoch is a late one: skip early evaluations to save GPU time
        row = {"epoch": ep}
        for split, (x, y) in (("val", (xva, yva)), ("test", (xte, yte))):
            row.update({split + views: a for views, a in evaluate(m, x, y).items()})
        hist.append(row)
    best = max(hist, key=lambda h: h["val"])  # imgclf keeps the best validation checkpoint
    use_flip = best["val_flip"] > best["val"] and cfg.get("aug", "light") != "none"
    return {"cfg": cfg, "best_epoch": best["epoch"], "val": best["val"], "test": best["test"],
            "val_tta": best["val_flip"] if use_flip else best["val"], "test_tta": best["test_flip"] if use_flip else best["test"],
            "last": hist[-1], "secs": round(time.time() - t0, 1), "hist": hist}


def worker(q, outq):
    import torch

    torch.backends.cudnn.benchmark = True
    dev = torch.device(os.environ.get("DEV", "cuda"))
    arrs = load()
    data = []
    for i, a in enumerate(arrs):
        t = torch.tensor(np.array(a), device=dev)
        data.append(t.float().div(255).unsqueeze(1) if i % 2 == 0 else t.long())
    while True:
        cfg = q.get()
        if cfg is None:
            return
        try:
            outq.put(run_one(cfg, data, dev))
        except Exception:
            outq.put({"cfg": cfg, "error": traceback.format_exc()})


def main():
    configs = json.load(open(sys.argv[1])); out = sys.argv[2]
    par = int(sys.argv[sys.argv.index("--parallel") + 1]) if "--parallel" in sys.argv else 8
    deadline = float(sys.argv[sys.argv.index("--deadline") + 1]) if "--deadline" in sys.argv else 1e9
    ctx = mp.get_context("spawn")
    q, outq = ctx.Queue(), ctx.Queue()
    for c in configs:
        q.put(c)
    for _ in range(par):
        q.put(None)
    procs = [ctx.Process(target=worker, args=(q, outq), daemon=True) for _ in range(par)]
    for p in procs:
        p.start()
    t0 = time.time(); got = 0
    with open(out, "a") as f:
        while got < len(configs) and time.time() - t0 < deadline:
            try:
                r = outq.get(timeout=5)
            except Exception:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            got += 1
            f.write(json.dumps(r) + "\n"); f.flush()
            c = r["cfg"]
            if "error" in r:
                print("ERROR", c["name"], r["error"][-800:], flush=True)
            else:
                h = next(e for e in r['hist'] if e['epoch'] == r['best_epoch'])
                print(f"{time.time()-t0:6.0f}s {c['name']:28s} ep {c['epochs']:5.1f} best@{r['best_epoch']:2d} val {r['val']:.4f} test {r['test']:.4f} | "
                      f"fs10 val {h['val_fs']:.4f} test {h['test_fs']:.4f} | fs18 {h['val_fs18']:.4f} {h['test_fs18']:.4f} | fs26 {h['val_fs26']:.4f} {h['test_fs26']:.4f} ({r['secs']}s)", flush=True)
    for p in procs:
        p.kill()


if __name__ == "__main__":
    main()
