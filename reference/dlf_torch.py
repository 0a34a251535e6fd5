#!/usr/bin/env python3
"""dlf's PyTorch twin: the DLF / Glow flow of package dlf, written independently in PyTorch.

It builds the same multi-scale model from the same configuration (package dlf's Config JSON, whose
keys are the reference implementation's flag names) with the same hierarchical parameter names
("level0.step3.dlt.part1.conv1.weight", ...), so that a dlf checkpoint loads here unchanged. The math
follows the reference notes (shared/reference/dlf-spec.md): NHWC tensors, Glow's squeeze order,
edge-bias convolutions, the invertible 1x1 conv (full or LU), the DLT with interleaved shift / raw
scale and the bounded log-scale alpha*tanh(r)+beta, Glow's actnorm and couplings, the split and top
priors, and the objective -D*ln(n_bins) + logdets + log-priors.

Modes:

  dlf_torch.py --check IN.safetensors [IN2 ...] --out OUT.safetensors [OUT2 ...]
      Each IN holds every model tensor, the preprocessed batch "input.x" [N,H,W,C] and, for a
      class-conditional model, the one-hot "input.cond" [N,classes]; its metadata "config" is the
      model's Config JSON. OUT receives, in IN's dtype: "objective" [N] (nats), "logdet" [N],
      "logprior" [N] and the latents "z0", ..., "z{L-1}" (the halves factored out at each split, then
      the top latent). Used by dlf's Go test TestPyTorchTwin. With the Config's "precision" "tf32"
      every convolution rounds its operands to TF32 first (round_tf32), as dlf's TF32 mode does;
      dlf/testdata/twin holds such outputs as golden vectors (TestPyTorchTwinGolden).

  dlf_torch.py --bench [--preset NAME | --config FILE] [--batch N] [--device cpu|cuda]
               [--iters K] [--warmup W] [--dtype float32|float64] [--seed S] [--threads T]
      Times forward + backward of the mean-bits/dim loss on a random uint8 batch and prints one JSON
      object: preset, device, dtype, batch, params, per-iteration times in ms (median, min, all),
      images per second and the torch version. `driver bench --compare` runs this.

Safetensors files are read and written by hand (8-byte little-endian header length, JSON header,
data buffer; the layout of the huggingface/safetensors README) so that only torch is needed.
"""

import argparse
import json
import math
import statistics
import struct
import sys
import time

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Safetensors I/O

DTYPES = {"F32": torch.float32, "F64": torch.float64}
CODES = {torch.float32: "F32", torch.float64: "F64"}


def read_safetensors(path):
    """Returns (metadata dict, {name: tensor})."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        code = info["dtype"]
        if code not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {code}, want F32 or F64")
        b, e = info["data_offsets"]
        buf = bytearray(data[b:e])
        t = torch.frombuffer(buf, dtype=DTYPES[code]) if buf else torch.empty(0, dtype=DTYPES[code])
        if sys.byteorder == "big":
            t = t.byteswap()
        out[name] = t.reshape(info["shape"]).clone()
    return meta, out


def write_safetensors(path, tensors, meta=None):
    """Writes {name: tensor} (float32/float64) with optional string metadata."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        b = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------------
# Configuration and presets (mirroring package dlf's presets)


def default_config():
    return dict(problem="cifar10", image_h=32, image_w=32, image_c=3, num_bits_x=8, flow="dlf",
                num_levels=3, depth=32, width=512, num_parts=2, decomposition=0, affine_coupling=False,
                flow_coupling="affine", invconv="full", invconv_bias=False, init="reference",
                conditioning=False, num_classes=0, l2_factor=0.0, batch_size=32, seed=199512)


def _glow(c, **kw):
    c.update(flow="glow", invconv="lu", flow_coupling="affine")
    c.update(kw)
    return c


