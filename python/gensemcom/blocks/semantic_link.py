"""GNU Radio block: one whole semantic link (encoder, PHY, channel, receiver, decoder) in one block.

::

  in -> [gate] -> semantic_encoder -> frame_mapper -+-digital-> digital_tx -> [pilots] -> pdu_channel
                                                    |     -> equalizer (ZF) -> digital_rx ----------+
                                                    +-analog--> [pilots] -> pdu_channel              |
                                                          -> equalizer (MMSE) ----------------------+-> frame_demapper
  frame_demapper -> semantic_decoder -> out
  (equalised symbols, thinned, -> digital_symbols / analog_symbols; per image -> stats)

The same chain as :class:`gensemcom.flowgraphs.semantic_link.SemanticLinkFlowgraph`,
built from the same blocks, so that a flowgraph (a teaching demo comparing systems
side by side) needs one block per system and no hierarchical block built by hand.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np
import pmt
from gnuradio import gr

from ..link import header_repeat
from ..phy.channels import PilotPattern
from .digital_rx import digital_rx
from .digital_tx import digital_tx
from .equalizer import equalizer
from .frame_demapper import frame_demapper
from .frame_mapper import frame_mapper
from .pdu_channel import pdu_channel
from .pdu_utils import counting, image_info, meta_get, meta_set, pdu_block
from .pilot_inserter import pilot_inserter
from .return_link import return_link
from .semantic_decoder import semantic_decoder
from .semantic_encoder import semantic_encoder

CHANNELS = ("awgn", "rayleigh")
ESTIMATORS = ("perfect", "ls", "lmmse")
#: the header copies this block always sends: the Rayleigh value, so the channel may switch at run time
HEADER_REPEAT = header_repeat("rayleigh")
#: how often the link looks for images lost inside it (worker errors, drops)
POLL_S = 0.2


class _LinkState:
    """What the link's own helper blocks share: the channel now, the pilot pattern, the blocks to watch."""

    def __init__(self, system: str, channel: str, pattern: Optional[PilotPattern]):
        self.system, self.channel, self.pattern = system, channel, pattern
        self.loss_blocks: List[Any] = []   # blocks whose drops and errors are images that never come out
        self.demapper: Optional[frame_demapper] = None

    def channel_uses(self, info: Dict[str, Any]) -> Dict[str, int]:
        """Complex channel uses of one image's frame from its metadata, pilots included
        (the header block is part of ``digital``, also reported as ``header``)."""
        d = int(info.get("digital_symbols") or 0)
        a = int(info.get("analog_symbols") or 0)
        h = int(info.get("header_symbols") or 0)
        if self.pattern is not None:
            d, a, h = self.pattern.n_tx(d), self.pattern.n_tx(a), self.pattern.n_tx(h)
        return {"digital": d, "header": h, "analog": a, "total": d + a}

    def losses(self) -> List[int]:
        """Per block of :attr:`loss_blocks`: the images lost there so far (messages it
        dropped, worker calls that failed)."""
        out = []
        for blk in self.loss_blocks:
            c = blk.counters()
            # a malformed CSI report (digital_rx -> digital_tx) is no image
            out.append(int(c.get("dropped", 0)) + int(c.get("errors", 0))
                       - int(c["drop_reasons"].get("bad csi report", 0)))
        return out

    def frames_lost(self) -> int:
        """Frames that reached the receiver with their header or payload lost."""
        if self.demapper is None:
            return 0
        c = self.demapper.counters()
        return int(c["header_lost"]) + int(c["crc_failed"])


