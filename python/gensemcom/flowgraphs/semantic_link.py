"""The semantic link as a real GNU Radio flowgraph (what ``gensemcom link`` runs).

::

  image_source -> semantic_encoder -> frame_mapper -+-digital-> digital_tx -> [pilots] -> pdu_channel
                                                    |            -> [equalizer ZF] -> digital_rx --+
                                                    +-analog--> [pilots] -> pdu_channel           |
                                                                 -> [equalizer MMSE] -------------+-> frame_demapper
  frame_demapper -> semantic_decoder -> image_sink

The encoder and decoder call the inference worker (a local one is started when no
address is given), so no model runs on the scheduler thread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

import numpy as np
from gnuradio import gr

from ..blocks.digital_rx import digital_rx
from ..blocks.digital_tx import digital_tx
from ..blocks.equalizer import equalizer
from ..blocks.frame_demapper import frame_demapper
from ..blocks.frame_mapper import frame_mapper
from ..blocks.image_sink import image_sink
from ..blocks.image_source import image_source
from ..blocks.pdu_channel import pdu_channel
from ..blocks.pilot_inserter import pilot_inserter
from ..blocks.return_link import return_link
from ..blocks.semantic_decoder import semantic_decoder
from ..blocks.semantic_encoder import semantic_encoder
from ..image_io import image_ids, list_images, load_image
from ..link import header_repeat
from ..worker.systems import MAX_PIXELS as WORKER_MAX_ELEMS

RATES = ("auto", "1/5", "1/4", "1/3", "1/2", "2/3", "3/4", "5/6")

#: the largest image the link takes, in pixels: the worker's limit
MAX_IMAGE_PIXELS = WORKER_MAX_ELEMS // 3

_MODES = {"L": "grayscale", "LA": "grayscale with alpha", "1": "black and white", "P": "palette",
          "RGBA": "RGB with alpha", "CMYK": "CMYK", "I;16": "16-bit grayscale", "I": "32-bit integer",
          "F": "32-bit float", "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV"}


class LinkInputError(ValueError):
    """An input the link cannot take; the message is one line naming the problem and the fix."""


def check_images(path: str, convert: bool = False) -> List:
    """Check every image at ``path`` before a flowgraph is built.

    Each must exist, decode completely, have at most :data:`MAX_IMAGE_PIXELS` pixels
    and be 8-bit RGB (other modes are accepted with ``convert=True``; they are then
    converted to RGB, alpha dropped).

    Returns:
        list[Path]: the image files.

    Raises:
        LinkInputError: naming the first bad image and what to do about it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        files = list_images(path)
    except FileNotFoundError as e:
        raise LinkInputError(str(e)) from None
    if not files:
        raise LinkInputError(f"no images (.png, .jpg, ...) in folder {path!r}")
    for f in files:
        try:
            with Image.open(f) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise LinkInputError(f"image {str(f)!r} is {w} x {h} ({w * h / 1e6:.1f} Mpixel), over the "
                                         f"{MAX_IMAGE_PIXELS / 1e6:.1f} Mpixel limit: downscale it or pass --size N")
                if im.mode != "RGB" and not convert:
                    raise LinkInputError(f"image {str(f)!r} is {_MODES.get(im.mode, im.mode)} (PIL mode "
                                         f"{im.mode}), not 8-bit RGB: convert it, or pass --convert to convert "
                                         "it on the fly")
                im.load()
        except LinkInputError:
            raise
        except Image.DecompressionBombError:
            raise LinkInputError(f"image {str(f)!r} is too large to decode safely (over "
                                 f"{MAX_IMAGE_PIXELS / 1e6:.1f} Mpixel): downscale it") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise LinkInputError(f"cannot read image {str(f)!r} ({type(e).__name__}: {e}): check that it is "
                                 "a complete PNG/JPEG/... file you may read") from None
    return files


