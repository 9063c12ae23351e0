"""The small models of TISC's ``embedded`` profile (offline, CPU, shipped weights).

The full TISC profile needs BLIP and Stable Diffusion (GBs, a GPU for textual
inversion). The embedded profile keeps TISC's link and its three steps with models
the team trains itself on the shared training sets (``gensemcom train tisc-embedded``,
:mod:`gensemcom.train.tisc_embedded`) and ships in ``models/weights/tisc_embedded.pt``:

* :class:`Captioner`: a *Show, Attend and Tell* captioner (Xu et al. 2015): a CNN
  turns the 64 x 64 image into an 8 x 8 grid of features; an LSTM writes the caption
  word by word, attending over the grid (soft attention ``alpha``) with a gate
  ``beta`` in (0, 1) that scales the attended image context. The CNN is the first
  three stages of the decoder's image encoder ``E``, frozen (as BLIP captions from a
  pretrained vision encoder: a CNN trained from scratch on 1,000 captioned images
  learned too little to tell images apart); the LSTM is trained on the 5,000 human
  captions of the 1,000-image Flickr8k subset with 25 % word dropout, word
  vocabulary of the words seen at least 3 times.
* Token selection: the score of a word is its gate ``beta``, the share of image
  context in the prediction of that word. It is comparable across words (unlike a
  per-word reduction of ``alpha``, which sums to one for every word) and grounded
  words (nouns, colours) score high, function words low (they are also excluded by
  :data:`gensemcom.systems.tisc.STOPWORDS`).
* :class:`InversionDecoder`: the receiver's generator, a conditional decoder
  ``G(v, c) -> image`` that plays Stable Diffusion's part: the prompt's word
  embeddings (a token table of ``dim`` = 512, factorised through 128) are averaged
  into the context ``c``; the placeholder's embedding ``v`` (the analog payload)
  enters on its own; a convolutional decoder paints a 64 x 64 image, resized to the
  sent image's size. An image encoder ``E`` (transmitter only) gives the amortised
  starting point of textual inversion; it was trained jointly with ``G`` as an
  autoencoder whose bottleneck got analog noise at random SNRs.

Textual inversion (:func:`invert`) is the paper's: ``G`` and the token table are
frozen, only ``v`` is optimised under the noise-robust loss
``E_delta ||G(v + delta, c) - x||^2`` with ``delta ~ N(0, sigma^2 I)`` and sigma set
from a training SNR (:func:`gensemcom.phy.channels.sigma_from_snr`). The loss is a
pixel loss, not the diffusion loss, because ``G`` is a one-shot decoder.

What this is not: a diffusion model. ``G`` is deterministic and small (trained in
minutes on a CPU); the received image is a blurry 64 x 64 rendition of the sent one
(a 512-d vector carries about what a 13 x 13 colour thumbnail does), and the
captions come from a captioner that has seen 1,000 Flickr photos: fluent, often
wrong on other images.
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

PAD, BOS, EOS, UNK, PLACEHOLDER_ID = 0, 1, 2, 3, 4
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<*>"]
_WORD = re.compile(r"[a-z]+")


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


# ------------------------------------------------------------------ blocks
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8 if cout >= 8 else 1, cout), nn.SiLU())


class _Trunk(nn.Module):
    """64 x 64 RGB in [0, 1] -> (B, ch[-1], 64 / 2^len(ch), ...) features."""

    def __init__(self, ch: Sequence[int] = (32, 64, 128, 128)):
        super().__init__()
        layers, cin = [], 3
        for c in ch:
            layers += [_conv(cin, c, 2), _conv(c, c)]
            cin = c
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


# ------------------------------------------------------------------ captioner
class Captioner(nn.Module):
    """Show, Attend and Tell over an 8 x 8 feature grid (see the module docstring)."""

    def __init__(self, vocab_size: int, feat: int = 128, emb: int = 128, hidden: int = 256, att: int = 128):
        super().__init__()
        self.cfg = dict(vocab_size=vocab_size, feat=feat, emb=emb, hidden=hidden, att=att)
        self.trunk = _Trunk((32, 64, feat))  # 64 x 64 -> 8 x 8 x feat: E's first three stages, frozen
        self.embed = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.init_h = nn.Linear(feat, hidden)
        self.init_c = nn.Linear(feat, hidden)
        self.att_f = nn.Linear(feat, att)
        self.att_h = nn.Linear(hidden, att)
        self.att_v = nn.Linear(att, 1)
        self.gate = nn.Linear(hidden, 1)
        self.lstm = nn.LSTMCell(emb + feat, hidden)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(hidden, vocab_size)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        f = self.trunk(img)  # (B, C, 8, 8)
        return f.flatten(2).transpose(1, 2)  # (B, 64, C)

    def _start(self, f: torch.Tensor):
        m = f.mean(1)
        return torch.tanh(self.init_h(m)), torch.tanh(self.init_c(m)), self.att_f(f)

    def _step(self, f, pf, word, h, c):
        a = torch.softmax(self.att_v(torch.tanh(pf + self.att_h(h).unsqueeze(1))).squeeze(-1), dim=1)  # (B, 64)
        beta = torch.sigmoid(self.gate(h))  # (B, 1)
        ctx = beta * (a.unsqueeze(-1) * f).sum(1)
        h, c = self.lstm(torch.cat([self.embed(word), ctx], 1), (h, c))
        return self.out(self.drop(h)), h, c, a, beta.squeeze(1)

    def forward(self, img: torch.Tensor, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. ``ids`` (B, T) start with BOS; returns logits (B, T-1, V)
        predicting ``ids[:, 1:]`` and attention (B, T-1, 64)."""
        f = self.features(img)
        h, c, pf = self._start(f)
        logits, alphas = [], []
        for t in range(ids.shape[1] - 1):
            lo, h, c, a, _ = self._step(f, pf, ids[:, t], h, c)
            logits.append(lo)
            alphas.append(a)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    @torch.no_grad()
    def generate(self, img: torch.Tensor, max_len: int = 16) -> Tuple[List[int], np.ndarray, np.ndarray]:
        """Greedy caption of one image (1, 3, 64, 64): (ids without BOS/EOS, betas
        (T,), alphas (T, 64)); ``<unk>`` and ``<*>`` are never emitted."""
        f = self.features(img)
        h, c, pf = self._start(f)
        word = torch.tensor([BOS])
        ids, betas, alphas = [], [], []
        for _ in range(int(max_len)):
            lo, h, c, a, beta = self._step(f, pf, word, h, c)
            lo[:, [PAD, BOS, UNK, PLACEHOLDER_ID]] = -float("inf")
            if ids:  # no immediate repetition
                lo[:, ids[-1]] = -float("inf")
            word = lo.argmax(1)
            w = int(word)
            if w == EOS:
                break
            ids.append(w)
            betas.append(float(beta))
            alphas.append(a[0].numpy())
        return ids, np.asarray(betas, np.float64), np.asarray(alphas).reshape(len(ids), -1)


