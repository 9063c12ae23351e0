"""TISC, profile ``embedded``: the same link with the small models the team trained and
ships (:mod:`gensemcom.models.tisc_embedded`) on two real pretrained networks that work
offline (EfficientNet-Lite0, TAEF2): a Show, Attend and Tell captioner whose word ids
are the digital part, the placeholder chosen by its visual gate, noise-robust textual
inversion of a 512-d ``v`` against a frozen generator of TAEF2 latents, and that
generator with TAEF2's decoder at the receiver. CPU, offline, about a second per image;
128 x 128 renditions of the sent image's layout and colours."""
from __future__ import annotations

import math
import time
from typing import List, Optional, Sequence

import numpy as np

from ..base import Option
from ..registry import register_system
from .common import PLACEHOLDER, TISC_OPTIONS, TISCBase, select_token

#: defaults of the embedded profile
EMBEDDED_DEFAULTS = dict(ti_steps=100, lr=0.05, caption_max_tokens=16, ti_space="latent", ti_draws=4)


@register_system("tisc", profiles="embedded")
class TISCEmbedded(TISCBase):
    """TISC with the shipped small captioner and decoder (CPU, offline).

    Args:
        profile (str): ``"embedded"``.
        device (str | None): ignored: the small models always run on the CPU.
        weights (str | None): the bundle (default: the shipped
            ``models/weights/tisc_embedded.pt``).
        on_crc_fail, ti_steps, lr, train_snr_db, seed, caption_max_tokens,
            fallback_norm, progress, threads: as :class:`TISCFull` (defaults 100
            steps, lr 0.05, 16 words; the fallback norm is the mean norm of ``v`` over
            the decoder's validation images).
        ti_space (str | None): textual inversion's loss, ``"latent"`` (TAEF2 latent of
            the low-passed image) or ``"pixel"`` (the image through TAEF2's decoder);
            default :data:`EMBEDDED_DEFAULTS`.
        ti_draws (int | None): noise draws per inversion step.

    Raises:
        ValueError: ``on_crc_fail`` or ``ti_space``.
        FileNotFoundError: the bundle is missing.
    """

    OPTIONS = TISC_OPTIONS + (
        Option("weights", None, "the embedded bundle (default: the shipped weights)"),
        Option("ti_space", None, "textual inversion's loss: 'latent' (TAEF2 latent) or 'pixel' (through TAEF2's "
                                 "decoder)", ("latent", "pixel")),  # models.tisc_embedded.TI_SPACES: no torch here
        Option("ti_draws", None, "noise draws per textual-inversion step"))

    def __init__(self, profile: str = "embedded", device: Optional[str] = None, weights: Optional[str] = None,
                 on_crc_fail: str = "embedding-only", ti_steps: Optional[int] = None, lr: Optional[float] = None,
                 train_snr_db: Optional[float] = -5.0, seed: int = 0, caption_max_tokens: Optional[int] = None,
                 fallback_norm: Optional[float] = None, progress: bool = True, threads: Optional[int] = None,
                 ti_space: Optional[str] = None, ti_draws: Optional[int] = None):
        from ...models.tisc_embedded import PLACEHOLDER_ID, TI_SPACES, EmbeddedTISC

        self._policy(on_crc_fail)
        d = EMBEDDED_DEFAULTS  # small models: always on the CPU, whatever the worker's device
        self.profile, self.device = "embedded", "cpu"
        self.threads = int(threads) if threads else None
        self._apply_threads()
        self.bundle = EmbeddedTISC.load(weights)
        self.resolution = self.bundle.res
        self.seed = int(seed)
        self.ti_steps = int(d["ti_steps"] if ti_steps is None else ti_steps)
        self.lr = float(d["lr"] if lr is None else lr)
        self.train_snr_db = None if train_snr_db is None else float(train_snr_db)
        self.caption_max_tokens = int(d["caption_max_tokens"] if caption_max_tokens is None else caption_max_tokens)
        self.progress = bool(progress)
        self.ti_space = str(d["ti_space"] if ti_space is None else ti_space)
        if self.ti_space not in TI_SPACES:  # refused at build, not at the first image
            raise ValueError(f"ti_space must be one of {TI_SPACES}, got {self.ti_space!r}")
        self.ti_draws = int(d["ti_draws"] if ti_draws is None else ti_draws)
        self.token_id = PLACEHOLDER_ID
        self.dim = self.bundle.dim
        self.vocab_size = len(self.bundle.vocab)
        #: the mean norm of v over the decoder's validation images: the scale assumed when the header is lost
        self.expected_norm = float(fallback_norm) if fallback_norm else \
            float(self.bundle.record.get("expected_norm") or math.sqrt(self.dim))

    def _prepare_embedded(self, img: np.ndarray) -> dict:
        """Embedded transmitter front end: caption, gate-scored selection, E(x)."""
        b = self.bundle
        t0 = time.perf_counter()
        feats = b.features(img)
        ids, betas = b.caption(img, self.caption_max_tokens, feats=feats)
        t1 = time.perf_counter()
        words = b.vocab.tokens(ids)
        try:
            k = select_token(words, betas) if ids else None
        except ValueError:
            k = None
        if k is None:
            word, pos, kept = None, len(ids), list(ids)
        else:
            word, pos, kept = words[k], k, ids[:k] + ids[k + 1:]
        init = b.init_embedding(img, feats=feats)
        return {"caption": b.vocab.decode(ids), "ids": ids, "word": word, "kept": kept, "pos": int(pos),
                "init": init, "scores": [float(x) for x in betas], "words": words,
                "caption_ms": (t1 - t0) * 1e3, "select_ms": (time.perf_counter() - t1) * 1e3}

    def _invert(self, img: np.ndarray):
        from ...models.tisc_embedded import invert

        p = self._prepare_embedded(img)
        v, losses = invert(self.bundle, img, p["kept"], p["init"], self.ti_steps, self.lr, self.train_snr_db,
                           draws=self.ti_draws, seed=self.seed, progress=self.progress, space=self.ti_space)
        return p, v, losses

    def prompt_text(self, kept: Sequence[int], pos: int) -> str:
        left, right = self.bundle.vocab.decode(kept[:pos]), self.bundle.vocab.decode(kept[pos:])
        return " ".join(t for t in (left, PLACEHOLDER, right) if t)

    def _generate(self, ids: List[int], v: np.ndarray, seed: int, size) -> np.ndarray:
        return self.bundle.render(ids, v, size)  # the context skips the placeholder's id