def check_system(opts: "FlowgraphOptions", timeout_s: Optional[float] = None) -> Dict:
    """Ask the worker (``opts.address``, or this process's local one) to load the
    system's models for the profile, so that a missing model is reported before a
    flowgraph starts.

    Returns:
        dict: the worker's reply meta (``system``, ``profile``, ``max_rounds``).

    Raises:
        LinkInputError: unknown system or a profile it does not have (before any
            worker is asked), models that cannot be loaded (the message is the
            loader's: the model id, why, and how to provide a local copy), or no worker.
    """
    from .. import systems
    from ..blocks.worker_block import LIVENESS_MS, shared_local_worker
    from ..worker.client import WorkerClient, WorkerError, WorkerUnavailable

    try:
        systems.check(opts.system, opts.profile)
    except ValueError as e:
        raise LinkInputError(str(e)) from None
    try:
        client = WorkerClient(opts.address or shared_local_worker(), profile=opts.profile,
                              timeout_ms=int(1000 * (timeout_s or opts.timeout_s)), retries=0,
                              curve_keys=opts.curve_keys or None, liveness_ms=LIVENESS_MS)
        try:
            return client.call("semantic_load", meta={"system": opts.system}).meta
        finally:
            client.close()
    except WorkerError as e:
        raise LinkInputError(" ".join(e.message.split())) from None
    except WorkerUnavailable as e:
        raise LinkInputError(f"{e}: start one with 'gensemcom worker --bind ADDRESS' or omit --address") from None


@dataclass
class FlowgraphOptions:
    """Options of :class:`SemanticLinkFlowgraph` (one set shared by the CLI and Python).

    Attributes mirror ``gensemcom link --help``.
    """

    system: str = "deepjscc"
    profile: str = "embedded"
    images: str = ""
    snr_db: float = 10.0
    channel: str = "awgn"
    coherence: int = 64
    estimator: str = "perfect"
    n_pilots: int = 4
    modulation: Union[int, str] = "auto"
    code_rate: str = "auto"
    budget_symbols: int = 0
    address: str = ""
    out_dir: str = ""
    seed: int = 0
    size: int = 0
    timeout_s: float = 300.0
    return_snr_db: Optional[float] = None
    curve_keys: str = ""
    progress: bool = True
    task: str = ""
    tx_snr_db: Optional[float] = None

    @property
    def design_snr_db(self) -> float:
        """The SNR the transmitter assumes (link adaptation, SNR-adaptive encoders):
        ``tx_snr_db`` when set (a transmitter designed for one SNR, the channel at
        another: the digital cliff), else the channel's ``snr_db``."""
        return self.snr_db if self.tx_snr_db is None else self.tx_snr_db

    def validate(self) -> None:
        """Raise ValueError naming the first bad option (every check is done here, before
        any image is read or any flowgraph built)."""
        if self.channel not in ("awgn", "rayleigh"):
            raise ValueError(f"channel must be awgn or rayleigh, got {self.channel!r}")
        if self.estimator not in ("perfect", "ls", "lmmse"):
            raise ValueError(f"estimator must be perfect, ls or lmmse, got {self.estimator!r}")
        if self.modulation not in ("auto", 4, 16, 64, 256):
            raise ValueError(f"modulation must be auto, 4, 16, 64 or 256, got {self.modulation}")
        if self.code_rate not in RATES:
            raise ValueError(f"code rate must be one of {', '.join(RATES)}, got {self.code_rate!r}")
        for name, v in (("SNR", self.snr_db), ("return-link SNR", self.return_snr_db),
                        ("transmitter SNR", self.tx_snr_db)):
            if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v) and -50 <= v <= 100):
                raise ValueError(f"{name} must be a finite number of dB in -50..100, got {v}")
        if not 1 <= self.coherence <= 1 << 20:
            raise ValueError(f"coherence must be 1..{1 << 20} symbols, got {self.coherence}")
        if self.channel == "rayleigh" and self.estimator != "perfect" and not 1 <= self.n_pilots < self.coherence:
            raise ValueError(f"pilots must be 1..coherence-1 ({self.coherence - 1}), got {self.n_pilots}")
        if self.budget_symbols < 0:
            raise ValueError(f"budget must be 0 (the system's own) or a positive number of channel uses, "
                             f"got {self.budget_symbols}")
        if len(self.task.encode("utf-8", "replace")) > 256:
            raise ValueError("task must be at most 256 bytes of text")
        side = int(MAX_IMAGE_PIXELS ** 0.5)
        if not 0 <= self.size <= side:
            raise ValueError(f"size must be 0 (keep) or 1..{side} (the {MAX_IMAGE_PIXELS / 1e6:.1f} Mpixel limit), "
                             f"got {self.size}")
        if not (np.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout_s}")
        list_images(self.images)