class _link_tracker(counting, gr.basic_block):
    """The link's gate and bookkeeping (internal to :class:`semantic_link`).

    ``in``: images offered to the link; at most ``max_in_flight`` are inside it at a
    time, the others are skipped (counted, not queued), so a link slower than its
    source never grows a queue. ``image``: the decoder's images; each gives a stats
    dict on ``stats``. A thread polls the inner blocks' counters for images lost
    inside the link (each gives a stats dict with ``received`` False) and releases
    the gate for an image that never came out within ``stall_s``.
    """

    def __init__(self, state: _LinkState, max_in_flight: int, stall_s: float):
        gr.basic_block.__init__(self, "gensemcom_semantic_link_tracker", None, None)
        self._init_counters()
        self.state = state
        self.max_in_flight, self.stall_s = int(max_in_flight), float(stall_s)
        self._in_flight: "collections.deque[float]" = collections.deque()
        self.n_skipped = self.n_received = self.n_lost = 0
        self._seen: List[int] = []
        self._latest: Optional[Dict[str, Any]] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        for port in ("in", "image"):
            self.message_port_register_in(pmt.intern(port))
        for port in ("to_encoder", "stats"):
            self.message_port_register_out(pmt.intern(port))
        self.set_msg_handler(pmt.intern("in"), self._on_in)
        self.set_msg_handler(pmt.intern("image"), self._on_image)

    def start(self) -> bool:
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="gensemcom_semantic_link", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        return counting.stop(self)

    def counters(self) -> Dict[str, Any]:
        c = counting.counters(self)
        with self._lock:
            c.update(skipped=self.n_skipped, images_received=self.n_received, images_lost=self.n_lost,
                     in_flight=len(self._in_flight))
        return c

    def latest(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            return None if self._latest is None else dict(self._latest)

    # ------------------------------------------------------------ handlers
    def _on_in(self, msg) -> None:
        self._count("n_in")
        with self._lock:
            admit = self.max_in_flight <= 0 or len(self._in_flight) < self.max_in_flight
            if admit:
                self._in_flight.append(time.monotonic())
            else:
                self.n_skipped += 1
        if admit:  # the encoder validates the image (bad input is dropped and counted there)
            self.message_port_pub(pmt.intern("to_encoder"), msg)
            self._count("n_out")

    def _on_image(self, msg) -> None:
        try:
            info = image_info(pmt.car(msg)) if pmt.is_pair(msg) and pmt.is_dict(pmt.car(msg)) else {}
        except Exception as e:  # never raise in a handler
            self.logger.warn(f"cannot read an image's metadata: {type(e).__name__}: {e}")
            info = {}
        final = info.get("final", True) is not False
        with self._lock:
            if final:
                self.n_received += 1
                if self._in_flight:
                    self._in_flight.popleft()
        header_ok = info.get("header_ok", info.get("crc_ok")) is not False
        crc_ok = info.get("crc_ok") is not False
        self._publish(dict(image_id=str(info.get("image_id", "")), received=True, frame_ok=header_ok and crc_ok,
                           header_ok=header_ok, crc_ok=crc_ok, round=int(info.get("round") or 0), final=final,
                           snr_db=info.get("snr_db"), mcs=info.get("mcs"),
                           decode_ms=info.get("decode_ms"), encode_ms=info.get("encode_ms"),
                           channel_uses=self.state.channel_uses(info)))

    def _publish(self, entry: Dict[str, Any]) -> None:
        with self._lock:
            counts = dict(images_received=self.n_received, images_lost=self.n_lost, images_skipped=self.n_skipped)
        stats = dict(system=self.state.system, channel=self.state.channel, **entry, **counts,
                     frames_lost=self.state.frames_lost())
        stats = {k: v for k, v in stats.items() if v is not None}
        with self._lock:
            self._latest = stats
        self.message_port_pub(pmt.intern("stats"), pmt.to_pmt(stats))

    # ------------------------------------------------------------ polling thread
    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._check()
            except Exception as e:  # the thread must survive anything
                self.logger.error(f"link bookkeeping: {type(e).__name__}: {e}")

    def _check(self) -> None:
        losses = self.state.losses()
        seen, self._seen = self._seen, losses
        for blk, n, before in zip(self.state.loss_blocks, losses, seen or [0] * len(losses)):
            for _ in range(max(0, n - before)):
                with self._lock:
                    self.n_lost += 1
                    if self._in_flight:
                        self._in_flight.popleft()
                image_id, reason = self._reason(blk)
                self._publish(dict(image_id=image_id, received=False, frame_ok=False, reason=reason))
        now = time.monotonic()
        with self._lock:
            stalled = 0
            while self._in_flight and now - self._in_flight[0] > self.stall_s:
                self._in_flight.popleft()
                stalled += 1
        if stalled:
            self.logger.warn(f"{stalled} image(s) still in the link after {self.stall_s:g} s: the gate lets "
                             "the next one in")

    @staticmethod
    def _reason(blk):
        """(image id or None, why) of the latest loss in ``blk``."""
        failures = getattr(blk, "failures", None)
        if failures:
            with blk._lock:
                key, why = next(reversed(failures.items()))
            return key, " ".join(str(why).split())[:200]
        reasons = ", ".join(sorted(blk.counters()["drop_reasons"]))
        return None, f"dropped by {blk.name()}" + (f" ({reasons})" if reasons else "")


class _symbol_tap(pdu_block):
    """Received symbols PDU in, at most ``max_symbols`` of them out (evenly spaced), with
    only ``system`` and ``image_id`` left in the metadata: what a constellation sink needs.
    With ``skip_header``, the protected header's symbols (``header_symbols``) are left
    out when the frame has payload symbols after them."""

    in_kind, out_kind = "c32", "c32"

    def __init__(self, max_symbols: int, skip_header: bool):
        self.max_symbols, self.skip_header = int(max_symbols), bool(skip_header)
        pdu_block.__init__(self, "gensemcom_semantic_link_symbols")

    def process(self, meta, x):
        nh = meta_get(meta, "header_symbols", 0) if self.skip_header else 0
        if isinstance(nh, int) and 0 < nh < x.size:
            x = x[nh:]
        if x.size > self.max_symbols:
            x = x[np.linspace(0, x.size - 1, self.max_symbols).astype(np.int64)]
        out = pmt.make_dict()
        for key in ("system", "image_id"):
            v = meta_get(meta, key)
            if v is not None:
                out = meta_set(out, key, v)
        return out, x


class semantic_link(gr.hier_block2):
    """Image PDUs in (``in``), the received images out (``out``): one system's whole
    link, the module's blocks wired as ``gensemcom link`` wires them.

    Outputs besides ``out``: ``digital_symbols`` and ``analog_symbols``, the received
    equalised symbols of each path (the digital path's payload, its header left out
    when there is a payload; at most ``max_symbols`` per frame, evenly spaced;
    metadata only ``system`` and ``image_id``), for a constellation sink through
    ``pdus.pdu_to_tagged_stream``; and ``stats``, a PMT dict per image: ``system``,
    ``channel``, ``image_id``, ``received`` (an image came out), ``frame_ok``
    (``header_ok`` and ``crc_ok``), ``round``, ``final``, ``snr_db``, ``mcs``,
    ``encode_ms``, ``decode_ms``, ``channel_uses`` (dict: ``digital`` (header
    included), ``header``, ``analog``, ``total``, pilots included), and the counts so
    far: ``images_received``, ``images_lost`` (inside the link: worker failures,
    dropped messages), ``images_skipped`` (offered while the link was busy) and
    ``frames_lost`` (frames whose protected header or payload the channel destroyed,
    from the frame demapper's counters); a lost image gives a dict with ``received``
    False and a ``reason``.

    No queue grows: at most ``max_in_flight`` images are inside the link; an image
    offered while it is full is skipped and counted. Worker calls run on the
    encoder's and decoder's own threads, never on GNU Radio's or a GUI's.

    Run-time changes: :meth:`set_snr_db` (both channels, the encoder's assumed SNR,
    link adaptation's start value, the return link) and :meth:`set_channel` (AWGN <->
    Rayleigh). To keep one chain correct on both channels, the protected header is
    always sent twice (the Rayleigh value of :func:`gensemcom.link.header_repeat`;
    on AWGN that costs 600 more channel uses than ``gensemcom link``); with
    ``estimator`` "perfect" each path keeps an equaliser that uses the true gains
    when the channel fades and passes AWGN symbols through unchanged (``equalizer``
    estimator "auto"); with "ls" or "lmmse" pilots are sent on both channels (the
    receiver estimates a gain of about 1 on AWGN) and counted in the channel uses.
    Link adaptation (at ``digital_tx``, and at the encoder, which fills a rate-matched
    system's budget at the MCS the link will send) reads the channel's BLER table;
    ``digital_tx`` follows the receiver's SNR estimates, reported straight from
    ``digital_rx``. Systems that hold a conversation send their feedback over a
    ``return_link`` (QPSK) whose SNR follows :meth:`set_snr_db` but whose channel
    stays the one given here.

    Args:
        system (str): semantic system, e.g. "tisc", "deepjscc", "jpeg2000-ldpc".
        profile (str): model profile: "embedded", "tiny" or "full".
        snr_db (float): Es/N0 of both paths in dB. Settable.
        channel (str): "awgn" or "rayleigh". Settable.
        coherence (int): Rayleigh block length in symbols (and the pilot block length).
        estimator (str): "perfect" (true gains), "ls" or "lmmse" (pilots).
        n_pilots (int): pilots per block for "ls" and "lmmse".
        modulation (int | str): QAM order of the digital payload, or "auto" (link adaptation).
        code_rate (str): LDPC rate, or "auto".
        budget_symbols (int): channel uses per image for rate-matched systems (0: the system's own).
        address (str): inference worker or broker endpoint ('': this process's local worker).
        seed (int): channel seed (the analog path uses seed + 1, the return link seed + 2; -1: fresh entropy).
        task (str): the receiver's task for task-adaptive systems ('' for none).
        timeout_ms (int): reply timeout of each worker call.
        max_in_flight (int): images inside the link at a time (0: no limit; the encoder's
            queue of 16 then drops the excess, counted as lost).
        max_symbols (int): symbols per frame on ``digital_symbols`` and ``analog_symbols``.
        curve_keys (str): CURVE key folder of a remote worker ('': none).

    Raises:
        ValueError: an unknown channel or estimator, or pilots that do not fit a block.
    """

    def __init__(self, system="tisc", profile="embedded", snr_db=10.0, channel="awgn", coherence=64,
                 estimator="perfect", n_pilots=4, modulation="auto", code_rate="auto", budget_symbols=0, address="",
                 seed=-1, task="", timeout_ms=120000, max_in_flight=1, max_symbols=1024, curve_keys=""):
        gr.hier_block2.__init__(self, "gensemcom_semantic_link", gr.io_signature(0, 0, 0), gr.io_signature(0, 0, 0))
        if channel not in CHANNELS:
            raise ValueError(f"channel must be awgn or rayleigh, got {channel!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be perfect, ls or lmmse, got {estimator!r}")
        coherence, n_pilots, seed = int(coherence), int(n_pilots), int(seed)
        pilots = estimator in ("ls", "lmmse")
        if pilots and not 1 <= n_pilots < coherence:
            raise ValueError(f"pilots must be 1..coherence-1 ({coherence - 1}), got {n_pilots}")
        if int(max_symbols) < 1:
            raise ValueError(f"max_symbols must be at least 1, got {max_symbols}")
        for port in ("in",):
            self.message_port_register_hier_in(port)
        for port in ("out", "digital_symbols", "analog_symbols", "stats"):
            self.message_port_register_hier_out(port)
        self.system, self.profile = str(system), str(profile)
        self.snr_db, self.channel = float(snr_db), str(channel)
        n_p = n_pilots if pilots else 0
        self.state = _LinkState(self.system, self.channel, PilotPattern(coherence, n_p) if pilots else None)
        self.encoder = semantic_encoder(self.system, self.profile, self.snr_db, modulation, code_rate,
                                        int(budget_symbols), address, int(timeout_ms), curve_keys, HEADER_REPEAT,
                                        channel=self.channel)
        self.mapper = frame_mapper()
        self.dtx = digital_tx(modulation=modulation, code_rate=str(code_rate), snr_db=self.snr_db,
                              channel=self.channel, header_repeat=HEADER_REPEAT)
        self.dchan = pdu_channel(self.channel, self.snr_db, coherence, seed)
        self.achan = pdu_channel(self.channel, self.snr_db, coherence, seed + 1 if seed >= 0 else -1)
        eq = estimator if pilots else "auto"
        self.deq = equalizer(eq, "zf", coherence, n_p)
        self.aeq = equalizer(eq, "mmse", coherence, n_p)
        # keep the pilot inserters referenced: a Python block collected while the flowgraph holds it crashes GNU Radio
        self.dpilots = pilot_inserter(coherence, n_p) if pilots else None
        self.apilots = pilot_inserter(coherence, n_p) if pilots else None
        self.drx = digital_rx(modulation=modulation, code_rate=str(code_rate), header_repeat=HEADER_REPEAT)
        self.demapper = frame_demapper()
        self.decoder = semantic_decoder(self.system, self.profile, address, int(timeout_ms), curve_keys, task)
        self.back = return_link(self.snr_db, self.channel, 4, "auto", coherence, seed + 2 if seed >= 0 else -1)
        self.dtap, self.atap = _symbol_tap(max_symbols, True), _symbol_tap(max_symbols, False)
        self.state.demapper = self.demapper
        self.state.loss_blocks = [self.encoder, self.mapper, self.dtx, self.dchan, self.deq, self.drx, self.achan,
                                  self.aeq, self.demapper, self.decoder]
        self.state.loss_blocks += [b for b in (self.dpilots, self.apilots) if b is not None]
        self._return_blocks = [self.back.mapper, self.back.dtx, self.back.drx, self.back.demapper]
        self.state.loss_blocks += self._return_blocks
        stall_s = 2 * int(timeout_ms) / 1000.0 + 30.0
        self.tracker = _link_tracker(self.state, max_in_flight, stall_s)

        self.msg_connect(self, "in", self.tracker, "in")
        self.msg_connect(self.tracker, "to_encoder", self.encoder, "in")
        self.msg_connect(self.encoder, "out", self.mapper, "in")
        self._chain([(self.mapper, "digital"), self.dtx, self.dpilots, self.dchan, self.deq, self.drx,
                     (self.demapper, "digital")])
        self._chain([(self.mapper, "analog"), self.apilots, self.achan, self.aeq, (self.demapper, "analog")])
        self.msg_connect(self.drx, "csi", self.dtx, "csi")
        self.msg_connect(self.demapper, "out", self.decoder, "in")
        self.msg_connect(self.decoder, "feedback", self.back, "in")
        self.msg_connect(self.back, "out", self.encoder, "feedback")
        self.msg_connect(self.decoder, "out", self, "out")
        self.msg_connect(self.decoder, "out", self.tracker, "image")
        self.msg_connect(self.tracker, "stats", self, "stats")
        self.msg_connect(self.deq, "out", self.dtap, "in")
        self.msg_connect(self.aeq, "out", self.atap, "in")
        self.msg_connect(self.dtap, "out", self, "digital_symbols")
        self.msg_connect(self.atap, "out", self, "analog_symbols")

    def _chain(self, items) -> None:
        """Connect message blocks in a row, skipping None; (block, port) pairs name a non-default port."""
        items = [it for it in items if it is not None]
        for a, b in zip(items, items[1:]):
            ablk, aport = a if isinstance(a, tuple) else (a, "out")
            bblk, bport = b if isinstance(b, tuple) else (b, "in")
            self.msg_connect(ablk, aport, bblk, bport)

    def set_snr_db(self, snr_db) -> None:
        """Set Es/N0 (dB) of both paths at run time (and what the transmitter assumes).

        Raises:
            ValueError: not a finite number (nothing is changed).
        """
        snr = float(snr_db)
        if not np.isfinite(snr):
            raise ValueError(f"SNR must be finite, got {snr_db!r}")
        self.snr_db = snr
        for blk in (self.dchan, self.achan, self.encoder, self.dtx, self.back):
            blk.set_snr_db(snr)

    def set_channel(self, channel) -> None:
        """Switch both paths between "awgn" and "rayleigh" at run time (the equalisers
        and the header copies already serve both; link adaptation, at the encoder and at
        ``digital_tx``, reads the new channel's BLER table).

        Raises:
            ValueError: another channel name (nothing is changed).
        """
        if channel not in CHANNELS:
            raise ValueError(f"channel must be awgn or rayleigh, got {channel!r}")
        for blk in (self.dchan, self.achan, self.dtx, self.encoder):
            blk.set_channel(channel)
        self.channel = self.state.channel = str(channel)

    def post(self, msg) -> None:
        """Queue one image PDU as if it had arrived on ``in`` (for Python callers)."""
        self.tracker.to_basic_block()._post(pmt.intern("in"), msg)

    def latest_stats(self) -> Optional[Dict[str, Any]]:
        """The latest ``stats`` dict (as Python), or None."""
        return self.tracker.latest()

    def counters(self) -> Dict[str, Any]:
        """The link's own counts (``link``: images offered, admitted, skipped, received,
        lost, in flight) and every inner block's counters, by role."""
        named = {"link": self.tracker, "semantic_encoder": self.encoder, "frame_mapper": self.mapper,
                 "digital_tx": self.dtx, "digital_channel": self.dchan, "digital_equalizer": self.deq,
                 "digital_rx": self.drx, "analog_channel": self.achan, "analog_equalizer": self.aeq,
                 "frame_demapper": self.demapper, "semantic_decoder": self.decoder,
                 "digital_symbols": self.dtap, "analog_symbols": self.atap}
        out = {k: v.counters() for k, v in named.items()}
        out.update({f"return_{k}": v for k, v in self.back.counters().items()})
        return out