# ------------------------------------------------------------------ inversion decoder
class InversionDecoder(nn.Module):
    """Token table + context, amortised encoder ``E`` and generator ``G`` (module docstring)."""

    def __init__(self, vocab_size: int, dim: int = 512, tok: int = 128, base: int = 64, res: int = 64):
        super().__init__()
        self.cfg = dict(vocab_size=vocab_size, dim=dim, tok=tok, base=base, res=res)
        self.dim, self.res = dim, res
        self.tok_low = nn.Embedding(vocab_size, tok, padding_idx=PAD)
        self.tok_up = nn.Linear(tok, dim, bias=False)
        self.null = nn.Parameter(torch.zeros(dim))  # the context of an empty prompt
        # E: 64 -> 4 x 4 x base -> dim
        self.enc = _Trunk((32, 64, base * 2, base))
        self.enc_head = nn.Linear(base * 16, dim)
        # G: [v, c] -> 4 x 4 x 128 -> 64 x 64
        self.g_head = nn.Sequential(nn.Linear(2 * dim, 128 * 16), nn.SiLU())
        ups, cin = [], 128
        for cout in (128, 96, 64, 32):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, cout), _conv(cout, cout)]
            cin = cout
        self.g_body = nn.Sequential(*ups, nn.Conv2d(cin, 3, 3, 1, 1))

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

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, res, res) in [0, 1] -> starting embedding (B, dim)."""
        return self.enc_head(self.enc(img).flatten(1))

    def generate(self, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Embedding (B, dim) and context (B, dim) -> image (B, 3, res, res) in [0, 1]."""
        x = self.g_head(torch.cat([v, c], 1)).view(-1, 128, 4, 4)
        return torch.sigmoid(self.g_body(x))