class SemanticLinkFlowgraph(gr.top_block):
    """Images through a semantic system and the PHY blocks, in one flowgraph.

    The decoder's ``feedback`` port goes back to the encoder's through a
    :class:`return_link` (QPSK, rate 1/2, the forward channel type at
    ``return_snr_db``), so systems that hold a conversation run their rounds here;
    one-shot systems never use it.

    Args:
        opts (FlowgraphOptions): the link's options.
    """

    def __init__(self, opts: FlowgraphOptions):
        gr.top_block.__init__(self, "gensemcom semantic link")
        opts.validate()
        self.opts = opts
        fading = opts.channel == "rayleigh"
        self._all = []
        pilots = fading and opts.estimator in ("ls", "lmmse")
        n_p = opts.n_pilots if pilots else 0
        self.source = image_source(opts.images, period_s=0.0, repeat=False, size=opts.size)
        # a worker call may take as long as the whole run allows (TISC's full-profile TI: minutes)
        call_ms = max(1000, int(1000 * opts.timeout_s))
        rep = header_repeat(opts.channel)
        self.encoder = semantic_encoder(opts.system, opts.profile, opts.design_snr_db, opts.modulation,
                                        opts.code_rate, opts.budget_symbols, opts.address, call_ms,
                                        opts.curve_keys, rep, opts.channel)
        self.mapper = frame_mapper()
        self.dtx = digital_tx(modulation=opts.modulation, code_rate=opts.code_rate, snr_db=opts.design_snr_db,
                              channel=opts.channel, header_repeat=rep)
        self.dchan = pdu_channel(opts.channel, opts.snr_db, opts.coherence, opts.seed)
        self.achan = pdu_channel(opts.channel, opts.snr_db, opts.coherence, opts.seed + 1)
        self.drx = digital_rx(modulation=opts.modulation, code_rate=opts.code_rate, header_repeat=rep)
        self.demapper = frame_demapper()
        self.decoder = semantic_decoder(opts.system, opts.profile, opts.address, call_ms, opts.curve_keys, opts.task)
        self.sink = image_sink(opts.out_dir, side_by_side=bool(opts.out_dir))
        self.msg_connect(self.source, "out", self.encoder, "in")
        self.msg_connect(self.encoder, "out", self.mapper, "in")
        self._chain([(self.mapper, "digital"), self.dtx] + ([pilot_inserter(opts.coherence, n_p)] if pilots else [])
                    + [self.dchan] + ([equalizer(opts.estimator, "zf", opts.coherence, n_p)] if fading else [])
                    + [self.drx, (self.demapper, "digital")])
        self._chain([(self.mapper, "analog")] + ([pilot_inserter(opts.coherence, n_p)] if pilots else [])
                    + [self.achan] + ([equalizer(opts.estimator, "mmse", opts.coherence, n_p)] if fading else [])
                    + [(self.demapper, "analog")])
        self.msg_connect(self.demapper, "out", self.decoder, "in")
        rsnr = opts.snr_db if opts.return_snr_db is None else opts.return_snr_db
        self.back = return_link(rsnr, opts.channel, 4, "auto", opts.coherence, opts.seed + 2)
        self.msg_connect(self.decoder, "feedback", self.back, "in")
        self.msg_connect(self.back, "out", self.encoder, "feedback")
        # link adaptation: the receiver's SNR estimate goes back over its own return link to digital_tx
        self.csi_back = return_link(rsnr, opts.channel, 4, "auto", opts.coherence, opts.seed + 3)
        self.msg_connect(self.drx, "csi", self.csi_back, "in")
        self.msg_connect(self.csi_back, "out", self.dtx, "csi")
        self.msg_connect(self.decoder, "out", self.sink, "in")
        self.pilots_per_block = n_p

    def _chain(self, items):
        """Connect message blocks in a row; (block, port) pairs name a non-default port."""
        for it in items:
            blk = it[0] if isinstance(it, tuple) else it
            if blk not in self._all:
                self._all.append(blk)
        for a, b in zip(items, items[1:]):
            ablk, aport = a if isinstance(a, tuple) else (a, "out")
            bblk, bport = b if isinstance(b, tuple) else (b, "in")
            self.msg_connect(ablk, aport, bblk, bport)

    def set_snr_db(self, snr_db: float) -> None:
        self.opts.snr_db = float(snr_db)
        for blk in (self.dchan, self.achan):
            blk.set_snr_db(snr_db)
        self.encoder.set_snr_db(snr_db)

    def channel_uses(self, info: Dict) -> Dict[str, int]:
        """Complex channel uses of one round of one image (pilots included) from its metadata."""
        from ..phy.channels import PilotPattern

        d = int(info["digital_symbols"])
        a = int(info["analog_symbols"])
        if self.pilots_per_block:
            p = PilotPattern(self.opts.coherence, self.pilots_per_block)
            d, a = p.n_tx(d), p.n_tx(a)
        return {"digital": int(d), "header": int(info.get("header_symbols", 0)), "analog": int(a),
                "total": int(d + a)}

    def exchange_uses(self, rounds: List[Dict]) -> Dict[str, int]:
        """Channel uses of a whole exchange (the metadata of every round's image):
        forward uses summed; with several rounds, ``feedback`` (return-link uses) and
        ``rounds``."""
        total = {"digital": 0, "header": 0, "analog": 0, "total": 0}
        for info in rounds:
            for k, v in self.channel_uses(info).items():
                total[k] += v
        if len(rounds) > 1:
            total["feedback"] = sum(int(i.get("feedback_digital_symbols") or 0) +
                                    int(i.get("feedback_analog_symbols") or 0) for i in rounds)
            total["rounds"] = len(rounds)
        return total

    def blocks_counters(self) -> Dict[str, Dict]:
        """Counters of every block, keyed by name (paths and copies numbered)."""
        named = {"image_source": self.source, "semantic_encoder": self.encoder, "frame_mapper": self.mapper,
                 "digital_tx": self.dtx, "digital_rx": self.drx, "frame_demapper": self.demapper,
                 "semantic_decoder": self.decoder, "image_sink": self.sink,
                 "digital_channel": self.dchan, "analog_channel": self.achan}
        out = {k: v.counters() for k, v in named.items()}
        for i, blk in enumerate(b for b in self._all if b not in named.values()):
            out[f"{blk.name()}_{i}"] = blk.counters()
        out.update({f"return_{k}": v for k, v in self.back.counters().items()})
        return out


