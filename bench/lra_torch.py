"""The lra encoder classifier written in plain PyTorch, from the formulas in
docs/attention.md: the reference that `lra` is checked against (parity fixtures,
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


def rotary(t):
    """Rotary position embedding of t (B, H, L, dh): column pairs (i, i + dh/2) turned by p * 10000^(-2i/dh) at
    position p (the "rotate half" layout), the angles computed in float64 as lra's table is."""
    dh = t.shape[-1]
    half = dh // 2
    pos = torch.arange(t.shape[2], dtype=torch.float64)[:, None]
    angle = pos * torch.pow(10000.0, -2.0 * torch.arange(half, dtype=torch.float64) / dh)
    c, s = angle.cos().to(t.dtype), angle.sin().to(t.dtype)
    x1, x2 = t[..., :half], t[..., half:]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)


ATTN_DEFAULTS = {
    "softmax": dict(causal=False),
    "cosformer": dict(causal=False, eps=1e-6),
    "linear": dict(causal=False, eps=1e-6),
    "performer": dict(causal=False, eps=1e-6, features=256, feature_eps=1e-6, orthogonal=True, redraw="step"),
    "performer-relu": dict(causal=False, eps=1e-6, features=0, kernel_eps=1e-3, orthogonal=True, redraw="step"),
    "local": dict(causal=False, block=50),
    "sparse": dict(causal=False, block=50, summary=10),
    "longformer": dict(causal=False, window=512, **{"global": [0]}),
    "bigbird": dict(causal=False, block=64, random=3, random_limit=0),
    "nystromformer": dict(landmarks=64, pinv_iters=6, conv_kernel=35, pinv_init="example"),
    "linformer": dict(k=16),
    "synthesizer": dict(causal=False, mode="random", dot_product=True, k=32),
    "sinkhorn": dict(block=50, max_blocks=25, sort_net="mlp", sort_activation="sinkhorn",
                     sinkhorn_iters=1, temperature=1.0, combine="joint"),
    "reformer": dict(causal=False, hashes=1, buckets=10, chunk=0, chunks_before=1, self_mask=True, norm_keys=True,
                     code_logit_scale=False),
}


def attn_hyperparameters(cfg):
    """cfg["attn_params"] over the defaults of cfg["attn"] (ATTN_DEFAULTS); an unknown name is an error."""
    if cfg["attn"] not in ATTN_DEFAULTS:
        raise ValueError(f"no PyTorch reference for attention '{cfg['attn']}'")
    params = dict(ATTN_DEFAULTS[cfg["attn"]])
    for key, value in cfg.get("attn_params", {}).items():
        if key == "causal" and key not in params and not value:
            continue  # a variant without a causal mode takes causal=false (lra's resolve_attention_params)
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
    """The kernelized rule of docs/attention.md section 2 on features phi_q (B, H, L, m), phi_k (B, H, L, m):
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
    """Performer FAVOR+ (positive softmax-kernel features, docs/attention.md 4.1) with W (m, d): for a row x,
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
    """Performer generalized attention with the ReLU kernel (docs/attention.md 4.4): phi(x) = relu(x) +
    kernel_eps when w is None (LRA's deterministic features, m = d), else phi(x) = relu(d^-1/4 x W^T) +
    kernel_eps with W (m, d). O = N / max(D, eps)."""
    if w is not None:
        c = q.shape[-1] ** -0.25
        q, k = (c * q) @ w.T, (c * k) @ w.T
    num, den = kernelized_attention(F.relu(q) + kernel_eps, F.relu(k) + kernel_eps, v, key_mask, causal)
    return num / torch.clamp(den, min=eps)


def nystromformer_conv(hp, heads):
    """Nystromformer's learned depthwise convolution of V: (heads, conv_kernel), initialised as torch's
    Conv2d (kaiming-uniform a=sqrt(5): U(-1/sqrt(kernel), 1/sqrt(kernel))); None when conv_kernel is 0."""
    kernel = hp["conv_kernel"]
    if hp["landmarks"] < 1 or hp["pinv_iters"] < 0 or kernel < 0 or (kernel > 0 and kernel % 2 == 0):
        raise ValueError(f"nystromformer needs landmarks >= 1, pinv_iters >= 0, conv_kernel odd or 0: {hp}")
    if hp["pinv_init"] not in ("example", "batch"):
        raise ValueError(f"nystromformer pinv_init must be 'example' or 'batch', got {hp['pinv_init']}")
    return nn.Parameter(torch.empty(heads, kernel).uniform_(-kernel ** -0.5, kernel ** -0.5)) if kernel else None


