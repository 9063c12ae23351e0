"""The evaluation harness: semantic systems x images x SNRs -> rows, summary, plots.

``gensemcom eval`` (mounted by the CLI through :func:`add_parser`) sends every image
through every system at every SNR, over the PHY core (:class:`FrameLink`, the same
code the GNU Radio blocks run) or, with ``--flowgraph``, through the real blocks in a
GNU Radio top block (:class:`FlowgraphLink`), and writes to ``--out``:

* ``rows.csv`` (appended as rows finish, so an interrupted run can ``--resume``) and
  ``rows.json``: one row per system x image x SNR with channel uses (digital, analog,
  total), the achieved CBR (total uses / (3 H W)), CRC verdict, the ``failed`` flag
  (image lost) and the ``header_lost`` flag (the protected header did not arrive
  either), metrics and timings;
* ``summary.csv`` / ``summary.json`` / ``summary.txt``: means per system x SNR, with
  the counts of lost images (``lost``) and of lost headers (``header_lost``);
* ``{metric}_vs_snr.png`` and ``{metric}_vs_uses.png``;
* ``config.json``: the settings;
* with ``--predictability R``: per row the ``pred_*`` columns (below), their means in
  the summary, a predictability table in ``summary.txt`` and ``predictability_vs_snr.png``.

Predictability (``--predictability R``, the Stable Cascade SIC paper's Table 2; see
:mod:`gensemcom.eval.predictability`): every system x image x SNR is sent R times, the
first being the row's own run and the others with their own channel stream (and, for a
system with a generation ``seed``, seeds ``seed + 1`` ... ``seed + R - 1``); the rows get
``pred_mean`` / ``pred_std`` (the distance over every pair of received images),
``pred_pairs``, ``pred_lost`` (repetitions that lost the image, left out of the pairs),
``pred_reps``, ``pred_metric`` (LPIPS only with its weights, else ``effnet-lite0-feat``),
``pred_seeds`` and ``t_pred_s``. The summary averages ``pred_mean`` and ``pred_std`` over
the images and sums ``pred_pairs`` and ``pred_lost``.

Conventions:

* SNR is Es/N0 per complex channel use (unit average symbol power), as in the PHY;
  the default sweep is :data:`DEFAULT_SNRS` (-5 to 20 dB).
* Budget: ``floor(cbr * 3 * H * W)`` complex channel uses per image, handed to every
  system as :attr:`LinkContext.budget_symbols`; rate-matched systems (JPEG2000+LDPC)
  stay within it, DeepJSCC fits its latent into it (its header is side information),
  and every system reports what it actually used (``cbr_actual``).
* Failures: a system that returns no image (lost digital part, undecodable
  codestream, or a budget too small to send anything) is ``failed``; its PSNR, SSIM
  and MS-SSIM are **scored 0** (the Stable Cascade semcom paper's convention). The
  summary gives the failure rate, the means with failures scored 0, and PSNR over
  the received images only (``psnr_ok``).
* ``jpeg2000-ldpc`` is run for every (M, code rate) in ``--j2k-modulations`` x
  ``--j2k-rates`` (rows named ``jpeg2000-ldpc@16qam-r1/2``...), and two pseudo-systems
  pick one combination per SNR, their rows copied with ``envelope_of`` naming it
  (:func:`envelope_rows`): ``jpeg2000-ldpc-envelope``, the best mean PSNR among the
  combinations that lose the fewest images (none, wherever one delivers every image),
  and ``jpeg2000-ldpc-best-mean``, the best mean PSNR (failures scored 0) whatever it
  loses.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..image_io import load_image

from .ber import parse_snrs
from .metrics import METRICS, compute_metrics, compute_set_metrics, parse_metrics
from .predictability import EFFNET_FEAT, PRED_METRICS, choose_metric, format_mean_std, predictability_fields

J2K = "jpeg2000-ldpc"
ENVELOPE_SUFFIX = "-envelope"
BEST_MEAN_SUFFIX = "-best-mean"
#: the pseudo-systems :func:`envelope_rows` derives from the swept combinations
DERIVED_SUFFIXES = (ENVELOPE_SUFFIX, BEST_MEAN_SUFFIX)
ENVELOPE = J2K + ENVELOPE_SUFFIX
BEST_MEAN = J2K + BEST_MEAN_SUFFIX
#: Es/N0 values (dB) swept when ``--snrs`` is not given: from below every cliff to near-clean
DEFAULT_SNRS = (-5.0, -2.0, 0.0, 2.0, 5.0, 10.0, 15.0, 20.0)

#: Row fields before the metric columns, in CSV order.
BASE_FIELDS = ["system", "base_system", "modulation", "rate", "image", "height", "width", "snr", "channel",
               "uses_digital", "uses_analog", "uses_total", "budget", "cbr_target", "cbr_actual", "crc_ok",
               "failed", "header_lost", "fail_reason", "envelope_of"]
TIMING_FIELDS = ["t_encode_s", "t_phy_s", "t_decode_s", "t_metrics_s"]
#: Row fields ``--predictability`` adds at the end of the CSV (``t_pred_s``: the repetitions and the distances)
PRED_FIELDS = ["pred_metric", "pred_reps", "pred_lost", "pred_pairs", "pred_mean", "pred_std", "pred_seeds",
               "t_pred_s"]
#: Summary fields ``--predictability`` adds
PRED_SUMMARY_FIELDS = ["pred_metric", "pred_reps", "pred_lost", "pred_pairs", "pred_mean", "pred_std"]


class EvalError(RuntimeError):
    """A harness setting that cannot be used (unknown system, no images, ...)."""


# ------------------------------------------------------------------ config
@dataclass
class EvalConfig:
    """Settings of one evaluation run (the ``gensemcom eval`` options).

    Attributes:
        systems (list[str]): registered system names.
        snrs (list[float]): Es/N0 values (dB).
        channel (str): "awgn" or "rayleigh".
        images (str | None): image folder or file (None: the Kodak set in shared data).
        limit (int | None): use the first N images (sorted by name).
        cbr (float): channel-use budget per image as a fraction of 3*H*W.
        modulation (int | str): QAM order for systems other than jpeg2000-ldpc, or
            "auto" (link adaptation, the default).
        rate (str): LDPC rate for systems other than jpeg2000-ldpc, or "auto".
        j2k_modulations (list[int | str]): QAM orders swept for jpeg2000-ldpc; "auto"
            adds one variant at the MCS link adaptation picks (``jpeg2000-ldpc@auto``).
        j2k_rates (list[str]): LDPC rates swept for jpeg2000-ldpc.
        profile (str | None): model profile for systems that take ``profile``.
        metrics (list[str]): metric names (psnr is always added).
        out (str): output folder.
        seed (int): channel seed (each image x SNR gets its own stream).
        resume (bool): keep and skip the rows already in ``out/rows.csv``.
        flowgraph (bool): run through GNU Radio blocks instead of the PHY core.
        coherence (int): Rayleigh block length (symbols).
        estimator (str): Rayleigh channel estimate: "perfect", "ls" or "lmmse".
        backend (str): LDPC backend.
        progress (bool): tqdm progress bar.
        quality_table (str | None): also write the quality table ``--system auto``
            reads (:func:`write_quality_table`) to this path.
        predictability (int): R >= 2: send every system x image x SNR R times and
            score the spread of the received images (0: off; the paper uses 25).
        pred_metric (str): the predictability distance: "auto" (LPIPS where its
            weights are present, else ``effnet-lite0-feat``) or one of
            :data:`gensemcom.eval.predictability.PRED_METRICS`.
    """

    systems: List[str]
    snrs: List[float] = field(default_factory=lambda: list(DEFAULT_SNRS))
    channel: str = "awgn"
    images: Optional[str] = None
    limit: Optional[int] = None
    cbr: float = 1.0 / 24.0
    modulation: Union[int, str] = "auto"
    rate: str = "auto"
    j2k_modulations: List[Union[int, str]] = field(default_factory=lambda: ["auto", 4, 16, 64])
    j2k_rates: List[str] = field(default_factory=lambda: ["1/2", "2/3", "3/4", "5/6"])
    profile: Optional[str] = None
    metrics: List[str] = field(default_factory=lambda: ["psnr", "ssim", "ms-ssim"])
    out: str = "eval_out"
    seed: int = 0
    resume: bool = False
    flowgraph: bool = False
    coherence: int = 64
    estimator: str = "perfect"
    backend: str = "default"
    progress: bool = True
    quality_table: Optional[str] = None
    predictability: int = 0
    pred_metric: str = "auto"

    #: settings that must match for --resume to reuse rows
    RESUME_KEYS = ("channel", "cbr", "seed", "flowgraph", "coherence", "estimator", "backend", "profile",
                   "modulation", "rate", "predictability", "pred_metric")


@dataclass
class Variant:
    """One system at one (modulation, rate): a row label and how to build its link."""

    label: str
    system: str
    modulation: Union[int, str]
    rate: str


def parse_fraction(s) -> float:
    """``"1/24"`` or ``"0.0417"`` -> float."""
    s = str(s).strip()
    try:
        if "/" in s:
            a, b = s.split("/")
            return float(a) / float(b)
        return float(s)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a number or fraction: {s!r}") from None


# ------------------------------------------------------------------ images
def default_images_dir() -> Path:
    """``$GENSEMCOM_SHARED/data/kodak``, else ``<repo>/../shared/data/kodak``."""
    if os.environ.get("GENSEMCOM_SHARED"):
        return Path(os.environ["GENSEMCOM_SHARED"]) / "data" / "kodak"
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "kodak"


def list_images(spec: Optional[str], limit: Optional[int] = None) -> List[Path]:
    """Image files from a folder (sorted by name) or a single file
    (:func:`gensemcom.image_io.list_images`), at most ``limit``.

    Raises:
        EvalError: if the path does not exist or holds no images.
    """
    from ..image_io import IMAGE_SUFFIXES
    from ..image_io import list_images as files_at

    p = Path(spec) if spec else default_images_dir()
    try:
        files = files_at(str(p))
    except FileNotFoundError:
        raise EvalError(f"image path {str(p)!r} does not exist" + (
            "" if spec else " (set --images or $GENSEMCOM_SHARED)")) from None
    if not files:
        raise EvalError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(p)!r}")
    return files[:limit] if limit else files


# ----------------------------------------------------------------- systems
def plan_variants(cfg: EvalConfig) -> List[Variant]:
    """Check the systems (without loading any model) and list the variants to run.

    Raises:
        EvalError: on an unknown system or profile, or no systems.
    """
    from .. import systems as registry

    names = list(dict.fromkeys(s.strip() for s in cfg.systems if s.strip()))
    if not names:
        raise EvalError("no systems given (--systems)")
    specs = {}
    for n in names:
        try:  # every (system, profile) is checked before any model loads
            specs[n] = registry.check(n, cfg.profile)
        except ValueError as e:
            raise EvalError(str(e)) from None
    variants = []
    for n in names:
        spec, profile = specs[n]
        if spec.backend(profile).rate_matched:
            for m in cfg.j2k_modulations:
                if m == "auto":
                    variants.append(Variant(f"{n}@auto", n, "auto", "auto"))
                    continue
                for r in cfg.j2k_rates:
                    variants.append(Variant(f"{n}@{m}qam-r{r}", n, int(m), str(r)))
        else:
            variants.append(Variant(n, n, cfg.modulation if cfg.modulation == "auto" else int(cfg.modulation),
                                    str(cfg.rate)))
    return variants


def system_profile(name: str, cfg: EvalConfig) -> str:
    """The profile system ``name`` runs with under ``cfg`` (its default when ``cfg.profile`` is None)."""
    from .. import systems as registry

    return registry.check(name, cfg.profile)[1]


def build_system(name: str, cfg: EvalConfig):
    """Construct one system for ``cfg`` (its profile and, where it has one, the LDPC backend).

    Raises:
        EvalError: the system cannot be constructed here (missing weights or packages).
    """
    from .. import systems as registry

    spec, profile = registry.check(name, cfg.profile)
    kwargs = {"backend": cfg.backend} if "backend" in spec.options(profile) else {}
    try:
        return registry.build(name, profile, **kwargs)
    except Exception as e:
        raise EvalError(f"system {name!r} is unavailable here: {type(e).__name__}: {e}") from e


def build_systems(cfg: EvalConfig) -> Tuple[Dict[str, object], List[Variant]]:
    """Construct the systems and list the variants to run.

    Raises:
        EvalError: on an unknown system, or one that cannot be constructed here
            (missing weights or packages); the message says which and why.
    """
    variants = plan_variants(cfg)
    systems = {n: build_system(n, cfg) for n in dict.fromkeys(v.system for v in variants)}
    return systems, variants


def _flowgraph_link(cfg):
    """The PHY blocks in a running flowgraph, with FrameLink's interface (``--flowgraph``)."""
    from ..flowgraphs.phy_loopback import FlowgraphLink

    try:
        return FlowgraphLink(cfg)
    except ValueError as e:
        raise EvalError(str(e)) from None