class Progress:
    """What a long run shows while it waits: a tqdm bar on a terminal, otherwise a line
    on stderr every ``every_s`` seconds (images done and lost, time waited)."""

    def __init__(self, total: int, label: str, enabled: bool = True, every_s: float = 30.0):
        import sys

        from tqdm.auto import tqdm

        self.total, self.label, self.every_s = total, label, every_s
        self.enabled, self.tty = enabled, sys.stderr.isatty()
        self.t0 = self.t_last = time.monotonic()
        self.bar = tqdm(total=total, desc=label, unit="image", leave=False) if enabled and self.tty else None
        self.last = (0, 0)

    def update(self, done: int, lost: int) -> None:
        import sys

        if not self.enabled:
            return
        if self.bar is not None:
            if (done, lost) != self.last:
                self.bar.n = done + lost
                self.bar.set_postfix(lost=lost, refresh=True)
        elif time.monotonic() - self.t_last >= self.every_s:
            self.t_last = time.monotonic()
            print(f"gensemcom link: {self.label}: {done} of {self.total} images received, {lost} lost, "
                  f"{self.t_last - self.t0:.0f} s", file=sys.stderr, flush=True)
        self.last = (done, lost)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def exchanges(received) -> Dict[str, Dict]:
    """An image sink's received images grouped by image: ``image_id`` -> ``rounds``
    (the metadata of every round's image, in arrival order) and ``final`` ((metadata,
    image) of the exchange's final image, once it has arrived)."""
    out: Dict[str, Dict] = {}
    for info, img in received:
        e = out.setdefault(str(info.get("image_id")), {"rounds": []})
        e["rounds"].append(info)
        if info.get("final", True) is not False:
            e["final"] = (info, img)
    return out