# ------------------------------------------------------------------ bundle
class EmbeddedTISC:
    """The shipped bundle: vocabulary, captioner and inversion decoder (float32, eval)."""

    def __init__(self, vocab: Vocab, captioner: Captioner, decoder: InversionDecoder, record: Optional[dict] = None):
        self.vocab, self.captioner, self.decoder = vocab, captioner.eval(), decoder.eval()
        for p in list(self.captioner.parameters()) + list(self.decoder.parameters()):
            p.requires_grad_(False)
        self.record = record or {}

    @property
    def dim(self) -> int:
        return self.decoder.dim

    @property
    def res(self) -> int:
        return self.decoder.res

    def save(self, path, record: Optional[dict] = None, half: bool = True) -> None:
        """Write the bundle (float16 weights by default) to ``path``."""
        def sd(m):
            return {k: (v.half() if half and v.is_floating_point() else v) for k, v in m.state_dict().items()}

        torch.save({"format": "gensemcom-tisc-embedded-1", "vocab": self.vocab.itos,
                    "captioner": {"config": self.captioner.cfg, "state_dict": sd(self.captioner)},
                    "decoder": {"config": self.decoder.cfg, "state_dict": sd(self.decoder)},
                    "record": record if record is not None else self.record}, str(path))

    @classmethod
    def load(cls, path=None) -> "EmbeddedTISC":
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
        if not isinstance(blob, dict) or blob.get("format") != "gensemcom-tisc-embedded-1":
            raise ValueError(f"{path} is not a TISC embedded weights file")
        vocab = Vocab(blob["vocab"][len(SPECIALS):])
        cap = Captioner(**blob["captioner"]["config"])
        cap.load_state_dict({k: v.float() for k, v in blob["captioner"]["state_dict"].items()})
        dec = InversionDecoder(**blob["decoder"]["config"])
        dec.load_state_dict({k: v.float() for k, v in blob["decoder"]["state_dict"].items()})
        return cls(vocab, cap, dec, blob.get("record"))

    # -------------------------------------------------------------- helpers
    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, res, res) float in [0, 1] (bicubic, area-antialiased)."""
        from PIL import Image

        im = Image.fromarray(np.asarray(image, np.uint8)).resize((self.res, self.res), Image.BICUBIC,
                                                                  reducing_gap=2.0)
        return torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)

    def caption(self, image: np.ndarray, max_len: int = 16) -> Tuple[List[int], np.ndarray]:
        """Caption ids (no BOS/EOS) and the per-word gate scores."""
        ids, betas, _ = self.captioner.generate(self.to_tensor(image), max_len)
        return ids, betas

    def init_embedding(self, image: np.ndarray) -> np.ndarray:
        """``E(x)``: the amortised starting point of textual inversion (dim,)."""
        with torch.no_grad():
            return self.decoder.encode(self.to_tensor(image))[0].numpy().astype(np.float32)

    def render(self, ids: Sequence[int], v: np.ndarray, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """``G(v, c(ids))`` as an (H, W, 3) uint8 image, resized to ``size`` (H, W) when given."""
        from PIL import Image

        with torch.no_grad():
            c = self.decoder.context(torch.tensor([list(ids) or [PAD]], dtype=torch.long))
            x = self.decoder.generate(torch.as_tensor(np.asarray(v, np.float32)).view(1, -1), c)[0]
        img = (x.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        if size is not None and tuple(size) != img.shape[:2]:
            img = np.asarray(Image.fromarray(img).resize((int(size[1]), int(size[0])), Image.BICUBIC))
        return img


def invert(bundle: EmbeddedTISC, image: np.ndarray, ids: Sequence[int], init, steps: int = 60, lr: float = 0.05,
           train_snr_db: Optional[float] = -5.0, draws: int = 4, seed: int = 0,
           progress: bool = True) -> Tuple[np.ndarray, List[float]]:
    """Noise-robust textual inversion of ``v`` against the frozen generator.

    Minimises ``mean_k ||G(v + delta_k, c(ids)) - x||^2`` over ``v`` alone (Adam),
    ``delta_k ~ N(0, sigma^2 I)`` drawn afresh every step (``draws`` per step), sigma
    from :func:`gensemcom.phy.channels.sigma_from_snr` of the current ``v``
    (``train_snr_db=None``: no noise). Every weight of the bundle stays unchanged.

    Returns:
        tuple[np.ndarray, list[float]]: the embedding (float32, (dim,)) and the loss
        of every step.
    """
    from tqdm.auto import tqdm

    from ..phy.channels import sigma_from_snr

    x = bundle.to_tensor(image)
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
        loss = F.mse_loss(y, x.expand_as(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return v.detach()[0].numpy().astype(np.float32), losses


def parameter_counts(bundle: EmbeddedTISC) -> Dict[str, int]:
    return {"captioner": sum(p.numel() for p in bundle.captioner.parameters()),
            "decoder": sum(p.numel() for p in bundle.decoder.parameters())}
