"""The lra encoder classifier written in plain PyTorch, from the formulas in
shared/reference/attention-math.md: the reference that `lra` is checked against (parity fixtures,
tests/fixtures/make_parity.py) and timed against (bench/torch_reference.py).

Same parameters, same names, same order as lib/model/model.cpp:
  embed.tok, embed.pos (learned positions only), embed.cls (CLS pooling only),
  layers.{i}.{ln1,attn.qkv,attn.out,ln2,mlp.fc1,mlp.fc2}.{weight,bias}, final_ln, head.fc1, head.fc2.
Inputs are padded (B, L) token tensors with a boolean key mask (None when every token is real), the
way a PyTorch user writes it; lra packs the same examples without padding rows. Written as a careful
PyTorch 1.13 user would (no fused attention exists there): q is scaled before the score product, and
masking is skipped when there is no mask. Attention variants and their hyperparameters (cfg["attn"],
cfg["attn_params"]) are listed in ATTN_DEFAULTS; kernelized ones share kernelized_attention, whose causal
form is the masked quadratic one a PyTorch user writes (O(L^2) memory, like softmax). Performer
projections are buffers (Attention.features_w), not parameters, so the parameter list is unchanged.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal_table(positions, dim):
    """LRA's table: sin in the first dim/2 columns, cos in the next dim/2 (halves, not interleaved)."""
    pe = torch.zeros(positions, dim, dtype=torch.float64)
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    half = dim // 2
    w = torch.exp(-(2.0 * torch.arange(half, dtype=torch.float64)) * math.log(10000.0) / dim)
    pe[:, :half] = torch.sin(pos * w)
    pe[:, half:2 * half] = torch.cos(pos * w)
    return pe


ATTN_DEFAULTS = {
    "softmax": dict(causal=False),
    "cosformer": dict(causal=False, eps=1e-6),
    "linear": dict(causal=False, eps=1e-6),
    "performer": dict(causal=False, eps=1e-6, features=256, feature_eps=1e-6, orthogonal=True, redraw="step"),
    "performer-relu": dict(causal=False, eps=1e-6, features=0, kernel_eps=1e-3, orthogonal=True, redraw="step"),
}


def attn_hyperparameters(cfg):
    """cfg["attn_params"] over the defaults of cfg["attn"] (ATTN_DEFAULTS); an unknown name is an error."""
    if cfg["attn"] not in ATTN_DEFAULTS:
        raise ValueError(f"no PyTorch reference for attention '{cfg['attn']}'")
    params = dict(ATTN_DEFAULTS[cfg["attn"]])
    for key, value in cfg.get("attn_params", {}).items():
        if key not in params:
            raise ValueError(f"attention '{cfg['attn']}' has no hyperparameter '{key}' (has {', '.join(params)})")
        params[key] = value
    return params


def softmax_attention(q, k, v, key_mask, causal, attn_dropout, training):
    """q, k, v: (B, H, L, d); key_mask: (B, L) bool or None. Exact scaled dot-product attention. Masked
    keys (and, causal, keys j > i) get the most negative finite score (as LRA's Flax code does), so a row
    whose keys are all masked averages them instead of producing NaN (lra outputs 0 there; no fixture has
    such a row)."""
    s = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], torch.finfo(s.dtype).min)
    if causal:
        L = s.shape[-1]
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device=s.device).triu(1), torch.finfo(s.dtype).min)
    p = F.dropout(torch.softmax(s, dim=-1), attn_dropout, training)
    return p @ v


def kernelized_attention(phi_q, phi_k, v, key_mask, causal):
    """The kernelized rule of attention-math.md section 2 on features phi_q (B, H, L, m), phi_k (B, H, L, m):
    phi_k rows of masked keys are zeroed after the feature map, then N_i = sum_j (phi_q_i . phi_k_j) v_j and
    D_i = sum_j phi_q_i . phi_k_j, over every key in right-product order (phi_k^T v first) or, causal, over
    j <= i by the explicit masked quadratic form A = tril(phi_q phi_k^T), N = A v, D = rowsum(A).
    Returns N (B, H, L, d) and D (B, H, L, 1); the caller applies its variant's guard to D."""
    if key_mask is not None:
        phi_k = phi_k.masked_fill(~key_mask[:, None, :, None], 0.0)
    if causal:
        a = torch.tril(phi_q @ phi_k.transpose(-1, -2))
        return a @ v, a.sum(-1, keepdim=True)
    num = phi_q @ (phi_k.transpose(-1, -2) @ v)
    return num, (phi_q * phi_k.sum(dim=2, keepdim=True)).sum(-1, keepdim=True)


