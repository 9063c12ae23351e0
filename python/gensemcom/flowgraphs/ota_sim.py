"""Frames through the over-the-air PHY and GNU Radio's channel model, in a real top block.

:class:`OtaSim` builds ``ota_tx -> channels.channel_model -> ota_rx`` once (noise,
carrier frequency offset, sample-rate offset ``epsilon``, multipath taps) and sends
frames through it; :func:`run_ota_sim` is the one-call form (what
``gensemcom link --phy ota-sim`` runs).

SNR is the per-data-carrier Es/N0: the channel model's noise voltage is
``sqrt(fft_len / active_carriers / 10^(snr/10))`` for the transmitter's unit average
sample power (:meth:`OtaParams.noise_voltage`); with multipath taps normalised to unit
energy it is the average over the band. CFO is given in subcarrier spacings
(fs / fft_len), as the PHY's tolerance is (|cfo| < 1).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from ..frame import SemanticFrame
from ..ota.phy import OtaParams

FrameLike = Union[SemanticFrame, bytes, bytearray, np.ndarray, tuple]


@dataclass
class OtaResult:
    """What the receiver made of one transmitted frame.

    Attributes:
        seq (int): the frame's sequence number.
        detected (bool): a header with this sequence number was decoded.
        crc_ok (bool): the digital part passed its CRC (True when there was none).
        digital (bytes): the received digital part (empty when the CRC failed); for a
            semantic frame, the frame's payload (``frame.digital``).
        analog (np.ndarray): the received analog part (float32, de-normalised).
        snr_db (float): per-data-carrier Es/N0 the receiver measured.
        frame (SemanticFrame | None): the received frame when a frame was sent.
        n_blocks (int): code blocks of the digital part (PDU input only).
        failed_blocks (list[int]): code blocks that failed their CRC (PDU input only).
    """

    seq: int
    detected: bool = False
    crc_ok: bool = False
    digital: bytes = b""
    analog: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    snr_db: float = float("nan")
    frame: Optional[SemanticFrame] = None
    n_blocks: int = 0
    failed_blocks: List[int] = field(default_factory=list)


def _cfg_taps(taps) -> List[complex]:
    t = np.asarray(taps if taps is not None else [1.0], np.complex128).reshape(-1)
    if t.size == 0 or not np.any(t):
        raise ValueError("multipath taps must not be all zero")
    t = t / np.linalg.norm(t)
    return [complex(v) for v in t] if np.iscomplexobj(taps) or np.any(t.imag) else [float(v.real) for v in t]


class OtaSim:
    """A running ``ota_tx -> channel_model -> ota_rx`` flowgraph.

    Args:
        snr_db (float | None): per-data-carrier Es/N0 (None: no noise).
        cfo (float): carrier frequency offset in subcarrier spacings.
        epsilon (float): sample-rate ratio of the channel model (1.0001: 100 ppm).
        taps (sequence): multipath taps (normalised to unit energy).
        seed (int | None): seeds the channel noise and the random start delays.
        max_delay (int): each frame starts after a random 0..max_delay zero samples.
        modulation, backend, code_rate: the digital part's QAM order and LDPC code.
        **rx_kwargs: passed on to ``ota_rx`` (threshold, analog_eq, chan_taps, ...).
    """

    def __init__(self, snr_db: Optional[float] = None, cfo: float = 0.0, epsilon: float = 1.0, taps=(1.0,),
                 seed: Optional[int] = 0, max_delay: int = 0, modulation: int = 16, backend: str = "default",
                 code_rate: str = "1/2", gap: int = 400, **rx_kwargs):
        from gnuradio import blocks, channels, gr

        from ..blocks.ota_rx import ota_rx
        from ..blocks.ota_tx import ota_tx

        self.p = OtaParams()
        self.rng = np.random.default_rng(seed)
        self.max_delay = int(max_delay)
        self.tb = gr.top_block("gensemcom_ota_sim")
        self.tx = ota_tx(modulation=modulation, backend=backend, code_rate=code_rate, gap=gap)
        self.rx = ota_rx(modulation=modulation, backend=backend, code_rate=code_rate, **rx_kwargs)
        nv = 0.0 if snr_db is None else self.p.noise_voltage(float(snr_db))
        noise_seed = int(self.rng.integers(1, 2**31 - 1))
        self.channel = channels.channel_model(nv, float(cfo) / self.p.fft_len, float(epsilon), _cfg_taps(taps),
                                              noise_seed, False)
        self.sink = blocks.message_debug()
        self.tb.connect(self.tx, self.channel, self.rx)
        self.tb.msg_connect(self.rx, "out", self.sink, "store")
        self.tb.start()
        self._taken = 0
        self._closed = False

    # ---------------------------------------------------------------- input
    def _message(self, item: FrameLike, delay: int):
        import pmt

        from ..blocks.pdu_utils import make_pdu, meta_set
        from ..frame import frame_to_pmt

        if isinstance(item, SemanticFrame):
            f = SemanticFrame(item.system, item.digital, item.analog, item.header, dict(item.meta, ota_delay=delay))
            return frame_to_pmt(f)
        meta = meta_set(pmt.make_dict(), "ota_delay", int(delay))
        if isinstance(item, tuple):
            digital, analog = item
            meta = meta_set(meta, "analog", np.asarray(analog, np.float32).reshape(-1))
            return make_pdu(meta, np.frombuffer(bytes(digital), np.uint8), "u8")
        if isinstance(item, (bytes, bytearray)):
            return make_pdu(meta, np.frombuffer(bytes(item), np.uint8), "u8")
        a = np.asarray(item)
        if a.dtype == np.uint8:
            return make_pdu(meta, a, "u8")
        return make_pdu(meta, a.astype(np.float32), "f32")

    # ---------------------------------------------------------------- run
    def send(self, items: Sequence[FrameLike], timeout: float = 60.0, idle: float = 1.5) -> List[OtaResult]:
        """Send frames and collect what arrives.

        Waits until every frame has come out of the receiver, or nothing has moved
        for ``idle`` seconds after the last frame was transmitted, or ``timeout``.

        Args:
            items: SemanticFrame, bytes (digital only), float array (analog only) or
                (bytes, float array) tuples.
        """
        import pmt

        from ..blocks.pdu_utils import meta_get
        from ..frame import frame_from_pmt

        n = len(items)
        seq0 = self.tx.framer.seq
        sent0 = self.tx.burst.counters()["sent"]
        for it in items:
            d = int(self.rng.integers(0, self.max_delay + 1)) if self.max_delay else 0
            self.tx.post(self._message(it, d))
        t0 = time.monotonic()
        last, last_change = None, time.monotonic()
        while True:
            got = self.sink.num_messages() - self._taken
            st = self.rx.counters()
            state = (got, st["frames_detected"], st["frames_out"], self.tx.burst.counters()["sent"])
            now = time.monotonic()
            if state != last:
                last, last_change = state, now
            all_sent = state[3] - sent0 >= n
            if got >= n or now - t0 > timeout or (all_sent and now - last_change > idle):
                break
            time.sleep(0.005)
        results: Dict[int, OtaResult] = {}
        total = self.sink.num_messages()
        for i in range(self._taken, total):
            msg = self.sink.get_message(i)
            if pmt.is_pair(msg) and pmt.is_uniform_vector(pmt.cdr(msg)):
                meta = pmt.car(msg)
                r = OtaResult(int(meta_get(meta, "seq")), True, bool(meta_get(meta, "crc_ok")),
                              bytes(pmt.u8vector_elements(pmt.cdr(msg))),
                              np.asarray(meta_get(meta, "analog", np.zeros(0)), np.float32),
                              float(meta_get(meta, "snr_db", float("nan"))), None,
                              int(meta_get(meta, "n_blocks", 0)),
                              [int(b) for b in np.asarray(meta_get(meta, "failed_blocks", []), int).reshape(-1)])
            else:
                f = frame_from_pmt(msg)
                r = OtaResult(int(f.meta.get("seq", -1)), True, bool(f.crc_ok), f.digital, f.analog,
                              float(f.meta.get("snr_db", float("nan"))), f)
            results[r.seq] = r
        self._taken = total
        return [results.get((seq0 + i) % 65536, OtaResult((seq0 + i) % 65536)) for i in range(n)]

    def counters(self) -> Dict[str, Any]:
        return self.rx.counters()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.tb.stop()
            self.tb.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_ota_sim(frame_or_symbols: Union[FrameLike, Sequence[FrameLike]], snr_db: Optional[float] = None,
                cfo: float = 0.0, epsilon: float = 1.0, taps=(1.0,), start_delay: Optional[int] = None,
                seed: Optional[int] = 0, modulation: int = 16, backend: str = "default", code_rate: str = "1/2",
                timeout: float = 60.0, **rx_kwargs):
    """Send one frame (or a list) through ota_tx -> channel_model -> ota_rx.

    Args:
        frame_or_symbols: a :class:`SemanticFrame`; bytes (digital part only); a float
            array (analog part only); a (bytes, float array) tuple; or a list of these.
        snr_db: per-data-carrier Es/N0 in dB (None: noiseless).
        cfo: carrier frequency offset in subcarrier spacings (|cfo| < 1).
        epsilon: sample-rate ratio (timing drift), e.g. 1.0001.
        taps: multipath taps (normalised to unit energy).
        start_delay: largest random number of zero samples before each frame (None:
            up to one OFDM symbol... 2000 samples).
        seed: channel noise and delay seed.
        modulation, backend, code_rate: digital PHY settings (both ends).
        timeout: seconds to wait for the receiver.
        **rx_kwargs: ``ota_rx`` options (threshold, analog_eq, chan_taps, track_window).

    Returns:
        OtaResult, or a list of them for a list input. For a semantic frame,
        ``result.frame`` is the received :class:`SemanticFrame` (``crc_ok`` False and
        an empty digital part when the digital part failed; the analog part is still
        de-normalised with the scale the OTA header carries).
    """
    single = not isinstance(frame_or_symbols, list)
    items = [frame_or_symbols] if single else list(frame_or_symbols)
    with OtaSim(snr_db, cfo, epsilon, taps, seed, 2000 if start_delay is None else int(start_delay), modulation,
                backend, code_rate, **rx_kwargs) as sim:
        res = sim.send(items, timeout=timeout)
    return res[0] if single else res