# -------------------------------------------------------------------- rows
def _key(system: str, image: str, snr, channel: str) -> Tuple[str, str, float, str]:
    return (str(system), str(image), round(float(snr), 6), str(channel))


def _parse_cell(v: str):
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() and "inf" not in v.lower() else f


def _flat(row: dict, metrics: Sequence[str]) -> dict:
    out = {k: row.get(k) for k in BASE_FIELDS}
    out.update({k: row["channel_uses"][k.split("_")[1]] for k in ("uses_digital", "uses_analog", "uses_total")})
    for m in metrics:
        out[m] = row["metrics"].get(m)
    for t in TIMING_FIELDS:
        out[t] = row["timings"].get(t[2:])
    out["extra"] = json.dumps(row.get("extra") or {}, sort_keys=True)
    for p in PRED_FIELDS:  # written only when the CSV has these columns (--predictability)
        out[p] = row["timings"].get(p[2:]) if p.startswith("t_") else row.get(p)
    return out


def _nest(flat: dict, metrics: Sequence[str]) -> dict:
    row = {k: flat.get(k) for k in BASE_FIELDS if not k.startswith("uses_")}
    row["channel_uses"] = {k: flat.get(f"uses_{k}") for k in ("digital", "analog", "total")}
    row["metrics"] = {m: flat.get(m) for m in metrics}
    row["timings"] = {t[2:]: flat.get(t) for t in TIMING_FIELDS if flat.get(t) is not None}
    try:
        row["extra"] = json.loads(flat.get("extra") or "{}")
    except (TypeError, ValueError):
        row["extra"] = {}
    if "pred_metric" in flat:
        row.update({p: flat.get(p) for p in PRED_FIELDS if not p.startswith("t_")})
        if flat.get("t_pred_s") is not None:
            row["timings"]["pred_s"] = flat["t_pred_s"]
    return row


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


