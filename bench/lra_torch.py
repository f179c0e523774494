"""The lra encoder classifier written in plain PyTorch, from the formulas in
shared/reference/attention-math.md: the reference that `lra` is checked against (parity fixtures,
tests/fixtures/make_parity.py) and timed against (bench/torch_reference.py).

Same parameters, same names, same order as lib/model/model.cpp:
  embed.tok, embed.pos (learned positions only), embed.cls (CLS pooling only),
  layers.{i}.{ln1,attn.qkv,attn.out,ln2,mlp.fc1,mlp.fc2}.{weight,bias}, final_ln, head.fc1, head.fc2.
Inputs are padded (B, L) token tensors with a boolean key mask (None when every token is real), the
way a PyTorch user writes it; lra packs the same examples without padding rows. Written as a careful
PyTorch 1.13 user would (no fused attention exists there): q is scaled before the score product, and
masking is skipped when there is no mask.
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


def softmax_attention(q, k, v, key_mask, attn_dropout, training):
    """q, k, v: (B, H, L, d); key_mask: (B, L) bool or None. Exact scaled dot-product attention. Masked
    keys get the most negative finite score (as LRA's Flax code does), so a row whose keys are all
    masked averages them instead of producing NaN (lra outputs 0 there; no fixture has such a row)."""
    s = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], torch.finfo(s.dtype).min)
    p = F.dropout(torch.softmax(s, dim=-1), attn_dropout, training)
    return p @ v


def cosformer_attention(q, k, v, key_mask, eps):
    """cosFormer as in the official code: relu features, theta_i = pi/2 i/M with i = 1..M, M = the
    padded length, normaliser clamped at eps; masked keys zeroed after the feature map."""
    L = q.shape[2]
    theta = (math.pi / 2) * torch.arange(1, L + 1, dtype=q.dtype, device=q.device) / L
    sin, cos = torch.sin(theta)[:, None], torch.cos(theta)[:, None]
    qr = F.relu(q)
    kr = F.relu(k) if key_mask is None else F.relu(k) * key_mask[:, None, :, None].to(q.dtype)
    qh = torch.cat([qr * sin, qr * cos], dim=-1)
    kh = torch.cat([kr * sin, kr * cos], dim=-1)
    kv = kh.transpose(-1, -2) @ v                    # (B, H, 2d, d)
    num = qh @ kv                                    # (B, H, L, d)
    den = (qh * kh.sum(dim=2, keepdim=True)).sum(-1, keepdim=True)
    return num / torch.clamp(den, min=eps)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, Q = cfg["emb_dim"], cfg["qkv_dim"]
        self.qkv = nn.Linear(D, 3 * Q, bias=cfg.get("qkv_bias", False))
        self.out = nn.Linear(Q, D)

    def forward(self, x, key_mask):
        B, L, _ = x.shape
        H, Q = self.cfg["num_heads"], self.cfg["qkv_dim"]
        q, k, v = self.qkv(x).split(Q, dim=-1)
        q, k, v = (t.reshape(B, L, H, Q // H).transpose(1, 2) for t in (q, k, v))
        if self.cfg["attn"] == "softmax":
            o = softmax_attention(q, k, v, key_mask, self.cfg["attention_dropout_rate"], self.training)
        elif self.cfg["attn"] == "cosformer":
            o = cosformer_attention(q, k, v, key_mask, self.cfg.get("attn_params", {}).get("eps", 1e-6))
        else:
            raise ValueError(f"no PyTorch reference for attention '{self.cfg['attn']}'")
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
