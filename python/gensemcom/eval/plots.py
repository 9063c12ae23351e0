"""Plots of the evaluation harness: each metric versus SNR and versus channel uses.

Input is the harness summary (one dict per system x SNR, see
:func:`gensemcom.eval.harness.summarize`); one PNG per metric and x axis. The
JPEG2000+LDPC combinations are drawn thin and dashed, their envelope bold.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

_PRETTY = {"psnr": "PSNR (dB), failures scored 0", "psnr_ok": "PSNR (dB), received images only",
           "ssim": "SSIM, failures scored 0", "ms-ssim": "MS-SSIM, failures scored 0",
           "failure_rate": "failure rate", "lpips-vgg": "LPIPS (VGG)", "lpips-alex": "LPIPS (Alex)",
           "clip-i": "CLIP-I", "dino-i": "DINO-I", "clip-score": "CLIP score", "brisque": "BRISQUE",
           "fid": "FID"}


def _num(v) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _style(system: str) -> dict:
    if "@" in system:  # one (M, rate) combination of a swept baseline
        return {"linestyle": "--", "linewidth": 0.8, "alpha": 0.55, "marker": "."}
    if system.endswith("envelope"):
        return {"linestyle": "-", "linewidth": 2.4, "marker": "o", "color": "k"}
    return {"linestyle": "-", "linewidth": 1.6, "marker": "o"}


def _series(summary: Sequence[dict], metric: str, x: str) -> Dict[str, List[tuple]]:
    out: Dict[str, List[tuple]] = {}
    for r in summary:
        xv, yv = _num(r.get(x)), _num(r.get(metric))
        if xv is None or yv is None:
            continue
        out.setdefault(r["system"], []).append((xv, yv, r.get("snr")))
    for v in out.values():
        v.sort(key=lambda t: (t[0], t[2] if t[2] is not None else 0))
    return out


def plot_metric(summary: Sequence[dict], metric: str, path: str, x: str = "snr", title: str = "") -> bool:
    """One metric versus ``x`` ("snr" or "uses_total"), one line per system.

    Args:
        summary (Sequence[dict]): harness summary rows (``system``, ``snr``,
            ``uses_total`` and the metric means).
        metric (str): summary column to plot.
        path (str): output PNG.
        x (str): ``"snr"`` (Es/N0, dB) or ``"uses_total"`` (mean complex channel uses;
            points are labelled with their SNR).
        title (str): plot title.

    Returns:
        bool: False (and no file) when the metric has no numeric values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(summary, metric, x)
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, (system, pts) in enumerate(sorted(series.items(), key=lambda kv: ("@" in kv[0], kv[0]))):
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        st = _style(system)
        if x == "snr":
            ax.plot(xs, ys, label=system, **st)
        else:
            ax.plot(xs, ys, label=system, **{**st, "linestyle": "none" if "@" in system else ":"})
            if "@" not in system:
                for xv, yv, snr in pts:
                    ax.annotate(f"{snr:g}", (xv, yv), fontsize=6, alpha=0.7, xytext=(2, 2),
                                textcoords="offset points")
    ax.set_xlabel("SNR, Es/N0 (dB)" if x == "snr" else "complex channel uses per image (mean; labels: SNR dB)")
    ax.set_ylabel(_PRETTY.get(metric, metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6 if len(series) > 8 else 8, ncol=2 if len(series) > 8 else 1)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
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
