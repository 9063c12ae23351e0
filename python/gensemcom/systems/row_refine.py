"""Row refinement: the smallest system that holds a conversation (two rounds, feedback).

A teaching and test system for the feedback path (no models, every profile the same):

* **round 0**, transmitter: the image, resized to ``res`` x ``res``, goes over the
  analog path (segment ``pixels``, values in [-0.5, 0.5]); the digital part carries
  each row's mean, quantised to 8 bits, as an exact check the receiver can trust.
* **feedback**, receiver: it compares each received row's mean with the exact one and
  flags the ``k`` rows that disagree most (the rows the channel hurt most); their
  indices go back over the return link in a digital-only feedback frame.
* **round 1**, transmitter: it resends exactly the flagged rows (segment ``rows``);
  the receiver averages each with its first copy (equal-SNR maximum-ratio
  combining: the noise power on those rows halves) and the exchange ends.

A lost round-0 digital part loses the image (the pixels' scale and the exact row means
travelled in it); a lost feedback frame makes round 1 an empty frame (nothing to
resend); a lost round-1 digital part still combines, since the receiver knows which
rows it asked for (their scale estimated from the first copies). The
image comes back at the sent size (bilinear). Channel uses: ``3 res^2 / 2`` analog +
``3 k res / 2`` analog in round 1, plus the digital parts and the feedback.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..codecs import CodecError, pack_ids, unpack_ids
from ..frame import SemanticFrame
from .base import LinkContext, Option, SemanticSystem, as_image, header_size
from .registry import register_system


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def worst_rows(received: np.ndarray, row_means: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` rows of ``received`` ((res, res, 3), values in [0, 1]) whose mean is
    farthest from the exact ``row_means`` (uint8, 0..255), sorted ascending (ties:
    lower row first)."""
    err = np.abs(received.mean(axis=(1, 2)) * 255.0 - row_means.astype(np.float64))
    order = np.argsort(-err, kind="stable")[:k]
    return np.sort(order)


@register_system("row-refine", offline=("full", "embedded", "tiny"), summary="two rounds: analog thumbnail, the receiver flags its worst rows "
                 "over the return link, they are resent and combined (feedback demo; no models)")
class RowRefine(SemanticSystem):
    """Two-round row refinement over a feedback link (no models).

    Args:
        profile (str), device (str | None): accepted for the common interface.
        res (int): side of the square thumbnail sent (even, 4..256).
        rows (int): rows the receiver asks to be resent (1..res).
    """

    OPTIONS = (Option("res", 32, "side of the square thumbnail sent (even, 4..256)"),
               Option("rows", 8, "rows the receiver asks to be resent"))
    max_rounds = 2

    def __init__(self, profile: str = "tiny", device: Optional[str] = None, res: int = 32, rows: int = 8):
        self.profile = profile
        self.res, self.k = int(res), int(rows)
        if not (4 <= self.res <= 256 and self.res % 2 == 0) or not 1 <= self.k <= self.res:
            raise ValueError(f"row-refine needs an even res in 4..256 and 1 <= rows <= res, got {res}, {rows}")

    # ------------------------------------------------------------ transmitter
    def encode(self, image: np.ndarray, ctx: LinkContext) -> SemanticFrame:
        img = as_image(image)
        x = _resize(img, self.res, self.res).astype(np.float32) / 255.0
        if ctx.round == 0:
            means = np.round(x.mean(axis=(1, 2)) * 255.0).astype(np.uint8)
            header = {"size": [int(img.shape[0]), int(img.shape[1])]}
            return SemanticFrame(self.name, means.tobytes(), {"pixels": (x - 0.5).reshape(-1)}, header,
                                 {"report": {"round": 0}})
        fb = ctx.feedback
        rows = []
        if fb is not None and fb.crc_ok is not False:
            try:
                rows = [r for r in unpack_ids(fb.digital, fb.header.get("dt", "")) if 0 <= r < self.res]
            except CodecError:
                rows = []
        digital, dt = pack_ids(rows)
        seg = {"rows": (x[rows] - 0.5).reshape(-1)} if rows else None
        return SemanticFrame(self.name, digital, seg, {"dt": dt}, {"report": {"round": 1, "rows_resent": len(rows)}})

    # ------------------------------------------------------------ receiver
    def decode(self, frame: SemanticFrame, ctx: LinkContext) -> Optional[np.ndarray]:
        st = ctx.state
        if ctx.round == 0:
            y = frame.segment("pixels")
            means = np.frombuffer(frame.digital, np.uint8)
            size = header_size(frame.header.get("size"))
            if not frame.crc_ok or y.size != 3 * self.res * self.res or means.size != self.res or size is None:
                return None  # the header (and the scale of the pixels) is lost: nothing to show
            st.update(image=np.clip(y.reshape(self.res, self.res, 3) + 0.5, 0.0, 1.0), size=size, means=means)
            return self._out(st)
        if "image" not in st:  # round 0 left nothing to refine
            return None
        rows, img = st.get("asked", []), st["image"]
        y = frame.segment("rows") if frame.crc_ok else frame.analog
        if rows and y.size == 3 * self.res * len(rows):
            if not frame.crc_ok:  # unit-power symbols: rescale by the RMS the first copies had
                y = y * np.float32(np.sqrt(np.mean((img[rows] - 0.5) ** 2) / max(float(np.mean(y ** 2)), 1e-12)))
            new = np.clip(y.reshape(len(rows), self.res, 3) + 0.5, 0.0, 1.0)
            img[rows] = 0.5 * (img[rows] + new)
        return self._out(st)

    def feedback(self, frame: SemanticFrame, image, ctx: LinkContext) -> Optional[SemanticFrame]:
        st = ctx.state
        if ctx.round != 0 or st.get("means") is None:
            return None  # nothing exact to compare with: the exchange ends
        rows = [int(r) for r in worst_rows(st["image"], st["means"], self.k)]
        st["asked"] = rows
        digital, dt = pack_ids(rows)
        return SemanticFrame(self.name, digital, None, {"dt": dt})

    def _out(self, st) -> np.ndarray:
        img = np.round(st["image"] * 255.0).astype(np.uint8)
        size = st.get("size")
        if size:
            img = _resize(img, int(size[0]), int(size[1]))
        return np.ascontiguousarray(img)