def nystromformer_attention(q, k, v, key_mask, conv, landmarks, pinv_iters, pinv_init):
    """Nystromformer as the authors' LRA code computes it (docs/attention.md 6.5), one example at a time
    over its real length n = 1 + its last real key (the code splits the padded max_len and averages padding
    zeros into its landmarks; lra packs the examples, so a padded batch equals per-example runs). Rows of
    masked keys of q and k are zeroed, both scaled by d^-1/4, v's are zeroed. n <= m = landmarks: exact
    softmax. Otherwise landmarks ql, kl: means over segments j = rows [j n // m, (j+1) n // m), then
    F = softmax(q kl^T), A = softmax(ql kl^T), Bm = softmax(ql k^T, masked keys at -inf), Z_0 = A^T / c,
    c = the largest column sum of A per example and head ("example") or over the whole batch ("batch", the
    code's init_option "original"), pinv_iters times Z <- 1/4 Z (13I - AZ (15I - AZ (7I - AZ))), and
    O = F Z (Bm v). Plus conv(v): depthwise over the sequence, one conv (H, kernel) filter per head, zero
    padding (the code's Conv2d((kernel, 1), groups=H)). Rows after n (padding) are 0."""
    B, H, L, d = q.shape
    real = torch.ones(B, L, dtype=torch.bool, device=q.device) if key_mask is None else key_mask
    mu = real.to(q.dtype)[:, None, :, None]
    q, k, v = q * mu * d ** -0.25, k * mu * d ** -0.25, v * mu
    ex = []
    for b in range(B):
        idx = real[b].nonzero()
        n = int(idx[-1]) + 1 if len(idx) else 0
        e = dict(n=n, q=q[b, :, :n], k=k[b, :, :n], v=v[b, :, :n], real=real[b, :n])
        if n > landmarks:
            bounds = [j * n // landmarks for j in range(landmarks + 1)]
            e["ql"] = torch.stack([e["q"][:, a:z].mean(1) for a, z in zip(bounds, bounds[1:])], 1)
            e["kl"] = torch.stack([e["k"][:, a:z].mean(1) for a, z in zip(bounds, bounds[1:])], 1)
            e["A"] = torch.softmax(e["ql"] @ e["kl"].transpose(-1, -2), dim=-1)
        ex.append(e)
    with_a = [e["A"] for e in ex if "A" in e]
    batch_c = torch.max(torch.cat([a.sum(-2).reshape(-1) for a in with_a])) if with_a else None
    outs = []
    for e in ex:
        n, qe, ke, ve = e["n"], e["q"], e["k"], e["v"]
        hidden = ~e["real"][None, None, :]
        if n == 0:
            o = ve
        elif n <= landmarks:
            o = torch.softmax((qe @ ke.transpose(-1, -2)).masked_fill(hidden, -math.inf), dim=-1) @ ve
        else:
            a = e["A"]
            f = torch.softmax(qe @ e["kl"].transpose(-1, -2), dim=-1)
            bm = torch.softmax((e["ql"] @ ke.transpose(-1, -2)).masked_fill(hidden, -math.inf), dim=-1)
            c = batch_c if pinv_init == "batch" else a.sum(-2).max(-1).values[:, None, None]
            z = a.transpose(-1, -2) / c
            eye = torch.eye(landmarks, dtype=q.dtype, device=q.device)
            for _ in range(pinv_iters):
                az = a @ z
                z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
            o = f @ (z @ (bm @ ve))
        if conv is not None and n > 0:
            o = o + F.conv2d(ve[None], conv[:, None, :, None], padding=(conv.shape[1] // 2, 0), groups=H)[0]
        outs.append(F.pad(o, (0, 0, 0, L - n)))
    return torch.stack(outs)


def linformer_weights(hp, max_len):
    """Linformer's length projection E (max_len, k), shared by K, V and all heads of a layer (LRA's
    `lr_kernel`), initialised as LRA's block does: xavier_uniform, U(-a, a) with a = sqrt(6 / (max_len + k))."""
    k = hp["k"]
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"linformer needs a positive integer k, got {k}")
    a = math.sqrt(6.0 / (max_len + k))
    return nn.Parameter(torch.empty(max_len, k).uniform_(-a, a))


def linformer_attention(q, k, v, key_mask, proj, attn_dropout, training):
    """Linformer (docs/attention.md 6.2): E = proj[:L], masked keys' rows of k and v zeroed,
    K' = E^T k, V' = E^T v (B, H, k, d), then softmax(q K'^T / sqrt(d)) V' with dropout on the k-wide
    probabilities."""
    e = proj[: q.shape[2]]
    if key_mask is not None:
        hidden = ~key_mask[:, None, :, None]
        k, v = k.masked_fill(hidden, 0.0), v.masked_fill(hidden, 0.0)
    kp = torch.einsum("lr,bhld->bhrd", e, k)
    vp = torch.einsum("lr,bhld->bhrd", e, v)
    p = torch.softmax((q * (1.0 / math.sqrt(q.shape[-1]))) @ kp.transpose(-1, -2), dim=-1)
    return F.dropout(p, attn_dropout, training) @ vp


def synthesizer_weights(hp, heads, max_len, d):
    """Synthesizer's learned weights by mode, as (name, parameter) in lra's order, initialised as LRA's block
    does (xavier_uniform with JAX's fans of a 3-d shape, where the head axis multiplies both fans; biases 0):
    random: random (H, max_len, max_len); factorized: random_a, random_b (H, max_len, k);
    dense: w1 (H, d, d), b1 (H, d), w2 (H, max_len, d), b2 (H, max_len)."""
    k = hp["k"]
    if hp["mode"] not in ("random", "factorized", "dense"):
        raise ValueError(f"synthesizer mode must be random, factorized or dense, got {hp['mode']}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"synthesizer needs a positive integer k, got {k}")

    def xavier(shape, fans):
        a = math.sqrt(6.0 / fans)
        return nn.Parameter(torch.empty(*shape).uniform_(-a, a))

    if hp["mode"] == "random":
        return [("random", xavier((heads, max_len, max_len), 2 * heads * max_len))]
    if hp["mode"] == "factorized":
        return [(n, xavier((heads, max_len, k), heads * (max_len + k))) for n in ("random_a", "random_b")]
    return [("w1", xavier((heads, d, d), 2 * d)), ("b1", nn.Parameter(torch.zeros(heads, d))),
            ("w2", xavier((heads, max_len, d), max_len + d)), ("b2", nn.Parameter(torch.zeros(heads, max_len)))]


def synthesizer_attention(q, k, v, key_mask, causal, mode, dot_product, weights, attn_dropout, training):
    """Synthesizer: synthetic logits per head over the padded length L, random R[:, :L, :L], factorized
    A[:, :L] B[:, :L]^T, or dense W2[:, :L] relu(W1 q_i + b1) + b2[:, :L] from each query row q_i; plus
    q k^T / sqrt(d) when dot_product (LRA's plain sum); masked keys (and, causal, keys j > i) at the most
    negative finite value as softmax_attention, softmax, dropout, weighted sum of v."""
    B, H, L, d = q.shape
    if mode == "random":
        s = weights[0][None, :, :L, :L]
    elif mode == "factorized":
        s = (weights[0][:, :L] @ weights[1][:, :L].transpose(-1, -2))[None]
    else:
        w1, b1, w2, b2 = weights
        hid = F.relu(torch.einsum("bhld,hed->bhle", q, w1) + b1[None, :, None, :])
        s = torch.einsum("bhle,hme->bhlm", hid, w2[:, :L]) + b2[None, :, None, :L]
    if dot_product:
        s = s + (q * (1.0 / math.sqrt(d))) @ k.transpose(-1, -2)
    s = s.expand(B, H, L, L)
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], torch.finfo(s.dtype).min)
    if causal:
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device=s.device).triu(1), torch.finfo(s.dtype).min)
    return F.dropout(torch.softmax(s, dim=-1), attn_dropout, training) @ v