def preset(name):
    d = default_config
    mnist = lambda: {**d(), "problem": "mnist", "image_h": 28, "image_w": 28, "image_c": 1, "num_classes": 10,
                     "num_levels": 2, "width": 128, "batch_size": 256}
    cifar = lambda: {**d(), "num_classes": 10}
    im64 = lambda: {**d(), "problem": "imagenet64", "image_h": 64, "image_w": 64, "num_levels": 4, "width": 384,
                    "invconv_bias": True, "batch_size": 24}
    celeba = lambda: {**d(), "problem": "celeba", "image_h": 256, "image_w": 256, "num_levels": 6, "width": 128,
                      "batch_size": 4, "l2_factor": 0.1}
    table = {
        "mnist": mnist,
        "fashion-mnist": lambda: {**mnist(), "problem": "fashion-mnist"},
        "cifar10": cifar,
        "cifar10-k4": lambda: {**cifar(), "num_parts": 4, "width": 308},
        "cifar10-k6": lambda: {**cifar(), "num_parts": 6, "width": 256},
        "imagenet32": lambda: {**d(), "problem": "imagenet32"},
        "imagenet64": im64,
        "celeba256": celeba,
        "glow-mnist": lambda: _glow(mnist(), batch_size=64),
        "glow-fashion-mnist": lambda: _glow({**mnist(), "problem": "fashion-mnist"}, batch_size=64),
        "glow-cifar10": lambda: _glow(cifar(), batch_size=64),
        "glow-imagenet32": lambda: _glow({**d(), "problem": "imagenet32"}, depth=48, batch_size=64),
        "glow-imagenet64": lambda: _glow(im64(), depth=48, width=512, invconv_bias=False, batch_size=16),
        "glow-celeba256": lambda: _glow(celeba(), width=512, num_bits_x=5, flow_coupling="additive",
                                        batch_size=1, l2_factor=0.0),
    }
    if name not in table:
        raise ValueError(f"unknown preset {name!r} (have {', '.join(sorted(table))})")
    return table[name]()


def level_shape(cfg, l):
    """(h, w, channels) of the flow steps at level l."""
    return cfg["image_h"] >> (l + 1), cfg["image_w"] >> (l + 1), cfg["image_c"] * 4 << l


# ---------------------------------------------------------------------------------------------
# Parameter registry: names, shapes and (for benchmarks) initial values