def cosformer_attention(q, k, v, key_mask, causal, eps):
    """cosFormer as in the official code: relu features, theta_i = pi/2 i/M with i = 1..M, M = the
    padded length, phi(x_i) = [relu(x_i) sin theta_i | relu(x_i) cos theta_i] (m = 2d), normaliser
    clamped at eps: O = N / max(D, eps)."""
    L = q.shape[2]
    theta = (math.pi / 2) * torch.arange(1, L + 1, dtype=q.dtype, device=q.device) / L
    sin, cos = torch.sin(theta)[:, None], torch.cos(theta)[:, None]
    qr, kr = F.relu(q), F.relu(k)
    qh = torch.cat([qr * sin, qr * cos], dim=-1)
    kh = torch.cat([kr * sin, kr * cos], dim=-1)
    num, den = kernelized_attention(qh, kh, v, key_mask, causal)
    return num / torch.clamp(den, min=eps)


def linear_attention(q, k, v, key_mask, causal, eps):
    """Linear Transformer (Katharopoulos et al.): phi(x) = elu(x) + 1 (m = d), O = N / (D + eps)."""
    num, den = kernelized_attention(F.elu(q) + 1, F.elu(k) + 1, v, key_mask, causal)
    return num / (den + eps)


def draw_features(m, d, orthogonal):
    """A random projection W (m, d). orthogonal: ORF, ceil(m/d) blocks, each the rows of Q^T from the QR of
    a d x d iid N(0,1) draw, stacked and cut to the first m rows, then row r multiplied by the norm of an
    independent N(0, I_d) draw (chi_d); otherwise iid N(0,1). Q's columns take the signs of R's diagonal
    (as lra does; the official code does not), which makes Q Haar-distributed and each row N(0, I_d)."""
    if not orthogonal:
        return torch.randn(m, d)
    blocks = []
    for _ in range(-(-m // d)):
        q, r = torch.linalg.qr(torch.randn(d, d))
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    return torch.cat(blocks)[:m] * torch.randn(m, d).norm(dim=1, keepdim=True)


def performer_attention(q, k, v, key_mask, causal, w, feature_eps, eps):
    """Performer FAVOR+ (positive softmax-kernel features, attention-math.md 4.1) with W (m, d): for a row x,
    xh = d^-1/4 x, u = xh W^T, h = |xh|^2 / 2, phi(x)_r = m^-1/2 (exp(u_r - h - s) + feature_eps), where
    s = max_r u_r per query row and, for keys, one s per (b, h): the max of u over the real keys' (j, r)
    or, causal, over the first real key's r only (a max over all keys would let future keys change past
    outputs through feature_eps and the clamp); 0 when an example has no real key. s is not detached.
    O = N / max(D, eps)."""
    m, c = w.shape[0], q.shape[-1] ** -0.25

    def features(x, s):
        return m ** -0.5 * (torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True) / 2 - s) + feature_eps)

    qh, kh = c * q, c * k
    uk = kh @ w.T
    if key_mask is not None:
        uk = uk.masked_fill(~key_mask[:, None, :, None], -math.inf)
    if causal:
        real = torch.ones(uk.shape[0], uk.shape[2], dtype=torch.bool) if key_mask is None else key_mask
        first = real.int().argmax(dim=1)  # the first real key of each example
        uk = uk[torch.arange(uk.shape[0]), :, first][:, :, None, :]
    sk = uk.amax(dim=(-2, -1), keepdim=True)
    sk = torch.where(torch.isfinite(sk), sk, torch.zeros_like(sk))
    num, den = kernelized_attention(features(qh, (qh @ w.T).amax(-1, keepdim=True)), features(kh, sk), v,
                                    key_mask, causal)
    return num / torch.clamp(den, min=eps)


def performer_relu_attention(q, k, v, key_mask, causal, w, kernel_eps, eps):
    """Performer generalized attention with the ReLU kernel (attention-math.md 4.4): phi(x) = relu(x) +
    kernel_eps when w is None (LRA's deterministic features, m = d), else phi(x) = relu(d^-1/4 x W^T) +
    kernel_eps with W (m, d). O = N / max(D, eps)."""
    if w is not None:
        c = q.shape[-1] ** -0.25
        q, k = (c * q) @ w.T, (c * k) @ w.T
    num, den = kernelized_attention(F.relu(q) + kernel_eps, F.relu(k) + kernel_eps, v, key_mask, causal)
    return num / torch.clamp(den, min=eps)


def redraw_interval(redraw):
    """Training forwards per draw of W: "step" 1, "interval:N" N, "never" 0 (no redraw)."""
    if redraw in ("step", "never"):
        return 1 if redraw == "step" else 0
    n = redraw[len("interval:"):] if redraw.startswith("interval:") else ""
    if not n.isdigit() or int(n) == 0:
        raise ValueError(f"redraw must be step, never or interval:N with N > 0, got '{redraw}'")
    return int(n)


