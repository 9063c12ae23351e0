"""GNU Radio block: semantic encoder (image PDU -> SemanticFrame, computed by the worker)."""
from __future__ import annotations

import collections
import time
import uuid

import numpy as np
import pmt

from ..frame import FrameError, frame_from_pmt, frame_to_pmt, from_arrays, to_arrays
from ..phy.mcs import parse_choice, rate_label, select_mcs
from .pdu_utils import KEY_SHAPE, PduError, frame_meta, image_from_pdu, meta_get
from .worker_block import worker_block

#: images kept for the feedback rounds of their exchange (least recently used dropped)
MAX_SESSIONS = 32


class semantic_encoder(worker_block):
    """Image PDU in (``in``), SemanticFrame (PMT dict) out (``out``), computed by the
    inference worker.

    For systems that hold a conversation (task-adaptive feedback), the receiver's
    feedback frames come back on ``feedback`` (from the return link): each names its
    exchange (meta ``session``) and round, and the encoder transmits the next round of
    that exchange's image. Every frame it sends carries ``session`` and ``round`` in
    its meta; one-shot systems never get feedback.

    Args:
        system (str): semantic system, e.g. "deepjscc", "jpeg2000-ldpc", "tisc".
        profile (str): model profile: "embedded" (shipped weights), "tiny" (random
            test models), "full" (Hugging Face ids or local paths on the worker).
        snr_db (float): the SNR the transmitter assumes (fed back from the
            receiver in a real link; SNR-adaptive systems use it). Settable.
        modulation (int | str): QAM order of the digital path (rate-matched systems),
            or "auto": the MCS link adaptation picks for ``snr_db`` (as ``digital_tx`` does).
        code_rate (float | str): LDPC rate of the digital path, or "auto".
        budget_symbols (int): channel uses per image for rate-matched systems
            (0: the system's own choice).
        header_repeat (int): copies of the protected header block the link sends (they
            count in the budget).
        channel (str): "awgn" or "rayleigh": which measured BLER table link adaptation
            reads, as at ``digital_tx`` (with ``"auto"`` MCS both ends must agree, or a
            rate-matched system fills its budget at another MCS than the one sent). Settable.
        address (str): worker or broker endpoint ('' starts a local worker).
        timeout_ms (int): reply timeout per attempt.
        curve_keys (str): CURVE key directory of a remote worker ('': none).
    """

    def __init__(self, system="deepjscc", profile="embedded", snr_db=10.0, modulation="auto", code_rate="auto",
                 budget_symbols=0, address="", timeout_ms=60000, curve_keys="", header_repeat=1, channel="awgn"):
        worker_block.__init__(self, "gensemcom_semantic_encoder", address, profile, timeout_ms, retries=0,
                              curve_keys=curve_keys)
        self.system = str(system)
        self.snr_db = float(snr_db)
        self.modulation, self.code_rate = parse_choice(modulation, "modulation"), code_rate
        if self.code_rate not in ("auto", None):
            self.code_rate = str(rate_label(code_rate))
        self.budget_symbols = int(budget_symbols)
        self.header_repeat = int(header_repeat)
        self.set_channel(channel)
        select_mcs(None, modulation=self.modulation, rate=self.code_rate or "auto")  # fail early on a bad MCS
        self._images: "collections.OrderedDict[str, tuple]" = collections.OrderedDict()
        self.message_port_register_in(pmt.intern("feedback"))
        self.set_msg_handler(pmt.intern("feedback"), self._on_feedback)

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)

    def set_channel(self, channel) -> None:
        """Which measured table link adaptation reads ("awgn" or "rayleigh").

        Raises:
            ValueError: another channel name.
        """
        if channel not in ("awgn", "rayleigh"):
            raise ValueError(f"channel must be awgn or rayleigh, got {channel!r}")
        self.channel = str(channel)

    def _request(self) -> dict:
        mcs, _ = select_mcs(self.snr_db, channel=self.channel, modulation=self.modulation,
                            rate=self.code_rate or "auto")
        req = {"system": self.system, "snr_db": self.snr_db, "modulation": mcs.modulation,
               "code_rate": mcs.code_rate, "header_repeat": self.header_repeat}
        if self.budget_symbols > 0:
            req["budget_symbols"] = self.budget_symbols
        return req

    def prepare(self, msg):
        meta, image = image_from_pdu(msg)
        session = f"{meta_get(meta, 'image_id', 'image')}-{uuid.uuid4().hex[:8]}"
        self._images[session] = (meta, image)
        while len(self._images) > MAX_SESSIONS:
            self._images.popitem(last=False)
        req = dict(self._request(), session=session, round=0)
        return "semantic_encode", {"image": image}, req, (meta, session, 0, {})

    def _on_feedback(self, msg):
        self._enqueue(self.prepare_feedback, msg, "feedback")

    def prepare_feedback(self, msg):
        """A feedback frame -> the next round's call for its exchange's image."""
        try:
            fb = frame_from_pmt(msg)
        except FrameError as e:
            raise PduError(str(e)) from None
        session, rnd = fb.meta.get("session"), fb.meta.get("round")
        if not isinstance(session, str) or not isinstance(rnd, int) or isinstance(rnd, bool):
            raise PduError("feedback frame without meta 'session' and integer 'round'")
        if session not in self._images:
            raise PduError(f"feedback for an unknown or expired exchange {session!r}")
        meta, image = self._images[session]
        arrays, fmeta = to_arrays(fb, "fb_")
        req = dict(self._request(), session=session, round=rnd + 1, **fmeta)
        sizes = {f"feedback_{k}": fb.meta[k] for k in ("digital_bytes", "digital_symbols", "analog_symbols")
                 if k in fb.meta}
        return "semantic_encode", dict(arrays, image=image), req, (meta, session, rnd + 1, sizes)

    def item_id(self, state):
        return str(meta_get(state[0], "image_id", "")) or None

    def finish(self, reply, state):
        (meta, session, rnd, sizes), t_in = state
        try:
            frame = from_arrays(reply.arrays, reply.meta, self.system)
        except FrameError as e:
            raise PduError(f"the worker's frame is malformed: {e}") from None
        fmeta = frame_meta(meta)
        fmeta["encode_ms"] = (time.perf_counter() - t_in) * 1e3
        extra = reply.meta.get("frame_meta") if isinstance(reply.meta, dict) else None
        if isinstance(extra, dict):  # what the system reports (``report``) and its stage timings
            for k, v in extra.items():
                if isinstance(k, str) and k not in fmeta:
                    fmeta[k] = v
        fmeta["image_shape"] = [int(s) for s in np.asarray(meta_get(meta, KEY_SHAPE)).reshape(-1)]
        fmeta["session"], fmeta["round"] = session, rnd
        fmeta.update(sizes)  # the feedback that asked for this round, as the return link carried it
        frame.meta = fmeta
        return frame_to_pmt(frame)