def stage_timings(info: Dict) -> Dict[str, float]:
    """The ``*_ms`` entries of an image's metadata: encode and decode as the blocks
    measured them (worker round trip included) and the system's own stages (TISC:
    caption, selection, inversion), in milliseconds."""
    return {k: round(float(v), 2) for k, v in info.items()
            if k.endswith("_ms") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_flowgraph(opts: FlowgraphOptions, images_out: Optional[Dict[str, np.ndarray]] = None) -> Dict:
    """Run the flowgraph over every image and return a JSON-able report.

    Args:
        opts (FlowgraphOptions): the link's options.
        images_out (dict | None): filled with image id -> received image (H, W, 3) uint8.
    """
    from ..eval.metrics import psnr

    files = list_images(opts.images)
    tb = SemanticLinkFlowgraph(opts)
    t0 = time.perf_counter()
    expected = len(files)
    progress = None
    try:  # whatever ends the run (Ctrl-C, SIGTERM in the CLI), the flowgraph is stopped
        tb.start()
        progress = Progress(expected, f"{opts.system} [{opts.profile}]", opts.progress)

        def settled():  # every image's exchange finished or accounted as lost (each loss is counted once)
            c = tb.blocks_counters()
            lost = sum(v["dropped"] + v.get("errors", 0) for v in c.values())
            done = sum("final" in e for e in exchanges(tb.sink.received()).values())
            progress.update(done, lost)
            return done + lost >= expected

        deadline = time.monotonic() + opts.timeout_s
        while not settled() and time.monotonic() < deadline:
            tb.sink.wait(tb.sink.n_out + 1, 0.05)
    finally:
        if progress is not None:
            progress.close()
        tb.stop()
        tb.wait()
    wall = time.perf_counter() - t0
    rows: List[Dict] = []
    got = exchanges(tb.sink.received())
    for f, image_id in zip(files, image_ids(files)):
        ex = got.get(image_id, {})
        row = {"image": image_id, "received": "final" in ex}
        if "final" not in ex:
            why = tb.decoder.failures.get(image_id) or tb.encoder.failures.get(image_id)
            row["reason"] = " ".join(str(why).split()) if why else "lost on the way (see the block counters)"
        if "final" in ex:
            info, img = ex["final"]
            ref = load_image(f, opts.size)
            uses = tb.exchange_uses(ex["rounds"])
            row.update({"psnr_db": round(float(psnr(ref, img)), 3) if ref.shape == img.shape else None,
                        "shape": list(img.shape), "channel_uses": uses,
                        "cbr": round(uses["total"] / float(img.size), 6),
                        "crc_ok": info.get("crc_ok"), "header_ok": info.get("header_ok", info.get("crc_ok")),
                        "mcs": info.get("mcs"), "snr_est_db": info.get("snr_est_db"),
                        "timings_ms": stage_timings(info)})
            if isinstance(info.get("received_text"), str):
                row["received_text"] = info["received_text"]
            if images_out is not None:
                images_out[image_id] = img
            if len(ex["rounds"]) > 1:
                row["rounds"] = [{"round": i.get("round"), "crc_ok": i.get("crc_ok"),
                                  "channel_uses": tb.channel_uses(i)} for i in ex["rounds"]]
            if isinstance(info.get("report"), dict) and info["report"]:
                row["transmitter"] = {k: v for k, v in info["report"].items() if v is not None}
            if opts.out_dir:
                row["output"] = f"{opts.out_dir.rstrip('/')}/{image_id}.png"
        rows.append(row)
    counters = tb.blocks_counters()
    return {"system": opts.system, "profile": opts.profile, "snr_db": opts.snr_db,
            "snr_convention": "Es/N0 per complex symbol, unit average power", "channel": opts.channel,
            "tx_snr_db": opts.design_snr_db,
            "estimator": opts.estimator if opts.channel == "rayleigh" else None,
            "modulation": opts.modulation, "code_rate": opts.code_rate,
            "header": f"{tb.dtx.path.header.code.name}, QPSK, CRC-16",
            "images": rows, "frames_crc_failed": counters["frame_demapper"]["crc_failed"],
            "frames_header_lost": counters["frame_demapper"]["header_lost"],
            "wall_s": round(wall, 3), "blocks": counters}


def run_flowgraph_ota(opts: FlowgraphOptions, cfo: float = 0.1, epsilon: float = 1.0001,
                 taps=(1.0, 0.5, 0.3)) -> Dict:
    """Every image through its system and the over-the-air burst PHY (``ota_tx`` ->
    ``channels.channel_model`` with noise, CFO, timing drift and multipath -> ``ota_rx``),
    a real flowgraph per run. The system runs in this process (no worker).

    Args:
        opts (FlowgraphOptions): the link's options (channel/estimator are ignored: the
            impairments are the channel model's).
        cfo (float): carrier frequency offset in OFDM subcarrier spacings.
        epsilon (float): sample-rate ratio of the channel model (timing drift).
        taps (sequence): multipath taps.
    """
    from ..eval.metrics import psnr
    from ..image_io import save_image
    from ..link import FrameLink, PhyConfig
    from ..systems import build
    from .ota_sim import run_ota_sim

    opts.validate()
    files = list_images(opts.images)
    system = build(opts.system, opts.profile)
    link = FrameLink(PhyConfig(modulation=opts.modulation, rate=opts.code_rate))
    ctx = link.context(opts.snr_db, opts.budget_symbols or None)
    rows, t0 = [], time.perf_counter()
    for f, image_id in zip(files, image_ids(files)):
        ref = load_image(f, opts.size)
        te = time.perf_counter()
        frame = system.encode(ref, ctx)
        te = time.perf_counter() - te
        res = run_ota_sim(frame, opts.snr_db, cfo=cfo, epsilon=epsilon, taps=taps, seed=opts.seed,
                          modulation=opts.modulation, code_rate=opts.code_rate)
        row = {"image": image_id, "detected": bool(res.detected), "crc_ok": bool(res.crc_ok),
               "measured_snr_db": None if not np.isfinite(res.snr_db) else round(float(res.snr_db), 2),
               "channel_uses": link.channel_uses(link.transmit(frame))}
        img = None
        if res.detected and res.frame is not None:
            td = time.perf_counter()
            img = system.decode(res.frame, ctx)
            row["timings_ms"] = {"encode_ms": round(te * 1e3, 2), "decode_ms": round((time.perf_counter() - td) * 1e3, 2)}
        row["received"] = img is not None
        if img is not None:
            row["psnr_db"] = round(float(psnr(ref, img)), 3)
            if opts.out_dir:
                save_image(f"{opts.out_dir}/{image_id}.png", img)
                save_image(f"{opts.out_dir}/{image_id}_compare.png", np.concatenate([ref, img], axis=1))
        rows.append(row)
    return {"system": opts.system, "profile": opts.profile, "phy": "ota-sim", "snr_db": opts.snr_db,
            "snr_convention": "Es/N0 per OFDM data carrier", "impairments": {"cfo_subcarriers": cfo,
                                                                              "epsilon": epsilon, "taps": list(taps)},
            "modulation": opts.modulation, "code_rate": opts.code_rate, "images": rows,
            "wall_s": round(time.perf_counter() - t0, 3)}
