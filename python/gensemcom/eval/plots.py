"""Plots of the evaluation harness: each metric versus SNR and versus channel uses.

Input is the harness summary (one dict per system x SNR, see
:func:`gensemcom.eval.harness.summarize`); one PNG per metric and x axis (matplotlib,
Agg backend). How a plot reads:

* every curve has its own (colour, marker) pair; the swept JPEG2000+LDPC combinations
  are drawn thin and dashed, the pseudo-systems that pick among them bold;
* each legend label carries the system's achieved CBR, measured from its channel
  uses (:func:`cbr_label`); the legend sits outside the axes, on the right;
* a filled marker: every image delivered; a hollow marker: some images lost, with
  their count written beside it unless all were (SNR plots, systems other than the
  combinations);
  a cross over the marker: some headers lost as well (the header's failure point,
  apart from the payload's); "lost 3 (hdr 1)" reads: three images lost, one of them
  with its header.

:func:`plot_predictability` draws ``eval --predictability``'s mean pairwise distance
between runs versus SNR, with +/- one standard deviation as error bars.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

_PRETTY = {"psnr": "PSNR (dB), failures scored 0", "psnr_ok": "PSNR (dB), received images only",
           "ssim": "SSIM, failures scored 0", "ms-ssim": "MS-SSIM, failures scored 0",
           "failure_rate": "failure rate", "lpips-vgg": "LPIPS (VGG)", "lpips-alex": "LPIPS (Alex)",
           "clip-i": "CLIP-I", "dino-i": "DINO-I", "clip-score": "CLIP score", "brisque": "BRISQUE",
           "fid": "FID", "effnet-lite0-feat": "EfficientNet-Lite0 feature distance (not LPIPS)"}

#: the Rayleigh equalisers' names in titles
_ESTIMATORS = {"perfect": "perfect CSI", "ls": "LS channel estimate", "lmmse": "LMMSE channel estimate"}

#: curve colours (tab10, then its light tints) and markers; with 20 colours and 13 markers
#: no two of the first 260 curves share both
_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
            "#dbdb8d", "#9edae5"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "*", "<", ">", "p", "h", "d", "8"]


def _num(v) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def channel_label(channel: str, estimator: str = "perfect", coherence: Optional[int] = None) -> str:
    """The channel and its equaliser in words, for titles: ``"AWGN"`` or e.g.
    ``"Rayleigh block fading (64 symbols), LS channel estimate"``."""
    if channel != "rayleigh":
        return channel.upper()
    blocks = f" ({coherence} symbols)" if coherence else ""
    return f"Rayleigh block fading{blocks}, {_ESTIMATORS.get(estimator, estimator)}"


def cbr_label(points: Sequence[dict]) -> Optional[str]:
    """A system's achieved CBR as ``"CBR 1/24.0"``: the mean ``cbr_actual`` (complex
    channel uses / (3 H W), per image) over the summary points where it sent anything;
    None when it sent nothing."""
    cbrs = [c for c in (_num(p.get("cbr_actual")) for p in points if (_num(p.get("uses_total")) or 0) > 0)
            if c is not None and c > 0]
    if not cbrs:
        return None
    return f"CBR 1/{len(cbrs) / sum(cbrs):.1f}"


def _is_combination(system: str) -> bool:
    """One (M, rate) combination of a swept system (``jpeg2000-ldpc@16qam-r1/2``)."""
    return "@" in system


def _order(system: str) -> tuple:
    """Plot order: systems, then the combinations; numbers compared as numbers (4qam < 16qam)."""
    return (_is_combination(system),
            [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", system)])


def _losses(point: dict) -> tuple:
    """(images lost, headers lost) at one summary point (older summaries: from the failure rate)."""
    lost = point.get("lost")
    if lost is None:
        lost = round((_num(point.get("failure_rate")) or 0.0) * int(point.get("n") or 0))
    return int(lost), int(point.get("header_lost") or 0)


def _style(index: int, system: str) -> dict:
    style = {"color": _COLOURS[index % len(_COLOURS)], "marker": _MARKERS[index % len(_MARKERS)]}
    if _is_combination(system):
        return {**style, "linestyle": "--", "linewidth": 0.8, "alpha": 0.6, "markersize": 4}
    if system.endswith("-envelope"):
        return {**style, "linestyle": "-", "linewidth": 2.6, "markersize": 7}
    return {**style, "linestyle": "-", "linewidth": 1.6, "markersize": 6}


def _series(summary: Sequence[dict], metric: str, x: str) -> Dict[str, List[tuple]]:
    """Per system: (x, y, summary point) sorted by x, points without numbers left out."""
    out: Dict[str, List[tuple]] = {}
    for r in summary:
        xv, yv = _num(r.get(x)), _num(r.get(metric))
        if xv is None or yv is None:
            continue
        out.setdefault(r["system"], []).append((xv, yv, r))
    for v in out.values():
        v.sort(key=lambda t: (t[0], _num(t[2].get("snr")) or 0.0))
    return out


def plot_metric(summary: Sequence[dict], metric: str, path: str, x: str = "snr", title: str = "") -> bool:
    """One metric versus ``x`` ("snr" or "uses_total"), one curve per system, lost
    images and lost headers marked (see the module docstring).

    Args:
        summary (Sequence[dict]): harness summary rows (``system``, ``snr``,
            ``uses_total``, ``cbr_actual``, ``lost``, ``header_lost`` and the metric means).
        metric (str): summary column to plot.
        path (str): output PNG.
        x (str): ``"snr"`` (Es/N0, dB) or ``"uses_total"`` (mean complex channel uses;
            points are labelled with their SNR).
        title (str): plot title (the channel and its estimator, the budget).

    Returns:
        bool: False (and no file) when the metric has no numeric values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    series = _series(summary, metric, x)
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(9.5, 5))
    any_lost = any_header = False
    for i, (system, pts) in enumerate(sorted(series.items(), key=lambda kv: _order(kv[0]))):
        st = _style(i, system)
        combo = _is_combination(system)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        cbr = cbr_label([p for p in summary if p["system"] == system])
        label = f"{system} ({cbr})" if cbr else system
        line_style = st["linestyle"] if x == "snr" or combo else ":"
        ax.plot(xs, ys, label=label, **{**st, "linestyle": line_style})
        for xv, yv, point in pts:
            lost, hdr = _losses(point)
            any_lost, any_header = any_lost or lost > 0, any_header or hdr > 0
            if lost:  # hollow: the same marker, white inside, drawn over the filled one
                ax.plot([xv], [yv], linestyle="none", marker=st["marker"], markersize=st["markersize"],
                        color=st["color"], markerfacecolor="white", markeredgewidth=1.2)
            if hdr:
                ax.plot([xv], [yv], linestyle="none", marker="x", markersize=st["markersize"] * 0.8,
                        color="black", alpha=st.get("alpha", 1.0), markeredgewidth=1.0)
            if combo:
                continue
            if x == "snr" and 0 < lost < int(point.get("n") or 0):  # all lost: the hollow marker at 0 says it
                text = f"lost {lost}" + (f" (hdr {hdr})" if hdr else "")
                ax.annotate(text, (xv, yv), fontsize=6, color=st["color"], xytext=(4, 3),
                            textcoords="offset points")
            elif x != "snr":
                ax.annotate(f"{_num(point.get('snr')):g}", (xv, yv), fontsize=6, alpha=0.7, xytext=(3, 3),
                            textcoords="offset points")
    ax.set_xlabel("SNR, Es/N0 (dB)" if x == "snr" else "complex channel uses per image (mean; labels: SNR dB)")
    ax.set_ylabel(_PRETTY.get(metric, metric))
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    key = [(any_lost, Line2D([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="white"),
            "images lost" + (" (count beside, unless all)" if x == "snr" else "")),
           (any_header, Line2D([], [], linestyle="none", marker="x", color="black"), "headers lost too")]
    for shown, handle, text in key:
        if shown:
            handles.append(handle)
            labels.append(text)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              fontsize=6 if len(handles) > 12 else 8, frameon=False)
    ax.set_title(title, fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_predictability(summary: Sequence[dict], path: str, title: str = "") -> bool:
    """Predictability versus SNR (``gensemcom eval --predictability R``): per system the
    mean pairwise distance between the R received images of an image (``pred_mean``,
    averaged over the images) with an error bar of +/- ``pred_std``, one curve per
    system in the same styles as :func:`plot_metric`; a hollow marker where some runs
    lost the image (left out of the pairs), with their count beside it.

    Args:
        summary (Sequence[dict]): harness summary rows with the ``pred_*`` fields.
        path (str): output PNG.
        title (str): plot title.

    Returns:
        bool: False (and no file) when no point has a ``pred_mean``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    series = _series(summary, "pred_mean", "snr")
    if not series:
        return False
    metrics = sorted({str(p.get("pred_metric")) for pts in series.values() for _, _, p in pts})
    reps = sorted({str(p.get("pred_reps")) for pts in series.values() for _, _, p in pts})
    fig, ax = plt.subplots(figsize=(9.5, 5))
    any_lost = False
    for i, (system, pts) in enumerate(sorted(series.items(), key=lambda kv: _order(kv[0]))):
        st = _style(i, system)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        err = [_num(p[2].get("pred_std")) or 0.0 for p in pts]
        ax.errorbar(xs, ys, yerr=err, label=system, capsize=3, elinewidth=max(0.8, st["linewidth"] * 0.6), **st)
        for xv, yv, point in pts:
            lost = int(point.get("pred_lost") or 0)
            if lost:
                any_lost = True
                ax.plot([xv], [yv], linestyle="none", marker=st["marker"], markersize=st["markersize"],
                        color=st["color"], markerfacecolor="white", markeredgewidth=1.2)
                if not _is_combination(system):
                    ax.annotate(f"lost {lost}", (xv, yv), fontsize=6, color=st["color"], xytext=(4, 3),
                                textcoords="offset points")
    ax.set_xlabel("SNR, Es/N0 (dB)")
    name = " / ".join(_PRETTY.get(m, m) for m in metrics)
    ax.set_ylabel(f"{name}\nbetween the runs' images, all pairs (mean +/- std)", fontsize=9)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any_lost:
        handles.append(Line2D([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="white"))
        labels.append("runs lost the image (count beside)")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              fontsize=6 if len(handles) > 12 else 8, frameon=False)
    ax.set_title(f"{title}; predictability, {'/'.join(reps)} runs per image" if title
                 else f"predictability, {'/'.join(reps)} runs per image", fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def make_plots(summary: Sequence[dict], metrics: Iterable[str], out_dir: str, title: str = "") -> List[str]:
    """Every metric versus SNR and versus channel uses: ``{metric}_vs_snr.png`` and
    ``{metric}_vs_uses.png`` in ``out_dir``; returns the files written."""
    written = []
    for m in metrics:
        for x, suffix in (("snr", "vs_snr"), ("uses_total", "vs_uses")):
            path = str(Path(out_dir) / f"{m}_{suffix}.png")
            if plot_metric(summary, m, path, x, title):
                written.append(path)
    return written