class _CsvLog:
    """rows.csv, appended and flushed row by row."""

    def __init__(self, path: Path, fields: List[str], resume: bool):
        self.path, self.fields = path, fields
        existing = resume and path.is_file() and path.stat().st_size > 0
        if existing:
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != fields:
                raise EvalError(f"{path} has columns {header}, this run writes {fields}: "
                                "use the same --metrics and --predictability, or another --out")
        self.f = open(path, "a" if existing else "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        if not existing:
            self.w.writeheader()
            self.f.flush()

    def write(self, flat: dict) -> None:
        self.w.writerow({k: ("" if flat.get(k) is None else flat.get(k)) for k in self.fields})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def read_rows_csv(path: Path, metrics: Sequence[str]) -> List[dict]:
    """Rows of an earlier run's ``rows.csv`` (nested like the JSON rows)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [_nest({k: _parse_cell(v) for k, v in r.items()}, metrics) for r in csv.DictReader(f)]


# ----------------------------------------------------------------- summary
def _mean(vals) -> Optional[float]:
    xs = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return float(np.mean(xs)) if xs else None


def summarize(rows: Sequence[dict], metrics: Sequence[str]) -> List[dict]:
    """Means per system x SNR: failure rate, the counts of lost images (``lost``) and
    lost headers (``header_lost``), channel uses, CBR, each metric (failures scored 0
    where the metric does so) and ``psnr_ok`` (received images only).

    A metric whose values are all strings ("not computed: ...") keeps the first string.
    """
    groups: "OrderedDict[tuple, List[dict]]" = OrderedDict()
    for r in sorted(rows, key=lambda r: (r["system"], float(r["snr"]))):
        groups.setdefault((r["system"], float(r["snr"])), []).append(r)
    out = []
    for (system, snr), rs in groups.items():
        s = {"system": system, "snr": snr, "n": len(rs), "channel": rs[0].get("channel"),
             "modulation": rs[0].get("modulation"), "rate": rs[0].get("rate"),
             "failure_rate": float(np.mean([bool(r["failed"]) for r in rs])),
             "lost": sum(bool(r["failed"]) for r in rs),
             "header_lost": sum(bool(r.get("header_lost")) for r in rs),
             "uses_digital": _mean(r["channel_uses"]["digital"] for r in rs),
             "uses_analog": _mean(r["channel_uses"]["analog"] for r in rs),
             "uses_total": _mean(r["channel_uses"]["total"] for r in rs),
             "cbr_actual": _mean(r["cbr_actual"] for r in rs)}
        for m in metrics:
            vals = [r["metrics"].get(m) for r in rs]
            mv = _mean(vals)
            s[m] = mv if mv is not None else next((v for v in vals if isinstance(v, str)), None)
        s["psnr_ok"] = _mean(r["metrics"].get("psnr") for r in rs if not r["failed"])
        envs = sorted({r.get("envelope_of") for r in rs if r.get("envelope_of")})
        if envs:
            s["envelope_of"] = ",".join(envs)
        if any(r.get("pred_metric") for r in rs):
            s.update(_summarize_predictability(rs))
        out.append(s)
    return out


def _summarize_predictability(rs: Sequence[dict]) -> dict:
    """A system x SNR group's predictability: ``pred_mean`` and ``pred_std`` averaged over
    the images that have them (two received repetitions or more), ``pred_pairs`` and
    ``pred_lost`` summed, the metric and R."""
    metrics = sorted({str(r["pred_metric"]) for r in rs if r.get("pred_metric")})
    reps = sorted({int(r["pred_reps"]) for r in rs if isinstance(r.get("pred_reps"), (int, float))})
    return {"pred_metric": ",".join(metrics), "pred_reps": reps[0] if len(reps) == 1 else None,
            "pred_mean": _mean(r.get("pred_mean") for r in rs), "pred_std": _mean(r.get("pred_std") for r in rs),
            "pred_pairs": sum(int(r.get("pred_pairs") or 0) for r in rs),
            "pred_lost": sum(int(r.get("pred_lost") or 0) for r in rs)}


def format_predictability(summary: Sequence[dict], systems: Optional[Sequence[str]] = None) -> str:
    """The predictability table (the paper's Table 2 as one line per system x SNR):
    the mean +/- std of the pairwise distance, its metric, the pairs and the lost
    repetitions out of all runs."""
    cols = ["system", "snr", "metric", "mean +/- std", "pairs", "lost/runs"]
    table = [cols]
    for s in summary:
        if not s.get("pred_metric") or (systems is not None and s["system"] not in systems):
            continue
        runs = int(s.get("pred_reps") or 0) * int(s.get("n") or 0)
        table.append([str(s["system"]), f"{float(s['snr']):g}", str(s["pred_metric"]),
                      format_mean_std(s.get("pred_mean"), s.get("pred_std")), str(s.get("pred_pairs", 0)),
                      f"{s.get('pred_lost', 0)}/{runs or '?'}"])
    if len(table) == 1:
        return ""
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in table)


def envelope_rows(rows: Sequence[dict], metric: str = "psnr") -> List[dict]:
    """Rows of the pseudo-systems that pick, per SNR, one (modulation, rate)
    combination of each swept (rate-matched) system, copied with ``envelope_of``
    naming the combination:

    * ``<system>-envelope``: the combination that loses the fewest images (none,
      wherever one delivers every image) and, among those, has the best mean
      ``metric``; a combination that loses images another one delivers is never
      chosen over it for a higher mean;
    * ``<system>-best-mean``: the best mean ``metric`` (failures scored 0), whatever
      it loses.

    Ties go to the lower failure rate, then to fewer images that could not be sent
    at all (budget), then to the earlier combination.
    """
    by: Dict[Tuple[str, float], Dict[str, List[dict]]] = {}
    order: Dict[str, int] = {}
    for r in rows:
        if "@" in str(r["system"]) and r.get("base_system"):
            order.setdefault(r["system"], len(order))
            by.setdefault((r["base_system"], float(r["snr"])), {}).setdefault(r["system"], []).append(r)

    def score(variant: str, rs: List[dict], lossless_first: bool) -> tuple:
        lost = sum(bool(r["failed"]) for r in rs)
        not_sent = sum(str(r.get("fail_reason") or "").startswith("budget") for r in rs)
        mean = _mean(r["metrics"].get(metric) for r in rs) or 0.0
        ties = (-lost / len(rs), -not_sent, -order[variant])
        return ((-lost, mean) if lossless_first else (mean,)) + ties

    out = []
    for suffix, lossless_first in ((ENVELOPE_SUFFIX, True), (BEST_MEAN_SUFFIX, False)):
        for base, snr in sorted(by):
            cands = by[(base, snr)]
            best = max(cands, key=lambda v: score(v, cands[v], lossless_first))
            for r in cands[best]:
                e = json.loads(json.dumps(r, default=_plain))
                e["system"], e["envelope_of"] = base + suffix, best
                out.append(e)
    return out


def format_table(summary: Sequence[dict], metrics: Sequence[str], systems: Optional[Sequence[str]] = None) -> str:
    """A plain-text table of the summary (optionally only some systems)."""
    cols = ["system", "snr", "n", "lost", "header_lost", "uses_total", "cbr_actual"] + list(metrics) + ["psnr_ok"]
    lines, rows = [], [s for s in summary if systems is None or s["system"] in systems]

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, str):
            return "n/c" if v.startswith("not computed") else v
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
        return str(v)

    table = [cols] + [[fmt(s.get(c)) for c in cols] for s in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    for r in table:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def cliff_snr(summary: Sequence[dict], system: str) -> Dict[str, Optional[float]]:
    """Where a system falls off the cliff: the highest SNR at which every image failed,
    the lowest SNR from which no image fails at any higher SNR, and the highest SNR at
    which a header was lost (the header's failure point, apart from the payload's)."""
    pts = sorted((s["snr"], s["failure_rate"], s.get("header_lost") or 0) for s in summary if s["system"] == system)
    all_failed = [snr for snr, f, _ in pts if f >= 1.0]
    headers_lost = [snr for snr, _, hl in pts if hl > 0]
    ok_from = None
    for snr, f, _ in reversed(pts):
        if f > 0:
            break
        ok_from = snr
    return {"highest_all_failed_snr": max(all_failed) if all_failed else None, "no_failures_from_snr": ok_from,
            "highest_header_lost_snr": max(headers_lost) if headers_lost else None}


# --------------------------------------------------------------------- run
def comparable_rows(rows: Sequence[dict]) -> List[dict]:
    """Rows without what depends on the machine's speed (``timings`` and the ``*_s`` /
    ``*_ms`` entries of ``extra``), to compare two runs of the same sweep (local and on Ray)."""
    out = []
    for r in rows:
        r = dict(r)
        r.pop("timings", None)
        r["extra"] = {k: v for k, v in (r.get("extra") or {}).items() if not k.endswith(("_s", "_ms"))}
        out.append(r)
    return out


def link_outcome(result) -> dict:
    """A link result's verdict as row fields: ``crc_ok``, ``failed`` (no image),
    ``header_lost`` (the protected header did not arrive: ``result.header_ok``, or the
    CRC's verdict for links that do not report it) and ``fail_reason``."""
    failed = result.image is None
    return {"crc_ok": bool(result.crc_ok), "failed": failed,
            "header_lost": not getattr(result, "header_ok", result.crc_ok),
            "fail_reason": ("crc" if not result.crc_ok else "decode") if failed else None}


def achieved_cbr(uses_total: int, height: int, width: int) -> float:
    """Channel bandwidth ratio actually spent: complex channel uses / (3 H W)."""
    return float(uses_total) / (3.0 * height * width)


def _resize_to(image: np.ndarray, shape) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((int(shape[1]), int(shape[0])), Image.BICUBIC))


def _sha(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest() + str(a.shape)


@contextmanager
def _generation_seed(system, offset: int):
    """Run with the system's generation ``seed`` moved by ``offset`` (restored after);
    yields whether the system has one."""
    base = getattr(system, "seed", None)
    has = isinstance(base, (int, np.integer)) and not isinstance(base, bool)
    if not has or offset == 0:
        yield has
        return
    system.seed = int(base) + int(offset)
    try:
        yield True
    finally:
        system.seed = base


def _repeat_link(system, img, snr: float, link, rng_key: List[int], data_budget: int, reps: int,
                 first: Optional[np.ndarray], label: str) -> Tuple[List[Optional[np.ndarray]], str]:
    """The received images of ``reps`` runs of one link: ``first`` (the row's own run),
    then runs ``k = 1 .. reps - 1`` with the channel stream ``rng_key + [k]`` and the
    generation seed moved by ``k``; None where the image was lost. Returns the images
    and what changed between runs ("channel" or "channel+generation")."""
    from ..link import run_link
    from ..systems.jpeg2000_ldpc import BudgetError

    outs: List[Optional[np.ndarray]] = [first]
    varied = "channel"
    for k in range(1, reps):
        with _generation_seed(system, k) as gen:
            try:
                res = run_link(system, img, snr, link, np.random.default_rng(rng_key + [k]),
                               budget_symbols=data_budget)
            except BudgetError:
                res = None
            except INFRA_ERRORS:
                raise
            except Exception as e:
                raise EvalError(f"{label} at {snr:g} dB, predictability run {k}: {type(e).__name__}: {e}") from e
        varied = "channel+generation" if gen else "channel"
        o = None if res is None else res.image
        if o is not None and o.shape != img.shape:
            o = _resize_to(o, img.shape)
        outs.append(o)
    return outs, varied


# ------------------------------------------------------------------- cells
#: exceptions that say the machine, not the system, failed: never turned into a cell's verdict, retried on Ray
INFRA_ERRORS = (ConnectionError, TimeoutError, MemoryError)


@dataclass(frozen=True)
class Cell:
    """One cell of a sweep: one variant of a system, one image, one SNR; the channel
    and every other setting come from the run's :class:`EvalConfig`.

    Attributes:
        label (str): the row's system label (``jpeg2000-ldpc@16qam-r1/2`` for a variant).
        system (str): the registered system.
        modulation (int | str): QAM order or "auto".
        rate (str): LDPC rate or "auto".
        image (str): the image file.
        snr (float): Es/N0 (dB).
    """

    label: str
    system: str
    modulation: Union[int, str]
    rate: str
    image: str
    snr: float

    @property
    def name(self) -> str:
        """The image's file name (the rows' ``image``)."""
        return Path(self.image).name

    def key(self, channel: str) -> Tuple[str, str, float, str]:
        """The resume key of this cell's row."""
        return _key(self.label, self.name, self.snr, channel)

    def describe(self) -> str:
        """``label on image at SNR dB``, for messages."""
        return f"{self.label} on {self.name} at {self.snr:g} dB"


def plan_cells(cfg: EvalConfig, files: Sequence[Path], variants: Sequence[Variant]) -> List[Cell]:
    """Every cell of a run in the local run's order: images, then variants, then SNRs."""
    return [Cell(v.label, v.system, v.modulation, v.rate, str(p), float(s))
            for p in files for v in variants for s in cfg.snrs]


@dataclass
class _Settings:
    """What a run derives from its config (checked once, the same in every process)."""

    metrics: List[str]
    img_metrics: List[str]
    set_metrics: List[str]
    reps: int
    pred_metric: Optional[str]


def _settings(cfg: EvalConfig) -> _Settings:
    if cfg.channel not in ("awgn", "rayleigh"):
        raise EvalError(f"unknown channel {cfg.channel!r}: use awgn or rayleigh")
    if not cfg.snrs:
        raise EvalError("no SNRs given")
    if not (cfg.cbr > 0):
        raise EvalError(f"--cbr must be positive, got {cfg.cbr}")
    metrics = parse_metrics(cfg.metrics)
    if "psnr" not in metrics:
        metrics = ["psnr"] + metrics
    reps = int(cfg.predictability or 0)
    if reps < 0 or reps == 1:
        raise EvalError(f"--predictability needs at least 2 repetitions (0: off), got {reps}")
    pred_metric = None
    if reps:
        try:
            pred_metric = choose_metric(cfg.pred_metric, prefer=metrics)
        except ValueError as e:
            raise EvalError(str(e)) from None
    return _Settings(metrics, [m for m in metrics if METRICS[m].level == "image"],
                     [m for m in metrics if METRICS[m].level == "set"], reps, pred_metric)


#: systems built in this process, by (system, profile, backend): built once per process, whatever the cells
_SYSTEMS: Dict[Tuple[str, str, str], object] = {}
#: cell runners of this process, by the settings they depend on (see :func:`runner_for`)
_RUNNERS: "OrderedDict[str, CellRunner]" = OrderedDict()


class CellRunner:
    """What the cells run in one process share: the systems (built once), the links,
    the current image and a cache of metrics.

    Args:
        cfg (EvalConfig): the run's settings.
        systems (dict | None): systems already built (by name); others are built on
            first use, once per process.
    """

    def __init__(self, cfg: EvalConfig, systems: Optional[Dict[str, object]] = None):
        self.cfg = cfg
        self.settings = _settings(cfg)
        self.systems: Dict[str, object] = dict(systems or {})
        self.links: Dict[Tuple, object] = {}
        self.metric_cache: "OrderedDict[tuple, dict]" = OrderedDict()
        self._image: Tuple[Optional[str], Optional[tuple]] = (None, None)

    def system(self, name: str):
        """The system ``name`` (built on first use; EvalError if it cannot be built here)."""
        if name not in self.systems:
            key = (name, system_profile(name, self.cfg), str(self.cfg.backend))
            if key not in _SYSTEMS:
                _SYSTEMS[key] = build_system(name, self.cfg)
            self.systems[name] = _SYSTEMS[key]
        return self.systems[name]

    def link(self, modulation, rate):
        """The forward link at (modulation, rate) over the run's channel."""
        from ..link import FrameLink, PhyConfig

        lk = (modulation, rate)
        if lk not in self.links:
            c = self.cfg
            lc = PhyConfig(modulation=modulation, backend=c.backend, rate=rate, channel=c.channel,
                           coherence=c.coherence, estimator=c.estimator, seed=c.seed)
            self.links[lk] = _flowgraph_link(lc) if c.flowgraph else FrameLink(lc)
        return self.links[lk]

    def image(self, path: str, preloaded: Optional[np.ndarray] = None) -> Tuple[np.ndarray, str]:
        """The image at ``path`` (``preloaded`` when given) and its hash, kept while cells use it."""
        if self._image[0] != path:
            if preloaded is None:
                img = load_image(path)  # 16-bit images scaled, not clipped
            else:  # a read-only array (Ray's object store) is copied: some kernels round differently on it
                img = preloaded if preloaded.flags.writeable else np.array(preloaded, copy=True)
            self._image = (path, (img, _sha(img)))
        return self._image[1]

    def close(self) -> None:
        """Close the links (the flowgraph ones hold a running top block)."""
        for link in self.links.values():
            if hasattr(link, "close"):
                link.close()
        self.links.clear()


def pin_torch_threads(n: Optional[int] = None) -> Optional[int]:
    """Fix torch's CPU threads for the cells this process runs: ``n``, or the current
    setting; returns it (None without torch).

    float32 results depend on the number of threads (the order of the sums), and the
    first parallel numba kernel (the LDPC decoder) starts numba's OpenMP threads, which
    resets OpenMP's thread count to the machine's cores mid-run; so numba's threads are
    started first, then torch's set, and every cell of a process runs with the same count.
    """
    try:
        import torch
    except ImportError:
        return None
    n = int(n or torch.get_num_threads())
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
    except Exception:
        pass
    torch.set_num_threads(n)
    return n


def _runner_key(cfg: EvalConfig) -> str:
    c = {k: v for k, v in asdict(cfg).items() if k not in ("out", "resume", "progress", "quality_table", "images",
                                                            "limit", "systems")}
    return json.dumps(c, sort_keys=True, default=str)


def runner_for(cfg: EvalConfig) -> CellRunner:
    """This process's :class:`CellRunner` for ``cfg`` (a worker keeps a few, its systems built once)."""
    k = _runner_key(cfg)
    if k not in _RUNNERS:
        _RUNNERS[k] = CellRunner(cfg)
        while len(_RUNNERS) > 4:
            _RUNNERS.popitem(last=False)[1].close()
    _RUNNERS.move_to_end(k)
    return _RUNNERS[k]


def evaluate_cell(cell: Cell, cfg: EvalConfig, runner: Optional[CellRunner] = None,
                  image: Optional[np.ndarray] = None) -> dict:
    """One cell's row: the image through the system and the PHY, scored.

    The result depends on the cell and ``cfg`` only: the channel stream is drawn from
    ``(seed, crc32(image name), round(1000 SNR))`` (the same for every system, whichever
    process runs the cell and whichever cells ran before), and the predictability
    repetitions from that key extended by the repetition.

    Args:
        cell (Cell): what to run.
        cfg (EvalConfig): the run's settings.
        runner (CellRunner | None): the process's shared state (default: :func:`runner_for`).
        image (np.ndarray | None): the image, already loaded (default: read from ``cell.image``).

    Returns:
        dict: the row (nested as in ``rows.json``).

    Raises:
        EvalError: the system failed or cannot be built here.
    """
    return _run_cell(cell, cfg, runner, image)[0]


def _run_cell(cell: Cell, cfg: EvalConfig, runner: Optional[CellRunner] = None,
              image: Optional[np.ndarray] = None) -> Tuple[dict, Optional[np.ndarray]]:
    """:func:`evaluate_cell`, also returning the received image (None if lost)."""
    from ..link import run_link
    from ..systems.jpeg2000_ldpc import BudgetError

    runner = runner or runner_for(cfg)
    st = runner.settings
    img, ref_hash = runner.image(cell.image, image)
    name, snr = cell.name, cell.snr
    h, w = img.shape[:2]
    budget = int(math.floor(cfg.cbr * 3 * h * w))
    system = runner.system(cell.system)
    link = runner.link(cell.modulation, cell.rate)
    pilots = getattr(getattr(link, "core", link), "pilots", None)
    data_budget = pilots.n_data(budget) if pilots is not None else budget
    # one channel stream per (seed, image, SNR), the same for every system and independent of
    # which rows a resumed run skips and of the process that runs the cell
    rng_key = [int(cfg.seed), zlib.crc32(name.encode()), int(round(snr * 1000)) & 0xFFFFFFFF]
    rng = np.random.default_rng(rng_key)
    row = {"system": cell.label, "base_system": cell.system, "modulation": cell.modulation, "rate": cell.rate,
           "image": name, "height": h, "width": w, "snr": float(snr), "channel": cfg.channel,
           "budget": budget, "cbr_target": cfg.cbr, "envelope_of": None, "fail_reason": None}
    try:
        res = run_link(system, img, snr, link, rng, budget_symbols=data_budget)
    except BudgetError as e:
        res = None
        row.update(crc_ok=False, failed=True, header_lost=True, fail_reason=f"budget: {e}",
                   channel_uses={"digital": 0, "analog": 0, "total": 0}, timings={}, extra={})
    except INFRA_ERRORS:
        raise
    except Exception as e:
        raise EvalError(f"{cell.describe()}: {type(e).__name__}: {e}") from e
    if res is not None:
        row.update(link_outcome(res), channel_uses=dict(res.channel_uses),
                   timings={k: float(t) for k, t in res.timings.items()},
                   extra={k: _plain(x) for k, x in {**res.frame_tx.meta,
                                                    **res.frame_tx.meta.get("report", {})}.items()
                          if isinstance(_plain(x), (int, float, str, bool))})
    out_img = None if res is None else res.image
    if out_img is not None and out_img.shape != img.shape:
        # a receiver that lost the header (and the size with it) renders at its own
        # size: scored at the reference's, and flagged
        out_img = _resize_to(out_img, img.shape)
        row["extra"]["resized_output"] = True
    row["cbr_actual"] = achieved_cbr(row["channel_uses"]["total"], h, w)
    t0 = time.perf_counter()
    mkey = (ref_hash, None if out_img is None else _sha(out_img), tuple(st.img_metrics))
    mres = runner.metric_cache.get(mkey)
    if mres is None:
        mres = compute_metrics(img, out_img, st.img_metrics)
        runner.metric_cache[mkey] = mres
        while len(runner.metric_cache) > 256:
            runner.metric_cache.popitem(last=False)
    row["metrics"] = {m: mres[m] for m in st.img_metrics}
    row["timings"]["metrics_s"] = time.perf_counter() - t0
    if st.reps:
        t0 = time.perf_counter()
        outs, varied = _repeat_link(system, img, snr, link, rng_key, data_budget, st.reps, out_img,
                                    f"{cell.label} on {name}")
        row.update(predictability_fields(outs, st.pred_metric, varied))
        row["timings"]["pred_s"] = time.perf_counter() - t0
    return row, out_img


def evaluate(cfg: EvalConfig, ray: Optional[str] = None, ray_inflight: int = 0, ray_cpus: int = 1) -> dict:
    """Run an evaluation and write its outputs (see the module docstring).

    Args:
        cfg (EvalConfig): the settings.
        ray (str | None): run the cells as Ray tasks on the cluster at this address
            ("auto": the running cluster, else a local one started for the run); None:
            here, one after the other (:mod:`gensemcom.eval.ray_runner`).
        ray_inflight (int): with ``ray``, at most this many cells submitted at once
            (0: twice the cluster's CPUs).
        ray_cpus (int): with ``ray``, CPUs per cell (and torch threads: float32 results
            depend on them; the local run uses torch's setting, the machine's cores).

    Returns:
        dict: ``rows`` (all, envelope included), ``summary``, ``files`` (written),
        ``new_rows`` and ``skipped_rows`` (rows taken from an earlier run by resume),
        ``cliff`` (per system); with ``ray`` also ``failed_cells`` (cell, reason),
        ``retried_cells`` (cell, attempts) and ``cluster`` (its resources).

    Raises:
        EvalError: unusable settings (unknown or unavailable system, no images, ...).
    """
    from tqdm import tqdm

    st = _settings(cfg)
    metrics, img_metrics, set_metrics = st.metrics, st.img_metrics, st.set_metrics
    if not ray:
        pin_torch_threads()
    files = list_images(cfg.images, cfg.limit)
    if ray:  # the systems are built on the workers
        systems, variants = None, plan_variants(cfg)
    else:
        systems, variants = build_systems(cfg)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    conf = {k: _plain(v) for k, v in asdict(cfg).items()}
    conf["metrics"] = metrics
    conf["pred_metric"] = st.pred_metric  # the distance actually used (None: predictability off)
    conf_path = out / "config.json"
    if cfg.resume and conf_path.is_file():
        old = json.loads(conf_path.read_text())
        diff = [k for k in EvalConfig.RESUME_KEYS if k in old and old[k] != conf.get(k)]
        if diff:
            raise EvalError(f"--resume: {out} was made with different settings ({', '.join(diff)}); "
                            "use the same settings or another --out")
    conf_path.write_text(json.dumps(conf, indent=1))

    fields = BASE_FIELDS + img_metrics + TIMING_FIELDS + ["extra"] + (PRED_FIELDS if st.reps else [])
    csv_path = out / "rows.csv"
    previous = read_rows_csv(csv_path, img_metrics) if cfg.resume else []
    done = {_key(r["system"], r["image"], r["snr"], r["channel"]) for r in previous}
    cells = plan_cells(cfg, files, variants)
    todo = [c for c in cells if c.key(cfg.channel) not in done]
    skipped = len(cells) - len(todo)
    # set-level metrics (FID) need the received images: kept only when their weights exist
    set_ok = set_metrics and not all(str(v).startswith("not computed")
                                     for v in compute_set_metrics([], [], set_metrics).values())
    fid_sets: Optional[Dict[tuple, list]] = {} if set_ok else None
    new: List[Tuple[Cell, dict]] = []
    log = _CsvLog(csv_path, fields, cfg.resume)

    def on_row(cell: Cell, row: dict, out_img: Optional[np.ndarray], ref: Optional[np.ndarray] = None) -> None:
        new.append((cell, row))
        log.write(_flat(row, img_metrics))
        if fid_sets is not None and out_img is not None:
            ref = load_image(cell.image) if ref is None else ref
            fid_sets.setdefault((cell.label, float(cell.snr)), []).append((ref, out_img))

    report: dict = {}
    try:
        if ray:
            from .ray_runner import run_cells

            report = run_cells(cfg, todo, on_row, address=ray, total=len(cells), skipped=skipped,
                               keep_images=fid_sets is not None, inflight=ray_inflight, cpus=ray_cpus)
        else:
            _run_local(cfg, todo, CellRunner(cfg, systems), on_row, len(cells), skipped, tqdm)
    finally:
        log.close()
    order = {c: i for i, c in enumerate(cells)}
    if ray:  # completion order -> the local run's order, in rows.csv too
        new.sort(key=lambda cr: order[cr[0]])
        _reorder_csv(csv_path, len(previous), {c.key(cfg.channel): i for c, i in order.items()})
    rows = list(previous) + [r for _, r in new]
    new_rows = len(new)

    if any("@" in str(r["system"]) for r in rows):
        rows = [r for r in rows if not str(r["system"]).endswith(DERIVED_SUFFIXES)] + envelope_rows(rows)
    summary = summarize(rows, img_metrics)
    for s in summary if set_metrics else []:
        key = (s.get("envelope_of") or s["system"], float(s["snr"]))
        if fid_sets is None:
            s.update(compute_set_metrics([], [], set_metrics))  # "not computed: weights unavailable"
        elif key in fid_sets:  # over the received images of this run
            refs, outs = zip(*fid_sets[key])
            s.update(compute_set_metrics(refs, outs, set_metrics))
        else:
            s.update({m: "not computed: images of resumed rows are not kept" for m in set_metrics})
    result_files = _write_outputs(out, rows, summary, img_metrics + set_metrics, cfg)
    if cfg.quality_table:
        write_quality_table(summary, cfg.quality_table, cfg, len(files))
        result_files.append(str(cfg.quality_table))
    cliffs = {s: cliff_snr(summary, s) for s in dict.fromkeys(x["system"] for x in summary)}
    (out / "cliff.json").write_text(json.dumps(cliffs, indent=1))
    result_files.append(str(out / "cliff.json"))
    res = {"rows": rows, "summary": summary, "files": result_files, "new_rows": new_rows,
           "skipped_rows": skipped, "cliff": cliffs, "metrics": img_metrics + set_metrics}
    if ray:
        res.update(failed_cells=report.get("failed", []), retried_cells=report.get("retried", []),
                   cluster=report.get("cluster", {}))
    return res


def _run_local(cfg: EvalConfig, todo: Sequence[Cell], runner: CellRunner, on_row, total: int, skipped: int,
               tqdm) -> None:
    """The cells here, one after the other (the default); a failing system stops the run."""
    bar = tqdm(total=total, initial=skipped, desc="eval", unit="run", disable=not cfg.progress, dynamic_ncols=True)
    try:
        for cell in todo:
            img, _ = runner.image(cell.image)
            row, out_img = _run_cell(cell, cfg, runner)
            on_row(cell, row, out_img, img)
            bar.update(1)
            bar.set_postfix_str(f"{cell.label} {cell.name} {cell.snr:g}dB psnr={row['metrics']['psnr']:.2f}")
    finally:
        bar.close()
        runner.close()


def _reorder_csv(path: Path, keep: int, order: Dict[tuple, int]) -> None:
    """Sort the rows of ``rows.csv`` after its first ``keep`` (an earlier run's) by ``order``
    (row key -> position), each record kept as written; through a temporary file, so the
    file is never half-written."""
    with open(path, newline="") as f:
        records = list(csv.reader(f))
    if len(records) <= keep + 2:
        return
    header, body = records[0], records[1:]
    at = {k: i for i, k in enumerate(header)}

    def pos(rec):
        return order.get(_key(rec[at["system"]], rec[at["image"]], rec[at["snr"]], rec[at["channel"]]), len(order))

    body = body[:keep] + sorted(body[keep:], key=pos)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header] + body)
    os.replace(tmp, path)