class Params:
    """Ordered name -> tensor map built by the model's constructors."""

    def __init__(self, cfg, dtype, device, gen):
        self.cfg, self.dtype, self.device, self.gen = cfg, dtype, device, gen
        self.t = {}
        self.trainable = {}

    def add(self, name, shape, init, trainable=True):
        if name in self.t:
            raise ValueError(f"parameter {name} registered twice")
        v = init(shape).to(self.dtype).to(self.device)
        self.t[name] = v
        self.trainable[name] = trainable
        return name

    # Initialisers (dlf-spec 1.6, 2.8; Glow 5). The benchmark uses them; --check loads values.
    def normal(self, std):
        return lambda s: torch.randn(s, generator=self.gen, dtype=torch.float64) * std

    def glorot(self, fan_in, fan_out):
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        return lambda s: (torch.rand(s, generator=self.gen, dtype=torch.float64) * 2 - 1) * lim

    @staticmethod
    def const(v):
        return lambda s: torch.full(s, float(v), dtype=torch.float64)

    def orthogonal(self, c):
        q, r = torch.linalg.qr(torch.randn(c, c, generator=self.gen, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def build_params(cfg, dtype=torch.float32, device="cpu", seed=0):
    """Registers every tensor of the model of cfg with package dlf's names and initial values."""
    gen = torch.Generator().manual_seed(seed)
    P = Params(cfg, dtype, device, gen)
    glow = cfg["flow"] == "glow"
    classes = cfg["num_classes"] if cfg["conditioning"] else 0
    ident = cfg["init"] == "identity"
    z = P.const(0)

    def hypernet(pre, cin, out, data_init, out_bias, cls):
        P.add(pre + "conv1.weight", (3, 3, cin + 1, cfg["width"]), P.normal(0.05))
        actnorm_params(pre + "actnorm1.", data_init)
        P.add(pre + "conv2.weight", (1, 1, cfg["width"], cfg["width"]), P.normal(0.05))
        actnorm_params(pre + "actnorm2.", data_init)
        if data_init:
            P.add(pre + "actnorm1.initialized", (1,), z, trainable=False)
            P.add(pre + "actnorm2.initialized", (1,), z, trainable=False)
        P.add(pre + "conv3.weight", (3, 3, cfg["width"] + 1, out), z)
        P.add(pre + "conv3.bias", (out,), P.const(out_bias))
        P.add(pre + "conv3.logs", (out,), z)
        if cls:
            P.add(pre + "cond.weight", (cls, out), z)

    def actnorm_params(pre, data_init):
        w = cfg["width"]
        if data_init:
            P.add(pre + "bias", (w,), z)
            P.add(pre + "logs", (w,), z)
        else:
            P.add(pre + "bias", (w,), P.glorot(1, w))
            P.add(pre + "logs", (w,), P.const(-1))

    for l in range(cfg["num_levels"]):
        _, _, c = level_shape(cfg, l)
        for s in range(cfg["depth"]):
            pre = f"level{l}.step{s}."
            if glow:
                P.add(pre + "actnorm.bias", (c,), z)
                P.add(pre + "actnorm.logs", (c,), z)
                P.add(pre + "actnorm.initialized", (1,), z, trainable=False)
            w = P.orthogonal(c)
            if cfg["invconv"] == "full":
                P.add(pre + "invconv.weight", (c, c), lambda s, w=w: w)
            else:
                lu, piv = torch.linalg.lu_factor(w)
                p_, l_, u_ = torch.lu_unpack(lu, piv)  # w = p_ @ l_ @ u_
                d = torch.diagonal(u_)
                P.add(pre + "invconv.perm", (c, c), lambda s, v=p_: v, trainable=False)
                P.add(pre + "invconv.lower", (c, c), lambda s, v=l_: v)
                P.add(pre + "invconv.upper", (c, c), lambda s, v=torch.triu(u_, 1): v)
                P.add(pre + "invconv.log_s", (c,), lambda s, v=torch.log(d.abs()): v)
                P.add(pre + "invconv.sign_s", (c,), lambda s, v=torch.sign(d): v, trainable=False)
            if cfg["invconv_bias"]:
                P.add(pre + "invconv.bias", (c,), z)
            if glow:
                out = c if cfg["flow_coupling"] == "affine" else c // 2
                hypernet(pre + "coupling.", c // 2, out, True, 0.0, 0)
            else:
                k = cfg["num_parts"]
                part = c // k
                beta, out_bias = (0.0, 0.0) if ident else (-3.0, 1.0)
                if not cfg["affine_coupling"]:
                    P.add(pre + "dlt.part0.h0", (2 * part,), z if ident else P.glorot(1, 2 * part))
                    P.add(pre + "dlt.part0.alpha", (1,), P.const(1))
                    P.add(pre + "dlt.part0.beta", (1,), P.const(beta))
                    if classes:
                        P.add(pre + "dlt.part0.cond.weight", (classes, 2 * part), z)
                for i in range(1, k):
                    pp = pre + f"dlt.part{i}."
                    hypernet(pp, part, 2 * part, False, out_bias, classes)
                    P.add(pp + "alpha", (1,), P.const(1))
                    P.add(pp + "beta", (1,), P.const(beta))
        if l < cfg["num_levels"] - 1:
            pre = f"level{l}.split."
            ob = 0.0 if (glow or ident) else 1.0
            P.add(pre + "conv.weight", (3, 3, c // 2 + 1, c), z)
            P.add(pre + "conv.bias", (c,), P.const(ob))
            P.add(pre + "conv.logs", (c,), z)
            if not glow:
                P.add(pre + "alpha", (1,), P.const(1))
                P.add(pre + "beta", (1,), z)
    _, _, c = level_shape(cfg, cfg["num_levels"] - 1)
    ob = 0.0 if (glow or ident) else 1.0
    P.add("top.conv.weight", (3, 3, 2 * c + 1, 2 * c), z)
    P.add("top.conv.bias", (2 * c,), P.const(ob))
    P.add("top.conv.logs", (2 * c,), z)
    if not glow:
        P.add("top.alpha", (1,), P.const(1))
        P.add("top.beta", (1,), z)
    if cfg["conditioning"]:
        P.add("top.cond.weight", (cfg["num_classes"], 2 * c), z)
    return P


def load_params(P, tensors, path):
    """Replaces P's values with the checkpoint's, checking names and shapes both ways."""
    for name, v in P.t.items():
        if name not in tensors:
            raise ValueError(f"{path}: missing tensor {name!r}")
        t = tensors[name]
        if tuple(t.shape) != tuple(v.shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {list(t.shape)}, want {list(v.shape)}")
        P.t[name] = t.to(P.dtype).to(P.device)
    extra = sorted(n for n in tensors if n not in P.t and not n.startswith("input."))
    if extra:
        raise ValueError(f"{path}: tensors the model does not have, e.g. {extra[0]!r}")


# ---------------------------------------------------------------------------------------------
# The model (all tensors NHWC)


def squeeze2(x):
    """[N,H,W,C] -> [N,H/2,W/2,4C], new channel c*4 + dy*2 + dx (dlf-spec 2.2)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def round_tf32(t):
    """Rounds a float32 tensor to TF32 as CUDA's cvt.rna.tf32.f32 does (and dlf's tensor.RoundTF32):
    add half a unit of the 10th mantissa bit to the bit pattern and clear the 13 low bits (to
    nearest, ties away from zero); Inf and NaN unchanged."""
    if t.dtype != torch.float32:
        raise ValueError("TF32 rounding needs float32 tensors")
    bits = t.contiguous().view(torch.int32)
    finite = (bits & 0x7F800000) != 0x7F800000
    return torch.where(finite, (bits + 0x1000) & ~0x1FFF, bits).view(torch.float32)


# TF32 makes conv() round both operands to TF32 first (Config "precision": "tf32"; see main's
# --check). The products of TF32 values are exact in float32, so torch's float32 convolution then
# computes what a tensor core does, up to summation order.
TF32 = False


def conv(x, w, k):
    """Stride-1 'same' conv of NHWC x with HWIO w; 3x3 uses Glow's edge-bias padding (dlf-spec 1.6)."""
    xc = x.permute(0, 3, 1, 2)
    wt = w.permute(3, 2, 0, 1)
    if k == 3:
        n, _, h, ww = xc.shape
        xc = F.pad(xc, (1, 1, 1, 1))
        ind = torch.ones(1, 1, h + 2, ww + 2, dtype=x.dtype, device=x.device)
        ind[:, :, 1:-1, 1:-1] = 0
        xc = torch.cat([xc, ind.expand(n, 1, h + 2, ww + 2)], 1)
    if TF32:
        xc, wt = round_tf32(xc), round_tf32(wt)
    y = F.conv2d(xc, wt)
    return y.permute(0, 2, 3, 1)


def actnorm(x, b, logs):
    """(x + b) * exp(3 logs) per channel (Glow's logscale_factor 3)."""
    return (x + b) * torch.exp(3 * logs)


class Model:
    def __init__(self, cfg, P):
        self.cfg, self.P = cfg, P
        self.glow = cfg["flow"] == "glow"

    def p(self, name):
        return self.P.t[name]

    def hypernet(self, pre, x, cond):
        p = self.p
        h = torch.relu(actnorm(conv(x, p(pre + "conv1.weight"), 3), p(pre + "actnorm1.bias"), p(pre + "actnorm1.logs")))
        h = torch.relu(actnorm(conv(h, p(pre + "conv2.weight"), 1), p(pre + "actnorm2.bias"), p(pre + "actnorm2.logs")))
        h = actnorm(conv(h, p(pre + "conv3.weight"), 3), p(pre + "conv3.bias"), p(pre + "conv3.logs"))
        if cond is not None and (pre + "cond.weight") in self.P.t:
            h = h + (cond @ p(pre + "cond.weight"))[:, None, None, :]
        return h

    def invconv(self, pre, x):
        p = self.p
        n, h, w, c = x.shape
        if self.cfg["invconv"] == "full":
            W = p(pre + "invconv.weight")
            logdet = torch.linalg.slogdet(W.double())[1].to(x.dtype)
        else:
            eye = torch.eye(c, dtype=x.dtype, device=x.device)
            lmask = torch.tril(torch.ones(c, c, dtype=x.dtype, device=x.device), -1)
            L = p(pre + "invconv.lower") * lmask + eye
            U = p(pre + "invconv.upper") * lmask.T + torch.diag(p(pre + "invconv.sign_s") * torch.exp(p(pre + "invconv.log_s")))
            W = p(pre + "invconv.perm") @ (L @ U)
            logdet = p(pre + "invconv.log_s").sum()
        y = (x.reshape(-1, c) @ W).reshape(n, h, w, c)
        if self.cfg["invconv_bias"]:
            y = y + p(pre + "invconv.bias")
        return y, (h * w) * logdet * torch.ones(n, dtype=x.dtype, device=x.device)

    @staticmethod
    def affine_tanh(x, h, alpha, beta):
        """y = (x + h[...,0::2]) * exp(alpha tanh(h[...,1::2]) + beta); logdet = sum of the log-scale."""
        mu, r = h[..., 0::2], h[..., 1::2]
        ls = alpha * torch.tanh(r) + beta
        y = (x + mu) * torch.exp(ls)
        return y, ls.expand_as(x).reshape(x.shape[0], -1).sum(1)

    def dlt(self, pre, x, cond):
        p = self.p
        k = self.cfg["num_parts"]
        xs = list(torch.chunk(x, k, dim=3))
        ys = [None] * k
        n = x.shape[0]
        ld = torch.zeros(n, dtype=x.dtype, device=x.device)
        if self.cfg["affine_coupling"]:
            ys[0] = xs[0]
        else:
            h = p(pre + "dlt.part0.h0").reshape(1, 1, 1, -1)
            if cond is not None:
                h = h + (cond @ p(pre + "dlt.part0.cond.weight"))[:, None, None, :]
            ys[0], l = self.affine_tanh(xs[0], h, p(pre + "dlt.part0.alpha"), p(pre + "dlt.part0.beta"))
            ld = ld + l
        for i in range(1, k):
            src = ys[i - 1] if self.cfg["decomposition"] == 1 else xs[i - 1]
            pp = pre + f"dlt.part{i}."
            h = self.hypernet(pp, src, cond)
            ys[i], l = self.affine_tanh(xs[i], h, p(pp + "alpha"), p(pp + "beta"))
            ld = ld + l
        return torch.cat(ys, 3), ld

    def coupling(self, pre, x):
        c = x.shape[3]
        z1, z2 = x[..., : c // 2], x[..., c // 2 :]
        h = self.hypernet(pre + "coupling.", z1, None)
        if self.cfg["flow_coupling"] == "additive":
            return torch.cat([z1, z2 + h], 3), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        scale = torch.sigmoid(h[..., 1::2] + 2.0)
        y2 = (z2 + h[..., 0::2]) * scale
        return torch.cat([z1, y2], 3), torch.log(scale).reshape(x.shape[0], -1).sum(1)

    def step(self, pre, x, cond):
        p = self.p
        ld = 0
        if self.glow:
            b, s = p(pre + "actnorm.bias"), p(pre + "actnorm.logs")
            x = actnorm(x, b, s)
            ld = x.shape[1] * x.shape[2] * 3 * s.sum()
        x, l = self.invconv(pre, x)
        ld = ld + l
        if self.glow:
            x, l = self.coupling(pre, x)
        else:
            x, l = self.dlt(pre, x, cond)
        return x, ld + l

    def gaussian(self, z, h, alpha, beta, interleaved):
        c = z.shape[3]
        if interleaved:
            mu, r = h[..., 0::2], h[..., 1::2]
        else:
            mu, r = h[..., :c], h[..., c:]
        logs = r if alpha is None else alpha * torch.tanh(r) + beta
        lp = -0.5 * (math.log(2 * math.pi) + 2 * logs + (z - mu) ** 2 * torch.exp(-2 * logs))
        return lp.expand_as(z).reshape(z.shape[0], -1).sum(1)

    def forward(self, x, cond=None):
        """Returns (objective [N], logdet [N], logprior [N], latents)."""
        cfg, p = self.cfg, self.p
        n = x.shape[0]
        z = squeeze2(x)
        ld = torch.zeros(n, dtype=x.dtype, device=x.device)
        lp = torch.zeros(n, dtype=x.dtype, device=x.device)
        zs = []
        for l in range(cfg["num_levels"]):
            for s in range(cfg["depth"]):
                z, dl = self.step(f"level{l}.step{s}.", z, cond)
                ld = ld + dl
            if l == cfg["num_levels"] - 1:
                break
            c = z.shape[3]
            z1, z2 = z[..., : c // 2], z[..., c // 2 :]
            pre = f"level{l}.split."
            h = actnorm(conv(z1, p(pre + "conv.weight"), 3), p(pre + "conv.bias"), p(pre + "conv.logs"))
            a = None if self.glow else p(pre + "alpha")
            b = None if self.glow else p(pre + "beta")
            lp = lp + self.gaussian(z2, h, a, b, interleaved=self.glow)
            zs.append(z2)
            z = squeeze2(z1)
        hh, ww, c = z.shape[1], z.shape[2], z.shape[3]
        zero = torch.zeros(1, hh, ww, 2 * c, dtype=x.dtype, device=x.device)
        h = actnorm(conv(zero, p("top.conv.weight"), 3), p("top.conv.bias"), p("top.conv.logs"))
        if cond is not None and cfg["conditioning"]:
            h = h + (cond @ p("top.cond.weight"))[:, None, None, :]
        a = None if self.glow else p("top.alpha")
        b = None if self.glow else p("top.beta")
        lp = lp + self.gaussian(z, h, a, b, interleaved=False)
        zs.append(z)
        d = cfg["image_h"] * cfg["image_w"] * cfg["image_c"]
        obj = -d * math.log(2 ** cfg["num_bits_x"]) + ld + lp
        return obj, ld, lp, zs

    def loss(self, x, cond=None):
        """Mean bits/dim (plus the L2 term on the 1x1-conv weights, dlf-spec 2.7)."""
        cfg = self.cfg
        d = cfg["image_h"] * cfg["image_w"] * cfg["image_c"]
        obj = self.forward(x, cond)[0]
        loss = (-obj / (d * math.log(2))).mean()
        if cfg.get("l2_factor", 0) > 0 and cfg["invconv"] == "full":
            ws = [v for k, v in self.P.t.items() if k.endswith("invconv.weight")]
            loss = loss + cfg["l2_factor"] / sum(w.numel() for w in ws) * sum(0.5 * (w ** 2).sum() for w in ws)
        return loss


def preprocess(images, cfg, gen):
    """uint8 NHWC -> x/n_bins - 0.5 + U[0, 1/n_bins) (dlf-spec 2.1)."""
    bits = cfg["num_bits_x"]
    x = torch.floor(images.double() / 2 ** (8 - bits))
    u = torch.rand(x.shape, generator=gen, dtype=torch.float64)
    return (x + u) / 2 ** bits - 0.5


# ---------------------------------------------------------------------------------------------
# Modes


def check(path, out_path):
    meta, tensors = read_safetensors(path)
    if "config" not in meta:
        raise ValueError(f"{path}: metadata has no 'config'")
    cfg = {**default_config(), **json.loads(meta["config"])}
    if "input.x" not in tensors:
        raise ValueError(f"{path}: no tensor 'input.x'")
    x = tensors["input.x"]
    dtype = x.dtype
    P = build_params(cfg, dtype=dtype)
    load_params(P, tensors, path)
    cond = tensors.get("input.cond")
    if cfg["conditioning"] and cond is None:
        raise ValueError(f"{path}: class-conditional model but no 'input.cond'")
    if cond is not None:
        cond = cond.to(dtype)
    global TF32
    prec = cfg.get("precision") or "fp32"
    if prec not in ("fp32", "tf32"):
        raise ValueError(f"{path}: precision {prec!r} is not fp32 or tf32")
    TF32 = prec == "tf32"
    with torch.no_grad():
        obj, ld, lp, zs = Model(cfg, P).forward(x, cond)
    out = {"objective": obj, "logdet": ld, "logprior": lp}
    for i, z in enumerate(zs):
        out[f"z{i}"] = z.contiguous()
    write_safetensors(out_path, out, {"torch": torch.__version__})
    return 0


def bench(args):
    cfg = preset(args.preset) if args.config is None else {**default_config(), **json.load(open(args.config))}
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "cuda requested but torch.cuda.is_available() is false"}))
        return 2
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    # Precision as dlf's Config.Precision: empty means TF32 convolutions on CUDA (cuDNN's default,
    # as dlf's) and FP32 on the CPU. On CUDA it sets cuDNN's TF32 switch; matmuls stay FP32 as dlf
    # keeps its GEMMs (invertible 1x1 convolutions, priors). On the CPU torch has no TF32, so the
    # timing is FP32 either way (no rounding is emulated here: that would only slow torch down).
    prec = cfg.get("precision") or ("tf32" if device == "cuda" else "fp32")
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = prec == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = False
    else:
        prec = "fp32"
    P = build_params(cfg, dtype=dtype, device=device, seed=args.seed)
    for name, v in P.t.items():
        if P.trainable[name]:
            v.requires_grad_(True)
    model = Model(cfg, P)
    if model.glow:
        # Glow's data-dependent init is skipped: flags and unit scales do not change the timing.
        pass
    gen = torch.Generator().manual_seed(args.seed)
    n = args.batch or cfg["batch_size"]
    imgs = torch.randint(0, 256, (n, cfg["image_h"], cfg["image_w"], cfg["image_c"]), generator=gen)
    x = preprocess(imgs, cfg, gen).to(dtype).to(device)
    cond = None
    if cfg["conditioning"]:
        cond = F.one_hot(torch.randint(0, cfg["num_classes"], (n,), generator=gen), cfg["num_classes"]).to(dtype).to(device)
    params = [v for k, v in P.t.items() if P.trainable[k]]

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    times = []
    loss_val = None
    for it in range(args.warmup + args.iters):
        for v in params:
            v.grad = None
        sync()
        t0 = time.perf_counter()
        loss = model.loss(x, cond)
        loss.backward()
        sync()
        dt = (time.perf_counter() - t0) * 1e3
        loss_val = float(loss.detach())
        if it >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    res = {
        "impl": "pytorch",
        "preset": args.preset if args.config is None else args.config,
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "dtype": args.dtype,
        "precision": prec,
        "batch": n,
        "params": sum(v.numel() for v in params),
        "iters": args.iters,
        "fwd_bwd_ms_median": med,
        "fwd_bwd_ms_min": min(times),
        "fwd_bwd_ms": times,
        "images_per_s": n / (med / 1e3),
        "loss_bits_per_dim": loss_val,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(res))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", metavar="IN", nargs="+", help="evaluate the model and batch in each IN (safetensors)")
    ap.add_argument("--out", metavar="OUT", nargs="+", help="where --check writes its results, one per IN")
    ap.add_argument("--bench", action="store_true", help="time forward+backward and print JSON")
    ap.add_argument("--preset", default="mnist")
    ap.add_argument("--config", help="a Config JSON file instead of --preset")
    ap.add_argument("--batch", type=int, default=16, help="batch size (0: the preset's)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        if args.check:
            if not args.out or len(args.out) != len(args.check):
                ap.error("--check needs one --out path per input")
            for i, o in zip(args.check, args.out):
                check(i, o)
            return 0
        if args.bench:
            return bench(args)
    except (OSError, ValueError, KeyError) as e:
        print(f"dlf_torch: {e}", file=sys.stderr)
        return 1
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