class Attention(nn.Module):
    """Multi-head self-attention with the variant cfg["attn"] and its hyperparameters (attn_hyperparameters).
    Performer variants with features > 0 hold their projection in the buffer `features_w` (m, d), read and
    set as that attribute (None for the others). redraw: "step" draws a new W before every training forward
    after the first, "interval:N" before every N-th, "never" keeps the one drawn at construction."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.hp = attn_hyperparameters(cfg)
        D, Q = cfg["emb_dim"], cfg["qkv_dim"]
        self.qkv = nn.Linear(D, 3 * Q, bias=cfg.get("qkv_bias", False))
        self.out = nn.Linear(Q, D)
        m = self.hp.get("features", 0)
        if cfg["attn"] == "performer" and m <= 0:
            raise ValueError(f"performer needs features > 0, got {m}")
        self.register_buffer("features_w", draw_features(m, Q // cfg["num_heads"], self.hp["orthogonal"])
                             if m > 0 else None)
        self.redraw_every = redraw_interval(self.hp.get("redraw", "never"))
        self.train_forwards = 0

    def forward(self, x, key_mask):
        B, L, _ = x.shape
        H, Q = self.cfg["num_heads"], self.cfg["qkv_dim"]
        if self.training and self.features_w is not None and self.redraw_every:
            if self.train_forwards > 0 and self.train_forwards % self.redraw_every == 0:
                self.features_w = draw_features(*self.features_w.shape, self.hp["orthogonal"]).to(self.features_w)
            self.train_forwards += 1
        q, k, v = self.qkv(x).split(Q, dim=-1)
        q, k, v = (t.reshape(B, L, H, Q // H).transpose(1, 2) for t in (q, k, v))
        name, hp = self.cfg["attn"], self.hp
        if name == "softmax":
            o = softmax_attention(q, k, v, key_mask, hp["causal"], self.cfg["attention_dropout_rate"], self.training)
        elif name == "cosformer":
            o = cosformer_attention(q, k, v, key_mask, hp["causal"], hp["eps"])
        elif name == "linear":
            o = linear_attention(q, k, v, key_mask, hp["causal"], hp["eps"])
        elif name == "performer":
            o = performer_attention(q, k, v, key_mask, hp["causal"], self.features_w, hp["feature_eps"], hp["eps"])
        else:
            o = performer_relu_attention(q, k, v, key_mask, hp["causal"], self.features_w, hp["kernel_eps"], hp["eps"])
        return self.out(o.transpose(1, 2).reshape(B, L, Q))


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = nn.Linear(cfg["emb_dim"], cfg["mlp_dim"])
        self.fc2 = nn.Linear(cfg["mlp_dim"], cfg["emb_dim"])
        self.gelu = cfg.get("gelu", "tanh")
        self.p = cfg["dropout_rate"]

    def forward(self, x):
        h = F.gelu(self.fc1(x), approximate="tanh" if self.gelu == "tanh" else "none")
        return self.fc2(F.dropout(h, self.p, self.training))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg.get("layernorm_eps", 1e-6)
        self.ln1 = nn.LayerNorm(cfg["emb_dim"], eps=eps)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg["emb_dim"], eps=eps)
        self.mlp = Mlp(cfg)
        self.p = cfg["dropout_rate"]

    def forward(self, x, key_mask):
        x = x + F.dropout(self.attn(self.ln1(x), key_mask), self.p, self.training)
        return x + F.dropout(self.mlp(self.ln2(x)), self.p, self.training)


class Embed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["emb_dim"]
        self.has_cls = cfg["classifier_pool"] == "CLS"
        positions = cfg["max_length"] + (1 if self.has_cls else 0)
        self.tok = nn.Parameter(torch.randn(cfg["vocab_size"], D))
        if cfg.get("learn_pos_emb", False):
            self.pos = nn.Parameter(torch.randn(positions, D) * 0.02)
        else:
            self.register_buffer("pos", sinusoidal_table(positions, D).to(torch.get_default_dtype()))
        if self.has_cls:
            self.cls = nn.Parameter(torch.zeros(D))

    def forward(self, tokens, key_mask):
        x = self.tok[tokens]
        if self.has_cls:
            x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1)
            if key_mask is not None:
                key_mask = torch.cat([torch.ones_like(key_mask[:, :1]), key_mask], dim=1)
        return x + self.pos[: x.shape[1]], key_mask


class Head(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = nn.Linear(cfg["emb_dim"], cfg["mlp_dim"])
        self.fc2 = nn.Linear(cfg["mlp_dim"], cfg["num_classes"])

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class LraClassifier(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["num_layers"])])
        self.final_ln = nn.LayerNorm(cfg["emb_dim"], eps=cfg.get("layernorm_eps", 1e-6))
        self.head = Head(cfg)

    def forward(self, tokens, key_mask):
        """tokens: (B, L) long, padded; key_mask: (B, L) bool, True for real (attended) tokens, or None."""
        x, mask = self.embed(tokens, key_mask)
        x = F.dropout(x, self.cfg["dropout_rate"], self.training)
        for block in self.layers:
            x = block(x, mask)
        x = self.final_ln(x)
        if self.embed.has_cls:
            pooled = x[:, 0]
        elif mask is None:
            pooled = x.mean(1)
        else:
            m = mask.to(x.dtype)[:, :, None]
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(pooled)