def quality_table(summary: Sequence[dict], channel: str, metric: str = "psnr") -> dict:
    """The quality table ``--system auto`` reads, from an evaluation's summary: per
    system, its mean ``metric`` (failures scored 0) and its channel uses per pixel
    (``cbr``) at each SNR; rate-matched systems from their ``@auto`` variant (the MCS
    link adaptation picks), derived rows left out."""
    snrs = sorted({float(s["snr"]) for s in summary})
    systems: Dict[str, dict] = {}
    for s in summary:
        name = str(s["system"])
        if name.endswith(DERIVED_SUFFIXES) or ("@" in name and not name.endswith("@auto")):
            continue
        base = name.split("@")[0]
        e = systems.setdefault(base, {metric: [None] * len(snrs), "cbr": [None] * len(snrs),
                                      "lost": [None] * len(snrs)})
        i = snrs.index(float(s["snr"]))
        e[metric][i] = None if not isinstance(s.get(metric), (int, float)) else round(float(s[metric]), 3)
        e["cbr"][i] = None if s.get("cbr_actual") is None else round(float(s["cbr_actual"]), 6)
        e["lost"][i] = int(s.get("lost", 0))
    return {"metric": metric, "channels": {channel: {"snr_db": snrs, "systems": systems}}}


def write_quality_table(summary: Sequence[dict], path, cfg: EvalConfig, n_images: int) -> None:
    """Write (or merge into, one channel at a time) the quality table at ``path``."""
    t = quality_table(summary, cfg.channel)
    p = Path(path)
    if p.is_file():
        old = json.loads(p.read_text())
        if old.get("metric") == t["metric"]:
            old["channels"].update(t["channels"])
            t = old
    t.setdefault("meta", {})[cfg.channel] = {
        "images": n_images, "cbr_budget": cfg.cbr, "profile": cfg.profile, "seed": cfg.seed,
        "estimator": cfg.estimator if cfg.channel == "rayleigh" else None,
        "metric_note": "mean PSNR (dB) over the images, lost images scored 0",
        "made_by": "gensemcom eval --quality-table"}
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(t, indent=1))