def redraw_interval(redraw):
    """Training forwards per draw of W: "step" 1, "interval:N" N, "never" 0 (no redraw)."""
    if redraw in ("step", "never"):
        return 1 if redraw == "step" else 0
    n = redraw[len("interval:"):] if redraw.startswith("interval:") else ""
    if not n.isdigit() or int(n) == 0:
        raise ValueError(f"redraw must be step, never or interval:N with N > 0, got '{redraw}'")
    return int(n)


_M32 = 0xFFFFFFFF


def philox_block(seed, stream, block):
    """lib/core/rng.h's Philox4x32-10: the four 32-bit words of block `block` of stream `stream`."""
    c = [block & _M32, block >> 32 & _M32, stream & _M32, stream >> 32 & _M32]
    k0, k1 = seed & _M32, seed >> 32 & _M32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & _M32, (p0 >> 32) ^ c[3] ^ k1, p0 & _M32]
        k0, k1 = (k0 + 0x9E3779B9) & _M32, (k1 + 0xBB67AE85) & _M32
    return c


class PhiloxRng:
    """lib/core/rng.h's Rng: a sequential generator over one stream (next_u32, next_u64, below)."""

    def __init__(self, seed, stream):
        self.seed, self.stream, self.block, self.buf = seed, stream, 0, []

    def next_u32(self):
        if not self.buf:
            self.buf = philox_block(self.seed, self.stream, self.block)
            self.block += 1
        return self.buf.pop(0)

    def next_u64(self):
        return self.next_u32() << 32 | self.next_u32()

    def below(self, n):
        if n <= 1:
            return 0
        limit = (1 << 64) - 1 - ((1 << 64) - 1) % n
        while True:
            v = self.next_u64()
            if v < limit:
                return v % n


