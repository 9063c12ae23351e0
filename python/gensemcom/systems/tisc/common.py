"""What every TISC backend shares: the placeholder rule, the frame layout (caption ids
digital, unit-norm embedding analog, header), the receiver's CRC-failure policy and
the options. A backend supplies the models: :meth:`TISCBase._invert` (caption,
selection, textual inversion), :meth:`TISCBase.prompt_text` and
:meth:`TISCBase._generate`."""
from __future__ import annotations

import abc
import math
import time
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ...frame import SemanticFrame
from .._caption_diffusion import TorchSystem
from ..base import LinkContext, Option, as_image, header_size

PLACEHOLDER = "<*>"


ON_CRC_FAIL = ("lost", "embedding-only")


#: words never chosen as the placeholder (function words carry no visual identity)
STOPWORDS = frozenset("""
a an the of on in at to for with without from by into onto over under near next and or but is are was were be
been being it its this that these those there here some two three four one his her their they he she we you i
my your our as up down out off very while who which what where when top front back side behind beside
""".split())


#: special tokens of the CLIP and BERT tokenizers, never selectable
SPECIAL_TOKENS = frozenset(["<|startoftext|>", "<|endoftext|>", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]",
                            "[DEC]", "<s>", "</s>", "<pad>", "<unk>", PLACEHOLDER])


# ---------------------------------------------------------------- selection
def _norm_token(tok: str) -> str:
    return str(tok).replace("</w>", "").replace("##", "").strip().lower()


def select_token(tokens: Sequence[str], scores: Sequence[float], exclude: Iterable[str] = STOPWORDS) -> int:
    """Index of the token to replace by the placeholder: the highest score wins.

    Tokens are compared lower-cased with CLIP's ``</w>`` and WordPiece's ``##``
    stripped. Special tokens (:data:`SPECIAL_TOKENS`), tokens in ``exclude`` and
    tokens without a letter or digit (punctuation) are never chosen, nor are NaN
    scores. Ties go to the earliest token.

    Args:
        tokens (Sequence[str]): the caption's tokens (or words).
        scores (Sequence[float]): one attention score per token.
        exclude (Iterable[str]): words never chosen (default :data:`STOPWORDS`).

    Returns:
        int: the index into ``tokens``.

    Raises:
        ValueError: on a length mismatch, or when no token is eligible.
    """
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    excl = {_norm_token(w) for w in exclude}
    special = {_norm_token(w) for w in SPECIAL_TOKENS}
    best, best_score = -1, -math.inf
    for i, (tok, s) in enumerate(zip(tokens, scores)):
        raw, w = str(tok).strip(), _norm_token(tok)
        s = float(s)
        if raw in SPECIAL_TOKENS or w in special or w in excl or not any(c.isalnum() for c in w) or math.isnan(s):
            continue
        if s > best_score:
            best, best_score = i, s
    if best < 0:
        raise ValueError("no eligible token: every token is a stopword, special token or punctuation")
    return best


#: options every TISC backend takes
TISC_OPTIONS = (
    Option("on_crc_fail", "embedding-only", "receiver policy when the caption (payload) is lost", ON_CRC_FAIL),
    Option("ti_steps", None, "textual-inversion steps (default: the profile's)"),
    Option("lr", None, "textual-inversion learning rate (default: the profile's)"),
    Option("train_snr_db", -5.0, "training SNR (dB) of the noise-robust loss; None: plain TI"),
    Option("seed", 0, "inversion and generation seed (sent in the header)"),
    Option("caption_max_tokens", None, "longest caption in tokens (default: the profile's)"),
    Option("fallback_norm", None, "embedding norm for embedding-only decoding (default: the expected norm)"),
    Option("progress", True, "show the textual-inversion progress bar"),
    Option("threads", None, "torch CPU threads (default: torch's setting)"),
)


#: the token-id dtype of every vocabulary under 65,536 tokens (CLIP's): not sent
DEFAULT_DT = "<u2"