def _write_outputs(out: Path, rows, summary, metrics, cfg: EvalConfig) -> List[str]:
    from .plots import channel_label, make_plots, plot_predictability

    written = []
    (out / "rows.json").write_text(json.dumps(rows, indent=1, default=_plain))
    written += [str(out / "rows.csv"), str(out / "rows.json")]
    cols = ["system", "snr", "n", "channel", "modulation", "rate", "failure_rate", "lost", "header_lost",
            "uses_digital", "uses_analog", "uses_total", "cbr_actual"] + list(metrics) + ["psnr_ok", "envelope_of"]
    pred = any(s.get("pred_metric") for s in summary)
    if pred:
        cols += PRED_SUMMARY_FIELDS
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for s in summary:
            w.writerow({k: ("" if s.get(k) is None else s.get(k)) for k in cols})
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_plain))
    (out / "summary.txt").write_text(
        f"channel {cfg.channel}, CBR target {cfg.cbr:.5g}; PSNR/SSIM/MS-SSIM: failures scored 0; "
        f"psnr_ok: received images only; lost / header_lost: images / headers lost; n/c: not computed\n\n"
        + format_table(summary, metrics) + "\n"
        + (f"\npredictability: {cfg.predictability} runs per system x image x SNR; mean +/- std of the distance "
           "over every pair of received images (lost runs left out, counted in lost/runs), averaged over the images"
           + ("; effnet-lite0-feat is an EfficientNet-Lite0 feature distance, not LPIPS"
              if any(s.get("pred_metric") == EFFNET_FEAT for s in summary) else "")
           + "\n\n" + format_predictability(summary) + "\n" if pred else ""))
    written += [str(out / n) for n in ("summary.csv", "summary.json", "summary.txt")]
    title = (f"{channel_label(cfg.channel, cfg.estimator, cfg.coherence)}; budget CBR 1/{1 / cfg.cbr:.4g}"
             + ("; GNU Radio flowgraph" if cfg.flowgraph else ""))
    written += make_plots(summary, list(metrics) + ["failure_rate"], str(out), title)
    if pred and plot_predictability(summary, str(out / "predictability_vs_snr.png"), title):
        written.append(str(out / "predictability_vs_snr.png"))
    return written


# --------------------------------------------------------------------- CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "eval", help="evaluate semantic systems over images and SNRs (CSV/JSON rows, summary, plots)",
        description="Send every image through every system at every SNR over the PHY (or, with --flowgraph, "
                    "through the GNU Radio blocks) and score the received images. SNR is Es/N0 per complex "
                    "channel use. Failed images are scored PSNR/SSIM/MS-SSIM 0; the failure rate and PSNR over "
                    "received images are reported too. jpeg2000-ldpc runs every (M, rate) combination and adds "
                    f"the pseudo-systems {ENVELOPE} (the best combination among those losing the fewest "
                    f"images) and {BEST_MEAN} (the best mean PSNR).",
        epilog="example:\n  gensemcom eval --systems jpeg2000-ldpc --snrs=-5:20:1 --cbr 1/24 --out results/j2k",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=J2K, help=f"comma-separated system names (default {J2K})")
    p.add_argument("--snrs", default=",".join(f"{x:g}" for x in DEFAULT_SNRS),
                   help="Es/N0 dB: start:stop:step (stop included) or a list; write negative ones as --snrs=-4:20:2 "
                        "(default %(default)s)")
    p.add_argument("--channel", choices=["awgn", "rayleigh"], default="awgn")
    p.add_argument("--coherence", type=int, default=64, help="Rayleigh block length in symbols (default 64)")
    p.add_argument("--estimator", choices=["perfect", "ls", "lmmse"], default="perfect",
                   help="Rayleigh channel estimate (default perfect CSI)")
    p.add_argument("--images", default=None,
                   help="image folder or file (default: $GENSEMCOM_SHARED/data/kodak or ../shared/data/kodak)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--cbr", default="1/24",
                   help="channel-use budget per image, fraction of 3*H*W complex uses (default 1/24)")
    p.add_argument("--modulation", default="auto", choices=["auto", "4", "16", "64", "256"],
                   help="QAM order of the digital path for systems other than jpeg2000-ldpc (default auto: "
                        "link adaptation)")
    p.add_argument("--rate", default="auto", help="LDPC rate for systems other than jpeg2000-ldpc (default auto)")
    p.add_argument("--j2k-modulations", default="auto,4,16,64",
                   help="QAM orders swept for jpeg2000-ldpc; auto: one variant at the adapted MCS "
                        "(default %(default)s)")
    p.add_argument("--j2k-rates", default="1/2,2/3,3/4,5/6", help="LDPC rates swept for jpeg2000-ldpc")
    p.add_argument("--backend", default="default", help="LDPC backend (default: the measured best)")
    p.add_argument("--profile", choices=["embedded", "tiny", "full"], default=None,
                   help="model profile (default: each system's own: embedded where it has one)")
    p.add_argument("--metrics", default="psnr,ssim,ms-ssim",
                   help="comma-separated: " + ", ".join(METRICS) + " (weight-based ones only with local weights)")
    p.add_argument("--out", default="eval_out", help="output folder (default eval_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="keep the rows already in OUT/rows.csv and skip them")
    p.add_argument("--flowgraph", action="store_true", help="run through the GNU Radio blocks instead of the core")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--quality-table", metavar="PATH", default=None,
                   help="also write the quality table --system auto reads (mean PSNR, failures scored 0, per "
                        "system and SNR; jpeg2000-ldpc from its @auto variant)")
    p.add_argument("--predictability", type=int, default=0, metavar="R",
                   help="send every system x image x SNR R times (new channel noise, and generation seed where "
                        "the system has one) and report the mean +/- std of the distance over all R(R-1)/2 pairs "
                        "of received images (the Stable Cascade SIC paper's Table 2 uses 25; default 0: off)")
    p.add_argument("--pred-metric", default="auto", choices=["auto", *PRED_METRICS],
                   help="predictability distance: auto (default): LPIPS where its weights are present locally, "
                        "else effnet-lite0-feat (an EfficientNet-Lite0 feature distance, never called LPIPS)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run every cell as a Ray task on the cluster at ADDRESS, 'auto' (the running cluster, "
                        "else a local one started for the run) or 'local' (a new local one); same rows, resume "
                        "and outputs as the local run; "
                        "needs the ray extra (pip install .[ray])")
    p.add_argument("--ray-inflight", type=int, default=0, metavar="N",
                   help="with --ray: at most N cells submitted at once (default 0: twice the cluster's CPUs)")
    p.add_argument("--ray-cpus", type=int, default=1, metavar="N",
                   help="with --ray: CPUs (and torch threads) per cell (default 1; float32 numbers of torch systems "
                        "equal the local run's to the bit with the same threads, e.g. OMP_NUM_THREADS=1 locally)")
    p.set_defaults(func=run_eval)
    return p