def bigbird_key_blocks(n, h, qb, seed, layer, block, random, random_limit):
    """lib/attn/block_sparse.cpp's BigBirdPattern::key_blocks: the key blocks of query block qb."""
    nb = (n + block - 1) // block
    if qb in (0, nb - 1):
        return list(range(nb))
    taken = {0, qb - 1, qb, qb + 1, nb - 1}
    rest = [j for j in range(nb) if j not in taken and (random_limit == 0 or j * block < random_limit)]
    rng = PhiloxRng(seed, (7 << 56) | (layer << 48) | (h << 36) | (qb << 18) | n)
    for i in range(min(random, len(rest))):
        j = i + rng.below(len(rest) - i)
        rest[i], rest[j] = rest[j], rest[i]
        taken.add(rest[i])
    return sorted(taken)


def sparse_pattern(name, hp, n, h, layer, seed):
    """The (n, n) bool matrix of keys each query may see under a block-sparse variant's pattern, before the
    key mask and causality (lib/attn/block_sparse.h)."""
    pos = torch.arange(n)
    q, k = pos[:, None], pos[None, :]
    if name == "local":
        return q // hp["block"] == k // hp["block"]
    if name == "sparse":
        b, c = hp["block"], hp["summary"]
        allowed = (q // b == k // b) | (k % b >= b - c)
        return allowed & (k // b <= q // b) if hp["causal"] else allowed
    if name == "longformer":
        allowed = (q - k).abs() <= hp["window"] // 2
        for g in hp["global"]:
            allowed = allowed | (q == g) | (k == g)
        return allowed
    allowed = torch.zeros(n, n, dtype=torch.bool)
    b = hp["block"]
    for qb in range((n + b - 1) // b):
        for j in bigbird_key_blocks(n, h, qb, seed, layer, b, hp["random"], hp["random_limit"]):
            allowed[qb * b:(qb + 1) * b, j * b:(j + 1) * b] = True
    return allowed


def block_sparse_attention(name, hp, q, k, v, key_mask, layer, seed, attn_dropout, training):
    """local, sparse, longformer and bigbird as softmax attention under their pattern's mask. lra packs
    examples without padding and builds each pattern from the example's length (bigbird's depends on it):
    here an example's length is one past its last unmasked position."""
    B, H, L, _ = q.shape
    allowed = torch.zeros(B, H, L, L, dtype=torch.bool)
    for b in range(B):
        n = L if key_mask is None else int(key_mask[b].nonzero().max()) + 1
        for h in range(H):
            allowed[b, h, :n, :n] = sparse_pattern(name, hp, n, h, layer, seed)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    if hp["causal"]:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool).tril()
    s = ((q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)).masked_fill(~allowed, torch.finfo(q.dtype).min)
    return F.dropout(torch.softmax(s, dim=-1), attn_dropout, training) @ v


def sinkhorn_weights(hp, heads, d, max_len):
    """The sort net of Sparse Sinkhorn attention, as (name, parameter) in lra's order: mlp: sort_w1 (H, d, d),
    sort_b1 (H, d), sort_w2 (H, d, max_blocks), sort_b2 (H, max_blocks); linear (LRA's code): sort_w
    (d, max_blocks) for every head. Weights xavier_uniform, biases 0."""
    mb = hp["max_blocks"] or -(-max_len // hp["block"])  # 0: what the longest example needs

    def xavier(shape, fans):
        a = math.sqrt(6.0 / fans)
        return nn.Parameter(torch.empty(*shape).uniform_(-a, a))

    if hp["sort_net"] == "linear":
        return [("sort_w", xavier((d, mb), d + mb))]
    if hp["sort_net"] != "mlp":
        raise ValueError(f"sinkhorn sort_net must be mlp or linear, got {hp['sort_net']}")
    return [("sort_w1", xavier((heads, d, d), 2 * d)), ("sort_b1", nn.Parameter(torch.zeros(heads, d))),
            ("sort_w2", xavier((heads, d, mb), d + mb)), ("sort_b2", nn.Parameter(torch.zeros(heads, mb)))]


def sinkhorn_attention(q, k, v, key_mask, hp, weights, attn_dropout, training):
    """Sparse Sinkhorn attention (Tay et al. 2020) as lib/attn/sinkhorn.cpp, on the padded length L cut into
    blocks of w = hp["block"] rows. Masked keys are zeroed; the blocks with a real key (active) are the only
    ones sorted. Block sums s -> sort net -> R (key block m, query block l) -> R / temperature, normalised in
    log space (sinkhorn: rows over l then columns over m, sinkhorn_iters times; softmax: columns once) ->
    perm. Sorted block l = sum_m perm[m, l] block m. Each query of an active block attends to its block's
    real keys and to the sorted slots some block has a real key at: one softmax (combine joint) or one per
    half with the outputs added (sum); the queries of inactive blocks output 0."""
    B, H, L, d = q.shape
    w = hp["block"]
    nb = -(-L // w)
    if nb > hp["max_blocks"]:
        raise ValueError(f"sinkhorn: {L} rows make {nb} blocks of {w}, more than max_blocks={hp['max_blocks']}")
    pad = nb * w - L
    real = key_mask if key_mask is not None else torch.ones(B, L, dtype=torch.bool, device=q.device)
    real = torch.cat((real, torch.zeros(B, pad, dtype=torch.bool, device=q.device)), dim=1)
    q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    keep = real[:, None, :, None]
    kb = (k * keep).reshape(B, H, nb, w, d)
    vb = (v * keep).reshape(B, H, nb, w, v.shape[-1])
    rb = real.reshape(B, nb, w)
    active = rb.any(-1)
    s = kb.sum(3)
    if hp["sort_net"] == "mlp":
        w1, b1, w2, b2 = weights
        hid = F.relu(s @ w1 + b1[:, None, :])
        r = F.relu(hid @ w2[:, :, :nb] + b2[:, None, :nb])
    else:
        r = s @ weights[0][:, :nb]
    neg = torch.finfo(q.dtype).min
    pair = (active[:, :, None] & active[:, None, :])[:, None]
    x = (r / hp["temperature"]).masked_fill(~pair, neg)
    dims = [-1, -2] * hp["sinkhorn_iters"] if hp["sort_activation"] == "sinkhorn" else [-2]
    for dim in dims:
        x = (x - torch.logsumexp(x, dim=dim, keepdim=True)).masked_fill(~pair, neg)
    perm = torch.exp(x).masked_fill(~pair, 0.0)
    ks = torch.einsum("bhml,bhmjd->bhljd", perm, kb)
    vs = torch.einsum("bhml,bhmjd->bhljd", perm, vb)
    seen = rb.any(1)
    ok = torch.cat((rb[:, None, :, None, :], seen[:, None, None, None, :].expand(B, 1, nb, 1, w)), dim=-1)
    qb = q.reshape(B, H, nb, w, d) * (1.0 / math.sqrt(d))
    sc = torch.cat((qb @ kb.transpose(-1, -2), qb @ ks.transpose(-1, -2)), dim=-1).masked_fill(~ok, neg)
    if hp["combine"] == "joint":
        p = torch.softmax(sc, dim=-1)
    else:
        p = torch.cat((torch.softmax(sc[..., :w], dim=-1), torch.softmax(sc[..., w:], dim=-1)), dim=-1)
    o = F.dropout(p, attn_dropout, training) @ torch.cat((vb, vs), dim=3)
    o = o * active[:, None, :, None, None]
    return o.reshape(B, H, nb * w, -1)[:, :, :L]


def reformer_rotations(hashes, buckets, d, seed, layer, step):
    """The rotations lib/attn/reformer.cpp draws for (seed, layer, step): round r's d x buckets/2 standard
    normals, row-major, from lra's Rng on stream 0x52 << 56 | layer << 40 | r << 32 | (step mod 2^32)
    (Box-Muller on 53-bit uniforms, the second value dropped). Returns (hashes, d, buckets/2) float64."""
    half, out = buckets // 2, []
    for r in range(hashes):
        rng = PhiloxRng(seed, (0x52 << 56) | (layer << 40) | (r << 32) | (step & _M32))

        def uniform():
            return (rng.next_u64() >> 11) * (1.0 / 9007199254740992.0)

        vals = []
        for _ in range(d * half):
            u1 = uniform()
            while u1 <= 0.0:
                u1 = uniform()
            vals.append(math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * uniform()))
        out.append(torch.tensor(vals, dtype=torch.float64).reshape(d, half))
    return torch.stack(out)


def reformer_attention(q, v, key_mask, hp, rotations):
    """Reformer LSH attention as lib/attn/reformer.cpp (k is not used: keys are the queries, unit-normalised
    with norm_keys). Per example, its m real keys are sorted by (bucket, position) per round, bucket =
    argmax [q R_r | -q R_r]; chunks of c = chunk (or ceil(m / buckets) when 0) are numbered over all rounds,
    and every position (masked ones too, by where it would sort) sits in one chunk per round and sees it and
    the chunks_before chunks before it (wrapping around across rounds). One softmax over all rounds' entries
    (a key may repeat), causal keeps j <= i, self_mask drops j = i unless nothing else is left (then the
    output is v_i); logits scaled by d^-1/2 (d^1/2 with code_logit_scale). A query without any entry gives 0."""
    B, H, L, d = q.shape
    n_h, half = rotations.shape[0], rotations.shape[2]
    n_b = 2 * half
    tau = math.sqrt(d) if hp["code_logit_scale"] else 1.0 / math.sqrt(d)
    keys = F.normalize(q, dim=-1) if hp["norm_keys"] else q
    with torch.no_grad():
        proj = torch.einsum("bhld,rdk->bhrlk", q.double(), rotations.to(q.device))
        buckets = torch.cat((proj, -proj), dim=-1).argmax(dim=-1)  # (B, H, n_h, L)
    pos = torch.arange(L, device=q.device)
    hix = torch.arange(H, device=q.device)
    outs = []
    for b in range(B):
        real = torch.ones(L, dtype=torch.bool, device=q.device) if key_mask is None else key_mask[b]
        vis = pos[real]
        m = vis.numel()
        if m == 0:
            outs.append(torch.zeros_like(v[b]))
            continue
        c = min(hp["chunk"], m) if hp["chunk"] > 0 else -(-m // n_b)
        nc = -(-m // c)
        G = n_h * nc
        kb = min(hp["chunks_before"], G - 1)
        code = buckets[b] * L + pos  # (H, n_h, L): (bucket, position) order
        kcode, kidx = code[..., vis].sort(dim=-1)
        kperm = torch.full((H, n_h, nc * c), -1, dtype=torch.long, device=q.device)
        kperm[..., :m] = vis[kidx]
        rank = torch.searchsorted(kcode, code)  # real keys sorting before each position
        g = (torch.arange(n_h, device=q.device)[:, None] * nc + (rank // c).clamp(max=nc - 1)).reshape(H, n_h * L)
        seen = (torch.arange(G, device=q.device)[:, None] - torch.arange(kb + 1, device=q.device)) % G
        ent = kperm.reshape(H, G, c)[:, seen].reshape(H, G, (kb + 1) * c)  # key positions of each chunk, -1 none
        # The (round, query) pairs of each chunk, padded to the fullest chunk with -1.
        order = g.argsort(dim=-1, stable=True)
        gs = g.gather(1, order)
        counts = torch.zeros(H, G, dtype=torch.long, device=q.device).scatter_add_(1, g, torch.ones_like(g))
        slot = torch.arange(n_h * L, device=q.device) - (counts.cumsum(1) - counts).gather(1, gs)
        qidx = torch.full((H, G, int(counts.max())), -1, dtype=torch.long, device=q.device)
        qidx[hix[:, None], gs, slot] = order % L
        qq, kk = qidx.clamp(min=0), ent.clamp(min=0)
        s = tau * q[b][hix[:, None, None], qq] @ keys[b][hix[:, None, None], kk].transpose(-1, -2)
        ok = (ent >= 0)[:, :, None, :] & (qidx >= 0)[..., None]
        if hp["causal"]:
            ok = ok & (kk[:, :, None, :] <= qq[..., None])
        if hp["self_mask"]:
            ok = ok & (kk[:, :, None, :] != qq[..., None])
        # Rows without any entry get LSE = -inf, kept out of logsumexp (whose gradient there is NaN).
        s = s.masked_fill(~ok, -math.inf)
        any_ok = ok.any(dim=-1)
        lse_safe = torch.logsumexp(s.masked_fill(~any_ok[..., None], 0.0), dim=-1).masked_fill(~any_ok, 0.0)
        lse = lse_safe.masked_fill(~any_ok, -math.inf)
        o = torch.exp(s - lse_safe[..., None]) @ v[b][hix[:, None, None], kk]  # (H, G, Qmax, d)
        # Back to (round, query) order, then one softmax over the rounds' log-sum-exps.
        lse_r = torch.zeros(H, n_h * L, dtype=q.dtype, device=q.device).scatter(
            1, order, lse[hix[:, None], gs, slot]).reshape(H, n_h, L)
        o_r = torch.zeros(H, n_h * L, v.shape[-1], dtype=q.dtype, device=q.device).scatter(
            1, order[..., None].expand(-1, -1, v.shape[-1]), o[hix[:, None], gs, slot]).reshape(H, n_h, L, -1)
        found = torch.isfinite(lse_r).any(dim=1, keepdim=True)
        total = torch.logsumexp(lse_r.masked_fill(~found, 0.0), dim=1, keepdim=True).masked_fill(~found, 0.0)
        out = (torch.exp(lse_r - total)[..., None] * o_r).sum(1)
        if hp["self_mask"]:
            alone = ~found[:, 0] & real
            out = torch.where(alone[..., None], v[b], out)
        outs.append(out)
    return torch.stack(outs)


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
        self.layer = 0  # the encoder layer (bigbird's random blocks depend on it); LraClassifier sets it
        self.step = 0  # the training step whose rotations reformer draws (lra's AttnStep.step)
        if cfg["attn"] == "nystromformer":
            self.conv = nystromformer_conv(self.hp, cfg["num_heads"])
        positions = cfg["max_length"] + (1 if cfg["classifier_pool"] == "CLS" else 0)  # lra's max_len
        if cfg["attn"] == "linformer":
            self.proj = linformer_weights(self.hp, positions)
        self.synthesizer_names = []
        if cfg["attn"] == "synthesizer":
            for n, p in synthesizer_weights(self.hp, cfg["num_heads"], positions, Q // cfg["num_heads"]):
                setattr(self, n, p)
                self.synthesizer_names.append(n)
        self.sinkhorn_names = []
        if cfg["attn"] == "sinkhorn":
            for n, p in sinkhorn_weights(self.hp, cfg["num_heads"], Q // cfg["num_heads"], positions):
                setattr(self, n, p)
                self.sinkhorn_names.append(n)

    def forward(self, x, key_mask):
        B, L, _ = x.shape
        H, Q = self.cfg["num_heads"], self.cfg["qkv_dim"]
        if self.training and self.features_w is not None and self.redraw_every:
            if self.train_forwards > 0 and self.train_forwards % self.redraw_every == 0:
                self.features_w = draw_features(*self.features_w.shape, self.hp["orthogonal"]).to(self.features_w)
            self.train_forwards += 1
        q, k, v = self.qkv(x).split(Q, dim=-1)
        q, k, v = (t.reshape(B, L, H, Q // H).transpose(1, 2) for t in (q, k, v))
        if self.cfg.get("pos_emb") == "rope":
            q, k = rotary(q), rotary(k)
        name, hp = self.cfg["attn"], self.hp
        if name == "softmax":
            o = softmax_attention(q, k, v, key_mask, hp["causal"], self.cfg["attention_dropout_rate"], self.training)
        elif name == "cosformer":
            o = cosformer_attention(q, k, v, key_mask, hp["causal"], hp["eps"])
        elif name == "linear":
            o = linear_attention(q, k, v, key_mask, hp["causal"], hp["eps"])
        elif name == "performer":
            o = performer_attention(q, k, v, key_mask, hp["causal"], self.features_w, hp["feature_eps"], hp["eps"])
        elif name == "nystromformer":
            o = nystromformer_attention(q, k, v, key_mask, self.conv, hp["landmarks"], hp["pinv_iters"], hp["pinv_init"])
        elif name == "linformer":
            o = linformer_attention(q, k, v, key_mask, self.proj, self.cfg["attention_dropout_rate"], self.training)
        elif name == "synthesizer":
            o = synthesizer_attention(q, k, v, key_mask, hp["causal"], hp["mode"], hp["dot_product"],
                                      [getattr(self, n) for n in self.synthesizer_names],
                                      self.cfg["attention_dropout_rate"], self.training)
        elif name in ("local", "sparse", "longformer", "bigbird"):
            o = block_sparse_attention(name, hp, q, k, v, key_mask, self.layer, self.cfg.get("seed", 0),
                                       self.cfg["attention_dropout_rate"], self.training)
        elif name == "sinkhorn":
            o = sinkhorn_attention(q, k, v, key_mask, hp, [getattr(self, n) for n in self.sinkhorn_names],
                                   self.cfg["attention_dropout_rate"], self.training)
        elif name == "reformer":
            rot = reformer_rotations(hp["hashes"], hp["buckets"], Q // H, self.cfg.get("seed", 0), self.layer,
                                     self.step)
            o = reformer_attention(q, v, key_mask, hp, rot)
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
        if cfg.get("pos_emb") == "rope":  # positions enter through the rotation of queries and keys only
            self.pos = None
        elif cfg.get("learn_pos_emb", False):
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
        return (x if self.pos is None else x + self.pos[: x.shape[1]]), key_mask


def dual_interaction(cfg):
    """The dual encoder's interaction ("nli" or "concat") for the retrieval task, None for one-document tasks."""
    if cfg.get("task") != "retrieval":
        return None
    return cfg.get("task_params", {}).get("interaction", "nli")


class Head(nn.Module):
    """Dense(mlp) -> ReLU -> Dense(classes); the dual encoder's head (LRA's classifier_head_dual) reads
    [u, v, u*v, u-v] ("nli", the paper) or [u, v] ("concat", the code) through Dense(mlp) -> ReLU ->
    Dense(mlp // 2) -> ReLU -> Dense(classes)."""

    def __init__(self, cfg):
        super().__init__()
        D, M, C = cfg["emb_dim"], cfg["mlp_dim"], cfg["num_classes"]
        self.interaction = dual_interaction(cfg)
        if self.interaction is None:
            self.fc1 = nn.Linear(D, M)
            self.fc2 = nn.Linear(M, C)
        else:
            self.fc1 = nn.Linear((4 if self.interaction == "nli" else 2) * D, M)
            self.fc2 = nn.Linear(M, M // 2)
            self.fc3 = nn.Linear(M // 2, C)

    def forward(self, u, v=None):
        if self.interaction is None:
            return self.fc2(F.relu(self.fc1(u)))
        x = torch.cat([u, v, u * v, u - v] if self.interaction == "nli" else [u, v], dim=-1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LraClassifier(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["num_layers"])])
        for i, block in enumerate(self.layers):
            block.attn.layer = i
        self.final_ln = nn.LayerNorm(cfg["emb_dim"], eps=cfg.get("layernorm_eps", 1e-6))
        self.head = Head(cfg)

    def named_parameters(self, prefix="", recurse=True):
        """nn.Module's list, except that a module's own parameters come after its submodules' ones (nn.Module
        puts them first): lib/model/model.cpp's order, where an attention variant's learned weights (Attention's
        own parameters, e.g. layers.0.attn.conv) follow attn.out. parameters() and AdamW follow it too."""
        if not recurse:
            yield from super().named_parameters(prefix, recurse)
            return

        def walk(module, pre):
            for name, child in module.named_children():
                yield from walk(child, pre + name + ".")
            for name, p in module._parameters.items():
                if p is not None:
                    yield pre + name, p

        yield from walk(self, prefix + "." if prefix else "")

    def forward(self, tokens, key_mask, tokens2=None, key_mask2=None):
        """tokens: (B, L) long, padded; key_mask: (B, L) bool, True for real (attended) tokens, or None.
        The dual encoder (retrieval) also takes the second documents, encoded by the same weights."""
        if self.head.interaction is None:
            return self.head(self.encode(tokens, key_mask))
        return self.head(self.encode(tokens, key_mask), self.encode(tokens2, key_mask2))

    def encode(self, tokens, key_mask):
        """The pooled final representation of each sequence: (B, D)."""
        x, mask = self.embed(tokens, key_mask)
        x = F.dropout(x, self.cfg["dropout_rate"], self.training)
        for block in self.layers:
            x = block(x, mask)
        x = self.final_ln(x)
        if self.embed.has_cls:
            pooled = x[:, 0]
        elif self.cfg["classifier_pool"] == "MAX":
            # Over the real positions only; a sequence with none pools to 0, as in lra.
            if mask is None:
                return x.max(1).values
            pooled = x.masked_fill(~mask[:, :, None], float("-inf")).max(1).values
            pooled = torch.where(mask.any(1)[:, None], pooled, torch.zeros_like(pooled))
        elif mask is None:
            pooled = x.mean(1)
        else:
            m = mask.to(x.dtype)[:, :, None]
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled
