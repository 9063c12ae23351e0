"""The over-the-air burst PHY in numpy: OFDM frame layout, header, channel estimation, tracking.

GNU Radio's own OFDM blocks do the sample-rate work (carrier allocation, IFFT, cyclic
prefix; Schmidl & Cox detection, CFO correction, header/payload demux, FFT); this module
holds everything that is specific to carrying a semantic frame, shared by the GNU Radio
blocks in :mod:`gensemcom.blocks` and by the tests:

Frame (OFDM symbols of ``fft_len`` + ``cp_len`` samples, 802.11a-like carriers)::

    [sync 1: Schmidl & Cox]  odd carriers only, BPSK x sqrt(2): two identical halves
    [sync 2: long training]  every active carrier, known BPSK
    [header x 4]             16 bytes, QPSK, repeated 3 times on different carriers
    [payload x n]            digital QAM symbols then analog symbols, frequency first
                             (48 data carriers a symbol), zero-padded to a full symbol
    4 pilot carriers (-21, -7, 7, 21) in every header and payload symbol

Header (16 bytes, big-endian): magic 0x5A, flags (bit 0: the input was a semantic frame
dict; bits 4-7: log2 of the QAM order), sequence number (u16), digital symbols (u24),
analog symbols (u24), analog scale (f32), CRC-16/CCITT of the first 14 bytes.

Receiver (:class:`OfdmReceiverCore`): the channel is estimated from both sync symbols by
a least-squares fit of a short impulse response (``chan_taps`` taps around the measured
mean delay), which averages the noise of 104 observations into 12 unknowns; the noise
variance comes from the fit residual. Every header and payload symbol's pilots give a
common phase and a phase slope across carriers (residual CFO and the timing drift of a
sample-rate offset); both are smoothed over neighbouring symbols by a local linear fit
and removed, then every data carrier is zero-forced with the estimated channel. The
noise variance per symbol (N0 / |H|^2) goes with the symbols, for LLRs and for the
analog part's MMSE scaling.
"""
from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

FFT_LEN = 128
CP_LEN = 32
OCCUPIED = tuple(list(range(-26, -21)) + list(range(-20, -7)) + list(range(-6, 0)) +
                 list(range(1, 7)) + list(range(8, 21)) + list(range(22, 27)))
PILOTS = (-21, -7, 7, 21)
# GNU Radio's 802.11 pilot polarity sequence (as in digital/ofdm_txrx.py)
_PILOT_SCRAMBLE = (
    1, 1, 1, 1, -1, -1, -1, 1, -1, -1, -1, -1, 1, 1, -1, 1, -1, -1, 1, 1, -1, 1, 1, -1, 1, 1, 1, 1, 1, 1, -1, 1,
    1, 1, -1, 1, 1, -1, -1, 1, 1, 1, -1, 1, -1, -1, -1, 1, -1, 1, -1, -1, 1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1,
    -1, -1, 1, -1, 1, -1, 1, 1, -1, -1, -1, 1, 1, -1, -1, -1, -1, 1, -1, -1, 1, -1, 1, 1, 1, 1, -1, 1, -1, 1, -1, 1,
    -1, -1, -1, -1, -1, 1, -1, 1, 1, -1, 1, -1, 1, 1, 1, -1, -1, 1, -1, -1, -1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1)
PILOT_SYMBOLS = tuple((x, x, x, -x) for x in _PILOT_SCRAMBLE)

HEADER_BYTES = 16
HEADER_SYMS = 4          # OFDM symbols of header
HEADER_REPEAT = 3        # repetitions of every header QPSK symbol
N_SYNC = 2
MAGIC = 0x5A
FLAG_FRAME = 0x01
MAX_COUNT = (1 << 24) - 1
SEQ_MOD = 1 << 16

LENGTH_TAG = "packet_len"     # tagged-stream length tag at the transmitter
FRAME_LEN_TAG = "frame_len"   # header/payload demux length tag (payload OFDM symbols)


def sc_threshold(snr_db: float, fft_len: int = FFT_LEN, n_active: int = len(OCCUPIED) + len(PILOTS)) -> float:
    """A Schmidl & Cox detection threshold for frames expected at ``snr_db``
    (per-data-carrier Es/N0): 60 % of the metric's plateau (r / (1 + r))^2 for the
    time-domain SNR r, clipped to [0.2, 0.9]. On noise alone the metric averages
    2 / fft_len; 0.2 keeps false alarms to a few a second at 1 Msps."""
    r = 10 ** (float(snr_db) / 10) * n_active / fft_len
    return float(min(0.9, max(0.2, 0.6 * (r / (1 + r)) ** 2)))