def config_from_args(args) -> EvalConfig:
    """An :class:`EvalConfig` from parsed ``eval`` arguments (ValueError on bad values)."""
    return EvalConfig(
        systems=[s for s in str(args.systems).split(",") if s.strip()], snrs=parse_snrs(args.snrs),
        channel=args.channel, images=args.images, limit=args.limit, cbr=parse_fraction(args.cbr),
        modulation=args.modulation if args.modulation == "auto" else int(args.modulation), rate=str(args.rate),
        j2k_modulations=[m.strip() if m.strip() == "auto" else int(m) for m in str(args.j2k_modulations).split(",")
                         if m.strip()],
        j2k_rates=[r.strip() for r in str(args.j2k_rates).split(",") if r.strip()], profile=args.profile,
        metrics=parse_metrics(args.metrics), out=args.out, seed=args.seed, resume=args.resume,
        flowgraph=args.flowgraph, coherence=args.coherence, estimator=args.estimator, backend=args.backend,
        progress=not args.quiet, quality_table=args.quality_table,
        predictability=int(getattr(args, "predictability", 0) or 0), pred_metric=getattr(args, "pred_metric", "auto"))


def run_eval(args) -> int:
    """The ``gensemcom eval`` entry point; returns the exit status."""
    try:
        cfg = config_from_args(args)
        res = evaluate(cfg, ray=getattr(args, "ray", None), ray_inflight=getattr(args, "ray_inflight", 0) or 0,
                       ray_cpus=getattr(args, "ray_cpus", 1) or 1)
    except (EvalError, ValueError) as e:
        print(f"gensemcom eval: error: {e}", file=sys.stderr)
        return 2
    if "cluster" in res:
        from .ray_runner import format_report

        c = res["cluster"]
        print(f"on ray: {c.get('nodes')} node(s), {c.get('CPU', 0):g} CPU, {c.get('GPU', 0):g} GPU, "
              f"at most {c.get('inflight')} cells in flight")
        report = format_report(res["failed_cells"], res["retried_cells"])
        if report:
            print(report)
    shown = [s for s in dict.fromkeys(x["system"] for x in res["summary"]) if "@" not in s]
    print(f"{res['new_rows']} rows run, {res['skipped_rows']} taken from an earlier run; outputs in {cfg.out}")
    print("PSNR/SSIM/MS-SSIM: failed images scored 0; psnr_ok: received images only\n")
    print(format_table(res["summary"], res["metrics"], shown))
    for s in shown:
        c = res["cliff"][s]
        print(f"{s}: all images lost up to {c['highest_all_failed_snr']} dB; headers lost up to "
              f"{c['highest_header_lost_snr']} dB; no failures from {c['no_failures_from_snr']} dB")
    if any("@" in s for s in res["cliff"]):
        print(f"(per-combination rows in {Path(cfg.out) / 'summary.txt'})")
    pred = format_predictability(res["summary"], shown)
    if pred:
        print(f"\npredictability ({cfg.predictability} runs each; mean +/- std over all pairs of received images):")
        print(pred)
    return 1 if res.get("failed_cells") else 0


def main(argv=None) -> int:
    """Stand-alone entry point: ``python -m gensemcom.eval.harness ...``."""
    parser = argparse.ArgumentParser(prog="gensemcom")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