class TISCBase(TorchSystem):
    """TISC transmitter and receiver over a hybrid digital (caption ids) + analog
    (placeholder embedding) frame; the backends (:class:`TISCFull`,
    :class:`TISCEmbedded`) bring the models.

    Backends set ``on_crc_fail``, ``seed``, ``token_id``, ``dim``, ``vocab_size`` and
    ``expected_norm`` in their constructors.
    """

    OPTIONS = TISC_OPTIONS

    def _policy(self, on_crc_fail: str) -> None:
        if on_crc_fail not in ON_CRC_FAIL:
            raise ValueError(f"on_crc_fail must be one of {ON_CRC_FAIL}, got {on_crc_fail!r}")
        self.on_crc_fail = on_crc_fail

    @abc.abstractmethod
    def _invert(self, img: np.ndarray):
        """Everything the transmitter computes: (dict with ``caption``, ``kept``,
        ``pos``, ``word``, ``caption_ms``, ``select_ms``; v (D,); the TI losses)."""

    @abc.abstractmethod
    def prompt_text(self, kept: Sequence[int], pos: int) -> str:
        """The hybrid prompt as text: the caption ids ``kept`` with ``<*>`` at ``pos``."""

    @abc.abstractmethod
    def _generate(self, ids: List[int], v: np.ndarray, seed: int, size) -> np.ndarray:
        """Render the prompt ``ids`` (the placeholder's id at its position) with ``v``."""

    # ------------------------------------------------------------ transmitter
    def encode(self, image: np.ndarray, ctx: Optional[LinkContext] = None) -> SemanticFrame:
        """Image -> frame: caption ids (placeholder removed) digital, ``v`` analog (its
        norm travels as the analog segment's scale in the protected header)."""
        self._apply_threads()
        from ...codecs import pack_ids

        img = as_image(image)
        t0 = time.perf_counter()
        p, v, losses = self._invert(img)
        inversion_ms = (time.perf_counter() - t0) * 1e3 - p["caption_ms"] - p["select_ms"]
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm == 0.0:
            raise RuntimeError("textual inversion produced a zero or non-finite embedding")
        analog = np.asarray(v, np.float32)
        if analog.size % 2:
            analog = np.concatenate([analog, np.zeros(1, np.float32)])
        digital, dt = pack_ids(p["kept"])
        # the protected header holds only what the receiver cannot derive: the
        # placeholder's position and the image size (the norm rides as the segment's scale)
        header = {"pos": p["pos"], "size": [int(img.shape[0]), int(img.shape[1])]}
        if dt != DEFAULT_DT:
            header["dt"] = dt
        report = {"caption": p["caption"], "word": p["word"], "prompt": self.prompt_text(p["kept"], p["pos"]),
                  "ti_steps": len(losses), "ti_loss_first": losses[0] if losses else None,
                  "ti_loss_last": losses[-1] if losses else None}
        meta = {"report": report, "caption_ms": p["caption_ms"], "select_ms": p["select_ms"],
                "inversion_ms": inversion_ms}
        return SemanticFrame(self.name, digital, analog, header, meta)

    # ------------------------------------------------------------ receiver
    def _received_ids(self, frame: SemanticFrame) -> Optional[Tuple[List[int], int]]:
        """(caption ids kept, placeholder position) from an intact digital part, else None."""
        from ...codecs import unpack_ids

        if frame.crc_ok is False:
            return None
        h = frame.header or {}
        try:
            kept = unpack_ids(frame.digital, h.get("dt", DEFAULT_DT))
            pos = int(h["pos"])
        except (KeyError, TypeError, ValueError, IndexError, OverflowError):
            return None
        if not 0 <= pos <= len(kept) or any(i >= self.vocab_size for i in kept):
            return None
        return kept, pos

    def received_text(self, frame: SemanticFrame) -> Optional[str]:
        """The hybrid prompt the receiver rendered (``<*>`` at the placeholder), or None."""
        got = self._received_ids(frame)
        return None if got is None else self.prompt_text(*got)

    def decode(self, frame: SemanticFrame, ctx: Optional[LinkContext] = None) -> Optional[np.ndarray]:
        """Received frame -> image, or None (lost digital part with ``on_crc_fail="lost"``,
        or an unusable header)."""
        self._apply_threads()
        y = np.asarray(frame.analog, np.float64)
        if y.size != self.dim + (self.dim % 2) or not np.all(np.isfinite(y)):
            return None  # not an embedding of this model (or a corrupted one)
        y = y[: self.dim]
        h = frame.header or {}
        size = header_size(h["size"]) if "size" in h else None
        if "size" in h and size is None:
            return None  # a size the receiver refuses to render (malformed, or over MAX_IMAGE_PIXELS)
        if frame.crc_ok is False:
            if self.on_crc_fail == "lost":
                return None
            if frame.header_ok:  # the header's true scale and size: v as sent, plus noise
                return self._generate([self.token_id], y, self.seed, size)
            # un-scaled unit-power symbols: sqrt(2/D) brings the vector to unit norm
            padded = self.dim + (self.dim % 2)
            v = y * math.sqrt(2.0 / padded) * self.expected_norm
            return self._generate([self.token_id], v, self.seed, None)
        got = self._received_ids(frame)
        if got is None:
            return None
        kept, pos = got
        ids = kept[:pos] + [self.token_id] + kept[pos:]
        return self._generate(ids, y, self.seed, size)