class OtaError(ValueError):
    """Input the OTA PHY cannot carry, or a header that does not decode."""


def _seq_bpsk(n: int, seed: int) -> np.ndarray:
    return np.where(np.random.default_rng(seed).integers(0, 2, n) > 0, 1.0, -1.0)


@dataclass(frozen=True)
class OtaParams:
    """The OFDM numerology both ends share (802.11a-like defaults).

    Attributes:
        fft_len (int): FFT length.
        cp_len (int): cyclic prefix in samples.
        occupied (tuple): data carriers (signed indices; 0 is DC).
        pilots (tuple): pilot carriers.
    """

    fft_len: int = FFT_LEN
    cp_len: int = CP_LEN
    occupied: Tuple[int, ...] = OCCUPIED
    pilots: Tuple[int, ...] = PILOTS

    def __post_init__(self):
        if self.fft_len < 16 or self.fft_len % 2:
            raise ValueError(f"fft_len must be even and >= 16, got {self.fft_len}")
        if not 0 < self.cp_len < self.fft_len:
            raise ValueError(f"cp_len must be in (0, fft_len), got {self.cp_len}")
        used = set(self.occupied) | set(self.pilots)
        if 0 in used or len(used) != len(self.occupied) + len(self.pilots):
            raise ValueError("data and pilot carriers must be distinct and exclude DC")
        if any(abs(k) >= self.fft_len // 2 for k in used):
            raise ValueError("carrier index out of range")

    # ------------------------------------------------------------ derived
    @property
    def n_data(self) -> int:
        """Data carriers per OFDM symbol."""
        return len(self.occupied)

    @property
    def active(self) -> np.ndarray:
        """Data and pilot carriers, sorted (signed indices)."""
        return np.array(sorted(set(self.occupied) | set(self.pilots)))

    @property
    def sym_len(self) -> int:
        return self.fft_len + self.cp_len

    @property
    def gain(self) -> float:
        """Transmit scale after GNU Radio's unnormalised IFFT: unit average sample power."""
        return 1.0 / np.sqrt(self.active.size)

    def idx(self, carriers) -> np.ndarray:
        """Vector indices of signed carriers in fft-shifted order (DC at fft_len/2)."""
        return np.asarray(carriers, int) + self.fft_len // 2

    def sync_words(self) -> Tuple[np.ndarray, np.ndarray]:
        """The two sync symbols (fft-shifted order, as the carrier allocator takes them).

        Sync 1 uses only odd carriers with amplitude sqrt(2) (two identical halves in
        time, what ``ofdm_sync_sc_cfb`` with ``use_even_carriers=False`` looks for);
        sync 2 uses every active carrier."""
        act = self.active
        odd = act[act % 2 != 0]
        s1 = np.zeros(self.fft_len, np.complex64)
        s1[self.idx(odd)] = np.sqrt(2) * _seq_bpsk(odd.size, 42)
        s2 = np.zeros(self.fft_len, np.complex64)
        s2[self.idx(act)] = _seq_bpsk(act.size, 43)
        return s1, s2

    def pilot_values(self, sym_index: np.ndarray) -> np.ndarray:
        """Pilot symbols of data-symbol numbers ``sym_index`` (0 = first header symbol)."""
        p = np.asarray(PILOT_SYMBOLS, np.float64)
        return p[np.asarray(sym_index) % len(p)][:, : len(self.pilots)]

    def noise_voltage(self, snr_db: float) -> float:
        """``channels.channel_model`` noise voltage for a per-data-carrier Es/N0 of
        ``snr_db`` (unit-energy channel taps, unit average sample power at the tx)."""
        return float(np.sqrt(self.fft_len / self.active.size * 10 ** (-snr_db / 10)))

    def frame_samples(self, n_payload_syms: int) -> int:
        """Samples of a frame (sync, header, payload), without gaps."""
        return (N_SYNC + HEADER_SYMS + int(n_payload_syms)) * self.sym_len

    def payload_syms(self, n_symbols: int) -> int:
        """OFDM symbols for ``n_symbols`` payload symbols."""
        return -(-int(n_symbols) // self.n_data)


# ---------------------------------------------------------------------- header
@dataclass
class Header:
    """The OTA header (see the module docstring)."""

    n_digital: int
    n_analog: int
    analog_scale: float = 1.0
    seq: int = 0
    bits_per_symbol: int = 4
    is_frame: bool = False

    def pack(self) -> bytes:
        if not (0 <= self.n_digital <= MAX_COUNT and 0 <= self.n_analog <= MAX_COUNT):
            raise OtaError(f"frame of {self.n_digital} + {self.n_analog} symbols is too large")
        flags = (FLAG_FRAME if self.is_frame else 0) | ((int(self.bits_per_symbol) & 0xF) << 4)
        body = struct.pack(">BBH", MAGIC, flags, int(self.seq) % SEQ_MOD)
        body += int(self.n_digital).to_bytes(3, "big") + int(self.n_analog).to_bytes(3, "big")
        body += struct.pack(">f", float(self.analog_scale))
        return body + struct.pack(">H", binascii.crc_hqx(body, 0xFFFF))

    @staticmethod
    def unpack(data: bytes) -> "Header":
        data = bytes(data)
        if len(data) != HEADER_BYTES:
            raise OtaError(f"header of {len(data)} bytes")
        if struct.unpack(">H", data[14:])[0] != binascii.crc_hqx(data[:14], 0xFFFF):
            raise OtaError("header CRC failed")
        magic, flags, seq = struct.unpack(">BBH", data[:4])
        if magic != MAGIC:
            raise OtaError("bad header magic")
        scale = struct.unpack(">f", data[10:14])[0]
        if not np.isfinite(scale):
            raise OtaError("non-finite analog scale")
        return Header(int.from_bytes(data[4:7], "big"), int.from_bytes(data[7:10], "big"), float(scale), seq,
                      flags >> 4, bool(flags & FLAG_FRAME))


def _header_positions(p: OtaParams) -> np.ndarray:
    """Where copy r of header QPSK symbol j sits among the header's data symbols."""
    n_q = HEADER_BYTES * 4
    pos = np.arange(HEADER_REPEAT)[:, None] * n_q + np.arange(n_q)[None, :]
    if HEADER_REPEAT * n_q > HEADER_SYMS * p.n_data:
        raise ValueError("header does not fit in its OFDM symbols")
    return pos  # (repeat, n_q)


_QPSK = np.array([1 + 1j, -1 + 1j, 1 - 1j, -1 - 1j], np.complex64) / np.sqrt(2)  # bit0 -> I sign, bit1 -> Q sign


def header_symbols(h: Header, p: OtaParams) -> np.ndarray:
    """The header's data-carrier symbols (HEADER_SYMS * n_data of them)."""
    bits = np.unpackbits(np.frombuffer(h.pack(), np.uint8))
    q = _QPSK[bits[0::2] + 2 * bits[1::2]]
    out = np.zeros(HEADER_SYMS * p.n_data, np.complex64)
    for r, pos in enumerate(_header_positions(p)):
        out[pos] = q
    return out


def decode_header_symbols(z: np.ndarray, p: OtaParams) -> Header:
    """Soft-combine the header copies (``z``: matched-filtered symbols conj(H) y, so
    that weak carriers count less) and unpack.

    Raises:
        OtaError: CRC or magic failure.
    """
    z = np.asarray(z).reshape(-1)
    acc = np.zeros(HEADER_BYTES * 4, np.complex128)
    for pos in _header_positions(p):
        acc += z[pos]
    bits = np.empty(HEADER_BYTES * 8, np.uint8)
    bits[0::2] = acc.real < 0
    bits[1::2] = acc.imag < 0
    return Header.unpack(np.packbits(bits).tobytes())


def header_decisions(z: np.ndarray, p: OtaParams) -> np.ndarray:
    """The header's data-carrier symbols re-made from the combined hard decisions."""
    z = np.asarray(z).reshape(-1)
    acc = np.zeros(HEADER_BYTES * 4, np.complex128)
    for pos in _header_positions(p):
        acc += z[pos]
    q = _QPSK[(acc.real < 0).astype(int) + 2 * (acc.imag < 0).astype(int)]
    out = np.zeros(HEADER_SYMS * p.n_data, np.complex64)
    for pos in _header_positions(p):
        out[pos] = q
    return out


# ---------------------------------------------------------------------- transmitter
def frame_data_symbols(digital: np.ndarray, analog: np.ndarray, header: Header, p: OtaParams) -> np.ndarray:
    """Header + payload symbols on the data carriers, zero-padded to whole OFDM symbols."""
    payload = np.concatenate([np.asarray(digital, np.complex64).reshape(-1),
                              np.asarray(analog, np.complex64).reshape(-1)])
    n = p.payload_syms(payload.size) * p.n_data
    out = np.zeros(HEADER_SYMS * p.n_data + n, np.complex64)
    out[: HEADER_SYMS * p.n_data] = header_symbols(header, p)
    out[HEADER_SYMS * p.n_data: HEADER_SYMS * p.n_data + payload.size] = payload
    return out


def modulate(data_syms: np.ndarray, p: OtaParams) -> np.ndarray:
    """Numpy reference of the transmitter chain (allocator, IFFT, CP, scale) for tests."""
    d = np.asarray(data_syms, np.complex64).reshape(-1, p.n_data)
    s1, s2 = p.sync_words()
    grid = np.zeros((N_SYNC + d.shape[0], p.fft_len), np.complex64)
    grid[0], grid[1] = s1, s2
    grid[N_SYNC:, p.idx(p.occupied)] = d
    grid[N_SYNC:, p.idx(p.pilots)] = p.pilot_values(np.arange(d.shape[0]))
    t = np.fft.ifft(np.fft.ifftshift(grid, axes=1), axis=1) * p.fft_len * p.gain
    t = np.concatenate([t[:, -p.cp_len:], t], axis=1)
    return t.reshape(-1).astype(np.complex64)


# ---------------------------------------------------------------------- receiver
def _local_linear(y: np.ndarray, half: int) -> np.ndarray:
    """Local linear regression of ``y`` over windows of +/- ``half`` samples (exact for
    straight lines, shrinking windows at the ends)."""
    n = y.size
    if n <= 2 or half <= 0:
        return y.copy()
    t = np.arange(n, dtype=np.float64)
    out = np.empty(n)
    c = lambda a: np.concatenate([[0.0], np.cumsum(a)])  # noqa: E731
    s0, s1, s2, sy, sty = c(np.ones(n)), c(t), c(t * t), c(y), c(t * y)
    W = 2 * half + 1
    lo = np.clip(np.arange(n) - half, 0, max(n - W, 0))
    hi = np.minimum(lo + W, n)
    S0, S1, S2 = s0[hi] - s0[lo], s1[hi] - s1[lo], s2[hi] - s2[lo]
    SY, STY = sy[hi] - sy[lo], sty[hi] - sty[lo]
    det = S0 * S2 - S1 * S1
    ok = det > 1e-9
    b = np.where(ok, (S0 * STY - S1 * SY) / np.where(ok, det, 1), 0.0)
    a = (SY - b * S1) / S0
    out[:] = a + b * t
    return out


@dataclass
class ChannelEstimate:
    """Channel on every carrier (fft-shifted order) and the noise variance, in the
    receiver's FFT units (signal: H * x with unit-power x)."""

    h: np.ndarray
    n0: float
    delay: float = 0.0
    dof: int = 0


@dataclass
class Equalized:
    """One frame's payload after equalisation.

    Attributes:
        symbols (np.ndarray): ZF-equalised data-carrier symbols, frequency first.
        noise_var (np.ndarray): N0 / |H|^2 of each symbol.
        snr_db (float): per-data-carrier Es/N0 of the frame, mean |H|^2 / N0.
        n0 (float): noise variance (FFT units).
        phase (np.ndarray): smoothed common phase per OFDM symbol (rad).
        slope (np.ndarray): smoothed phase slope per OFDM symbol (rad per carrier).
    """

    symbols: np.ndarray
    noise_var: np.ndarray
    snr_db: float
    n0: float
    phase: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slope: np.ndarray = field(default_factory=lambda: np.zeros(0))


class OfdmReceiverCore:
    """Channel estimation, header decoding and payload equalisation (numpy).

    Args:
        params (OtaParams): numerology.
        chan_taps (int): impulse-response taps of the channel fit (fewer: less noise
            in the estimate, less delay spread tolerated; at most cp_len).
        track_window (int): the pilots' common phase follows a line from the sync
            symbols (residual CFO) plus deviations smoothed over this many OFDM
            symbols each side (oscillator phase noise; 0: the line only); the phase
            slope across carriers (timing drift) is one line over the frame.
    """

    def __init__(self, params: Optional[OtaParams] = None, chan_taps: int = 8, track_window: int = 0):
        self.p = params or OtaParams()
        p = self.p
        self.chan_taps = int(min(max(chan_taps, 1), p.cp_len))
        self.track_window = int(track_window)
        self.s1, self.s2 = p.sync_words()
        i1 = np.nonzero(self.s1)[0]
        i2 = np.nonzero(self.s2)[0]
        self.obs_idx = (i1, i2)
        self.obs_k = np.concatenate([i1, i2]) - p.fft_len // 2      # signed carrier of each observation
        self.obs_w = np.concatenate([np.abs(self.s1[i1]) ** 2, np.abs(self.s2[i2]) ** 2])  # 1 / noise var factor
        self.act_k = p.active
        self.data_idx = p.idx(p.occupied)
        self.pilot_idx = p.idx(p.pilots)
        self.pilot_k = np.asarray(p.pilots, np.float64)
        self._fits: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    # ----------------------------------------------------------- channel
    def _fit_matrix(self, d0: int):
        """(projection onto all active carriers, residual projection) for taps d0.. ."""
        if d0 not in self._fits:
            D = np.arange(d0, d0 + self.chan_taps)
            N = self.p.fft_len
            w = np.sqrt(self.obs_w)
            A = np.exp(-2j * np.pi * np.outer(self.obs_k, D) / N)
            pinv = np.linalg.pinv(A * w[:, None]) * w[None, :]     # (L, n_obs): weighted LS
            F_all = np.exp(-2j * np.pi * np.outer(np.arange(N) - N // 2, D) / N)
            self._fits[d0] = (F_all @ pinv, A @ pinv)
        return self._fits[d0]

    def estimate(self, y1: np.ndarray, y2: np.ndarray) -> ChannelEstimate:
        """Channel and noise from the two sync symbols' FFT outputs (shifted order)."""
        i1, i2 = self.obs_idx
        obs = np.concatenate([y1[i1] / self.s1[i1], y2[i2] / self.s2[i2]]).astype(np.complex128)
        # mean delay from the long training symbol: carrier-to-carrier phase rotation
        h2 = obs[i1.size:]
        k2 = self.obs_k[i1.size:]
        adj = np.diff(k2) == 1
        rot = np.sum(h2[1:][adj] * np.conj(h2[:-1][adj]))
        delay = float(-np.angle(rot) * self.p.fft_len / (2 * np.pi)) if abs(rot) > 0 else 0.0
        N = self.p.fft_len
        delay = float(np.round(delay))  # integer: an integer-tap channel stays inside the fit
        derot = np.exp(2j * np.pi * self.obs_k * delay / N)
        d0 = -(self.chan_taps // 2) + 1
        to_all, to_obs = self._fit_matrix(d0)
        o = obs * derot
        h = to_all @ o
        resid = o - to_obs @ o
        dof = max(obs.size - self.chan_taps, 1)
        n0 = float(np.sum(self.obs_w * np.abs(resid) ** 2) / dof)
        h = h * np.exp(-2j * np.pi * (np.arange(N) - N // 2) * delay / N)
        mask = np.zeros(N, bool)
        mask[self.p.idx(self.act_k)] = True
        h[~mask] = 0
        return ChannelEstimate(h.astype(np.complex64), max(n0, 1e-12), delay, dof)

    # ----------------------------------------------------------- tracking
    def _track(self, Y: np.ndarray, ce: ChannelEstimate, first_sym: int, with_slope: bool = True):
        """Per-symbol common phase and phase slope from the pilots, smoothed.

        Returns (phase, slope, pilot residual sum of squares, residual count)."""
        n = Y.shape[0]
        if n == 0:
            return np.zeros(0), np.zeros(0), 0.0, 0
        pv = self.p.pilot_values(first_sym + np.arange(n))
        hp = ce.h[self.pilot_idx]
        z = Y[:, self.pilot_idx] * np.conj(hp)[None, :] * pv            # ~ |h|^2 e^{j(phi + k s)}
        phi = np.angle(np.sum(z, axis=1))
        zr = z * np.exp(-1j * phi)[:, None]
        w = np.abs(hp) ** 2
        th = np.angle(zr)
        slope = (th * (w * self.pilot_k)[None, :]).sum(1) / max(np.sum(w * self.pilot_k ** 2), 1e-12)
        # Both drifts are zero when the channel was estimated (the sync symbols, at
        # data-symbol time -1.5) and grow linearly with a residual CFO (phase) and a
        # sample-rate offset (slope): fit lines through that origin, which needs two
        # parameters for the whole frame instead of two per symbol.
        t = first_sym + np.arange(n) + N_SYNC / 2 + 0.5
        phi = np.unwrap(phi)
        a = np.polyfit(t, phi, 1)[1] if n > 1 else phi[0]
        phi = phi - 2 * np.pi * np.round(a / (2 * np.pi))   # the 2 pi ambiguity of the unwrapped phase
        tt = float(np.sum(t * t))
        base = t * float(np.sum(t * phi)) / tt
        if self.track_window > 0 and n > 2:
            phi = base + _local_linear(phi - base, self.track_window)  # oscillator phase noise
        else:
            phi = base
        # a few symbols of pilots cannot see the slope through their noise (it costs
        # ~1 dB on the header), and the drift there is a fraction of a sample
        slope = t * float(np.sum(t * slope)) / tt if with_slope else np.zeros(n)
        rot = np.exp(1j * (phi[:, None] + slope[:, None] * self.pilot_k[None, :]))
        err = Y[:, self.pilot_idx] - hp[None, :] * pv * rot
        return phi, slope, float(np.sum(np.abs(err) ** 2)), int(err.size)

    def equalize(self, Y: np.ndarray, ce: ChannelEstimate, first_sym: int, n_symbols: Optional[int] = None,
                 update_n0: bool = True, with_slope: bool = True) -> Equalized:
        """Track and zero-force ``Y`` (OFDM symbols x fft_len, shifted FFT output).

        Args:
            Y: FFT outputs of the data symbols.
            ce: channel estimate from :meth:`estimate`.
            first_sym: data-symbol number of Y[0] (0: first header symbol), for pilots.
            n_symbols: data symbols to return (default: all carriers of all symbols).
            update_n0: pool the pilot residuals into the noise estimate.
        """
        Y = np.asarray(Y, np.complex64).reshape(-1, self.p.fft_len)
        phi, slope, ss, cnt = self._track(Y, ce, first_sym, with_slope)
        n0 = ce.n0
        if update_n0 and cnt:
            n0 = (ce.n0 * ce.dof + ss) / (ce.dof + cnt)
        kd = np.asarray(self.p.occupied, np.float64)
        hd = ce.h[self.data_idx]
        rot = np.exp(-1j * (phi[:, None] + slope[:, None] * kd[None, :]))
        g = np.where(np.abs(hd) > 1e-12, hd, 1e-12)
        x = (Y[:, self.data_idx] * rot / g[None, :]).reshape(-1)
        nv = np.broadcast_to(n0 / np.abs(g) ** 2, (Y.shape[0], kd.size)).reshape(-1)
        if n_symbols is not None:
            x, nv = x[:n_symbols], nv[:n_symbols]
        snr = float(np.mean(np.abs(hd) ** 2) / max(n0, 1e-30))
        return Equalized(x.astype(np.complex64), nv.astype(np.float32), 10 * np.log10(max(snr, 1e-30)), n0, phi, slope)

    def decode_header(self, Yh: np.ndarray, ce: ChannelEstimate) -> Tuple[Header, Equalized]:
        """Header symbols' FFT outputs -> header (raises :class:`OtaError`)."""
        eq = self.equalize(Yh, ce, 0, update_n0=False, with_slope=False)
        g = np.abs(np.tile(ce.h[self.data_idx], HEADER_SYMS)) ** 2
        try:
            return decode_header_symbols(eq.symbols * g, self.p), eq
        except OtaError:
            pass
        # second pass: four symbols of pilots see a residual CFO only dimly; the
        # combined decisions (right for almost every bit even when the CRC fails)
        # make all 52 carriers pilots for a line through the sync symbols' phase
        Yh = np.asarray(Yh).reshape(-1, self.p.fft_len)
        d = header_decisions(eq.symbols * g, self.p).reshape(HEADER_SYMS, -1)
        hd = ce.h[self.data_idx]
        zd = Yh[:, self.data_idx] * np.conj(hd)[None, :] * np.conj(d)
        pv = self.p.pilot_values(np.arange(HEADER_SYMS))
        zp = Yh[:, self.pilot_idx] * np.conj(ce.h[self.pilot_idx])[None, :] * pv
        ph = np.unwrap(np.angle(zd.sum(1) + zp.sum(1)))
        t = np.arange(HEADER_SYMS) + N_SYNC / 2 + 0.5
        a = np.polyfit(t, ph, 1)[1]
        ph = ph - 2 * np.pi * np.round(a / (2 * np.pi))
        phi = t * float(np.sum(t * ph)) / float(np.sum(t * t))
        x = (Yh[:, self.data_idx] * np.exp(-1j * phi)[:, None] * np.conj(hd)[None, :]).reshape(-1)
        return decode_header_symbols(x, self.p), eq
