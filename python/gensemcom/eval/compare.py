"""``gensemcom compare``: one image through every system, side by side (what ``make demo`` runs).

Each system sends the image through the real GNU Radio flowgraph
(:class:`~gensemcom.flowgraphs.semantic_link.SemanticLinkFlowgraph`, one shared
inference worker), at one SNR and channel, and ``--out`` receives:

* ``grid.png``: the sent image, then one column per system, each labelled with its
  complex channel uses (digital incl. header / analog), PSNR, SSIM, BRISQUE and, for
  systems that send text, the caption or prompt the receiver read;
* ``quality_vs_snr.png``: PSNR and SSIM against the channel's SNR for every system on
  that image. By default (``--sweep fixed``) the transmitter is designed for ``--snr``
  (its MCS and its SNR-adaptive encoders fixed there) while the channel varies, as in
  the DeepJSCC papers' cliff-effect figures: a digital path that was fine at the design
  SNR stops delivering below it (the cliff), analog paths degrade gradually.
  ``--sweep adaptive`` lets the transmitter know every SNR (link adaptation);
* ``report.html`` (self-contained: the figures are embedded) with the same grid, a
  table of channel uses, metrics, the MCS, captions and the per-stage timings, the
  sweep's table and the settings; ``report.json`` with every number; ``received/``
  with each system's received image.

A lost image (its header or its digital part did not arrive and the system has no
fallback) is a grey tile in the grid and scores 0 in the curves (the Stable Cascade
semcom paper's convention), drawn hollow.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

#: the systems a default comparison shows (every offline one with a distinct idea)
DEFAULT_SYSTEMS = ("tisc", "sc_sic", "gened_sc", "task_adaptive", "deepjscc", "jpeg2000-ldpc")

#: the SNRs of the default quality sweep (Es/N0, dB)
DEFAULT_SNRS = (1.0, 4.0, 7.0, 10.0, 13.0)

#: metrics under each image of the grid; the sweep uses the first two
GRID_METRICS = ("psnr", "ssim", "brisque")

_LOST_GREY = 96


class CompareError(ValueError):
    """A setting the comparison cannot run with; the message names it and the fix."""


def parse_snrs(spec: str) -> List[float]:
    """``"0,3,6"`` or ``"0:12:3"`` (stop included) -> SNRs in dB; ``""`` -> no sweep.

    The eval harness's parser (:func:`gensemcom.eval.ber.parse_snrs`), with the step
    required in a range."""
    from .ber import parse_snrs as parse

    spec = spec.strip()
    if not spec:
        return []
    try:
        if ":" in spec and spec.count(":") != 2:
            raise ValueError
        return parse(spec)
    except ValueError:
        raise CompareError(f"--snrs must be a list (0,3,6) or start:stop:step with step > 0, got {spec!r}") from None


def resolve_systems(spec: str, profile: str) -> List[str]:
    """``--systems``: a comma list, ``default`` or ``all`` (every system with the profile)."""
    from .. import systems

    if spec in ("", "default"):
        names = list(DEFAULT_SYSTEMS)
    elif spec == "all":
        names = [n for n in systems.names() if profile in systems.get(n).profiles]
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise CompareError("--systems names no system")
    for n in names:
        try:
            systems.check(n, profile)
        except ValueError as e:
            raise CompareError(str(e)) from None
    return names


def _score(ref: np.ndarray, img: Optional[np.ndarray], names: Sequence[str]) -> Dict:
    """Metrics of one received image (None: lost, scored 0) at the sent image's size."""
    from .harness import _resize_to
    from .metrics import compute_metrics

    resized = img is not None and img.shape != ref.shape
    if resized:
        img = _resize_to(img, ref.shape)
    m = compute_metrics(ref, img, list(names))
    out = {k: (round(float(v), 4) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
           for k, v in m.items() if k != "failed"}
    if resized:
        out["resized"] = True
    return out


def _fixed_mcs(snr_db: float, channel: str):
    """The MCS link adaptation picks at ``snr_db``: what a transmitter designed for it sends."""
    from ..phy.mcs import select_mcs

    mcs, _ = select_mcs(snr_db, channel=channel)
    return mcs


def run_one(system: str, profile: str, image: str, snr_db: float, settings: Dict,
            tx_snr_db: Optional[float] = None, mcs=None) -> Dict:
    """One image through one system in the real flowgraph.

    Returns:
        dict: the flowgraph report's row for the image (``received``, ``channel_uses``,
        ``timings_ms``, ``received_text``, ...) plus ``image`` (the received array, or
        None when lost), ``wall_s`` and the ``mcs`` used.
    """
    from ..flowgraphs.semantic_link import FlowgraphOptions, run_flowgraph

    opts = FlowgraphOptions(
        system=system, profile=profile, images=image, snr_db=float(snr_db), channel=settings["channel"],
        coherence=settings["coherence"], estimator=settings["estimator"], n_pilots=settings["pilots"],
        seed=settings["seed"], size=settings["size"], timeout_s=settings["timeout"], progress=False,
        task=settings["task"] if system.startswith("task_adaptive") else "", tx_snr_db=tx_snr_db,
        modulation=mcs.modulation if mcs is not None else "auto",
        code_rate=mcs.rate.rstrip("AB") if mcs is not None else "auto")
    images: Dict[str, np.ndarray] = {}
    rep = run_flowgraph(opts, images_out=images)
    row = dict(rep["images"][0])
    row["image_array"] = images.get(row["image"])
    row["wall_s"] = rep["wall_s"]
    row["frames_header_lost"] = rep["frames_header_lost"]
    row["frames_crc_failed"] = rep["frames_crc_failed"]
    return row


def preload(systems: Sequence[str], profile: str, image: str, timeout_s: float) -> Dict[str, float]:
    """Load every system's models in the shared local worker before anything is timed
    (a missing model is reported here, before any run). Returns seconds per system."""
    from ..flowgraphs.semantic_link import FlowgraphOptions, check_system

    out = {}
    for s in systems:
        t0 = time.perf_counter()
        check_system(FlowgraphOptions(system=s, profile=profile, images=image, timeout_s=timeout_s))
        out[s] = round(time.perf_counter() - t0, 3)
    return out


# ------------------------------------------------------------------ figures
def _label(system: str, row: Dict, metrics: Dict) -> str:
    lines = [system]
    cu = row.get("channel_uses")
    if row.get("received") and cu:
        fb = f", +{cu['feedback']:,} back" if cu.get("feedback") else ""
        lines.append(f"{cu['total']:,} uses (d {cu['digital']:,} / a {cu['analog']:,}{fb})")
        chose = (row.get("transmitter") or {}).get("auto_choice")
        if chose:
            lines.append(f"sent as {chose}")
        lines.append(f"PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.3f}")
        b = metrics.get("brisque")
        lines.append(f"BRISQUE {b:.1f}" if isinstance(b, float) else "BRISQUE -")
        if row.get("received_text"):
            lines.extend(textwrap.wrap(f'"{row["received_text"]}"', 34)[:3])
    else:
        lines.append("LOST")
        lines.extend(textwrap.wrap(str(row.get("reason", "")), 34)[:4])
    return "\n".join(lines)


def save_grid(ref: np.ndarray, results: List[Dict], path: str, title: str = "") -> None:
    """The sent image and one tile per system, each labelled (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .harness import _resize_to

    n = len(results) + 1
    cols = n if n <= 5 else (n + 1) // 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 3.85 * rows), squeeze=False)
    tiles = [("sent", ref, f"sent\n{ref.shape[1]} x {ref.shape[0]} px\n{3 * ref.shape[0] * ref.shape[1]:,} "
                           "real values", None)]
    for r in results:
        img = r.get("image_array")
        if img is None:
            img = np.full_like(ref, _LOST_GREY)
        elif img.shape != ref.shape:
            img = _resize_to(img, ref.shape)
        tiles.append((r["system"], img, _label(r["system"], r, r.get("metrics", {})), r))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img, text, r) in zip(axes.ravel(), tiles):
        ax.imshow(img)
        if r is not None and not r.get("received"):
            ax.text(0.5, 0.5, "LOST", transform=ax.transAxes, ha="center", va="center", fontsize=18,
                    color="white", weight="bold")
        head, _, rest = text.partition("\n")
        ax.set_title(head, fontsize=10, weight="bold", pad=3)
        ax.text(0.0, -0.02, rest, transform=ax.transAxes, ha="left", va="top", fontsize=7.2, family="monospace")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=4.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def save_sweep_plot(sweep: List[Dict], path: str, design_snr: Optional[float], title: str = "") -> None:
    """PSNR and SSIM against SNR, one curve per system; lost images hollow at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import _COLOURS, _MARKERS

    names = list(dict.fromkeys(p["system"] for p in sweep))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, metric, label in ((axes[0], "psnr", "PSNR (dB), lost images scored 0"),
                              (axes[1], "ssim", "SSIM, lost images scored 0")):
        for i, name in enumerate(names):
            pts = sorted((p for p in sweep if p["system"] == name), key=lambda p: p["snr_db"])
            xs = [p["snr_db"] for p in pts]
            ys = [p["metrics"].get(metric, 0.0) for p in pts]
            style = {"color": _COLOURS[i % len(_COLOURS)], "marker": _MARKERS[i % len(_MARKERS)]}
            ax.plot(xs, ys, label=name, linewidth=1.6, markersize=6, **style)
            lost = [(x, y) for x, y, p in zip(xs, ys, pts) if not p["received"]]
            if lost:
                ax.plot(*zip(*lost), linestyle="none", marker=style["marker"], markersize=6, color=style["color"],
                        markerfacecolor="white", markeredgewidth=1.3)
        if design_snr is not None:
            ax.axvline(design_snr, color="0.5", linestyle=":", linewidth=1)
            ax.annotate(f"transmitter designed\nfor {design_snr:g} dB", (design_snr, 0.42),
                        xycoords=("data", "axes fraction"), fontsize=7, color="0.35", xytext=(4, 0),
                        textcoords="offset points", ha="left", va="center")
        ax.set_xlabel("channel SNR, Es/N0 (dB)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                   title="hollow: image lost", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------ report
def _b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode("ascii")


def _fmt_ms(t: Dict) -> str:
    return ", ".join(f"{k[:-3]} {v:,.0f}" for k, v in t.items())


def write_html(report: Dict, out: str, grid: str, curves: Optional[str]) -> str:
    """The self-contained HTML report (figures embedded as data URIs)."""
    e = html.escape
    s = report["settings"]
    rows = []
    for r in report["systems"]:
        cu, m = r.get("channel_uses") or {}, r.get("metrics") or {}
        if r["received"]:
            cells = [f"{cu.get('total', 0):,}", f"{cu.get('digital', 0):,} ({cu.get('header', 0):,})",
                     f"{cu.get('analog', 0):,}", f"{cu.get('feedback', 0):,}" if cu.get("feedback") else "-",
                     f"{m['psnr']:.2f}", f"{m['ssim']:.3f}",
                     f"{m['brisque']:.1f}" if isinstance(m.get("brisque"), float) else e(str(m.get("brisque"))),
                     e(str(r.get("mcs") or "-")), e(r.get("received_text") or "")]
        else:
            cells = ["-"] * 8 + [f"<b>lost</b>: {e(str(r.get('reason', '')))}"]
        t = dict(r.get("timings_ms") or {})
        cells.append(e(_fmt_ms(t)) + f"; flowgraph {r['wall_s']:.2f} s; models loaded in {r['load_s']:.2f} s")
        rows.append(f"<tr><th>{e(r['system'])}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    sweep_html = ""
    if report.get("sweep"):
        snrs = sorted({p["snr_db"] for p in report["sweep"]})
        names = list(dict.fromkeys(p["system"] for p in report["sweep"]))
        cell = {(p["system"], p["snr_db"]): p for p in report["sweep"]}
        body = []
        for n in names:
            tds = []
            for x in snrs:
                p = cell.get((n, x))
                if p is None:
                    tds.append("<td></td>")
                elif p["received"]:
                    tds.append(f"<td>{p['metrics']['psnr']:.2f} / {p['metrics']['ssim']:.3f}</td>")
                else:
                    tds.append('<td class="lost">lost</td>')
            body.append(f"<tr><th>{e(n)}</th>{''.join(tds)}</tr>")
        mode = ("the transmitter designed for {:g} dB (MCS {}), the channel at each SNR".format(
            s["snr_db"], e(str(report.get("sweep_mcs")))) if s["sweep"] == "fixed"
                else "the transmitter told each SNR (link adaptation)")
        sweep_html = (f"<h2>Quality against SNR</h2><p>{mode}. Cells: PSNR (dB) / SSIM.</p>"
                      + (f'<img src="data:image/png;base64,{_b64(curves)}" alt="quality against SNR">'
                         if curves else "")
                      + "<table><tr><th>system</th>" + "".join(f"<th>{x:g} dB</th>" for x in snrs) + "</tr>"
                      + "".join(body) + "</table>")
    chan = s["channel"] + (f" ({s['estimator']} CSI, {s['coherence']}-symbol blocks)"
                           if s["channel"] == "rayleigh" else "")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gr-gensemcom: {e(report['image'])} through every system</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1500px; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.86em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }} td.lost {{ color: #b00; }} img {{ max-width: 100%; }}
code {{ background: #f3f3f3; padding: 0 3px; }}
</style></head><body>
<h1>{e(report['image'])} through every system</h1>
<p>Es/N0 {s['snr_db']:g} dB per complex channel use (unit average power), {e(chan)}, {e(s['profile'])} profile,
the image at {s['size']} x {s['size']}; each system in the real GNU Radio flowgraph with one shared inference
worker. Channel uses are complex symbols per image (digital includes the protected header; "back" is what a
receiver sends on the return link). Lost images are grey.</p>
<img src="data:image/png;base64,{_b64(grid)}" alt="the sent image and every system's received image">
<h2>Per system</h2>
<table><tr><th>system</th><th>channel uses</th><th>digital (header)</th><th>analog</th><th>return link</th>
<th>PSNR dB</th><th>SSIM</th><th>BRISQUE</th><th>MCS</th><th>received caption / prompt</th>
<th>timings (ms)</th></tr>
{''.join(rows)}
</table>
<p>Timings: <code>encode</code> and <code>decode</code> are the semantic blocks' worker round trips, the others
the systems' own stages (TISC: <code>caption</code>, <code>select</code>, <code>inversion</code>);
"flowgraph" is the whole run of that system's flowgraph; every system's models were loaded into the worker
before any run (the first load includes starting the worker). Total: {report['wall_s']:.1f} s.</p>
{sweep_html}
<h2>Settings</h2><pre>{e(json.dumps(s, indent=1))}</pre>
<p>Made by <code>{e(report['command'])}</code> (gr-gensemcom {e(report['version'])}).</p>
</body></html>
"""
    path = os.path.join(out, "report.html")
    with open(path, "w") as f:
        f.write(page)
    return path


# ------------------------------------------------------------------ the command
def compare(image: str, systems: Sequence[str], profile: str, snr_db: float, settings: Dict, out: str,
            snrs: Sequence[float] = (), sweep: str = "fixed", progress: bool = True, command: str = "") -> Dict:
    """Run the comparison and write the outputs (see the module docstring).

    Returns:
        dict: the report (also ``OUT/report.json``).
    """
    from tqdm.auto import tqdm

    from .. import __version__
    from ..image_io import image_ids, list_images, load_image, save_image

    files = list_images(image)
    if len(files) != 1:
        raise CompareError(f"--image must be one image file, got {len(files)} images in {image!r}")
    ref = load_image(files[0], settings["size"])
    name = image_ids(files)[0]
    Path(out, "received").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mcs = _fixed_mcs(snr_db, settings["channel"]) if sweep == "fixed" else None
    load_s = preload(systems, profile, str(files[0]), settings["timeout"])
    jobs = [(s, snr_db, None) for s in systems] + [(s, x, "sweep") for x in snrs for s in systems]
    results, points = [], []
    bar = tqdm(total=len(jobs), desc="compare", unit="run", disable=not progress)
    try:
        for system, snr, kind in jobs:
            bar.set_postfix_str(f"{system} {snr:g} dB")
            if kind is None:
                row = run_one(system, profile, str(files[0]), snr, settings)
                row["metrics"] = _score(ref, row["image_array"], GRID_METRICS)
                if row["image_array"] is not None:
                    row["output"] = str(Path(out, "received", f"{system}.png"))
                    save_image(row["output"], row["image_array"])
                row["system"] = system
                row["load_s"] = load_s[system]
                results.append(row)
            else:
                fixed = sweep == "fixed"
                row = run_one(system, profile, str(files[0]), snr, settings,
                              tx_snr_db=snr_db if fixed else None, mcs=mcs if fixed else None)
                points.append({"system": system, "snr_db": snr, "received": row["received"],
                               "channel_uses": row.get("channel_uses"),
                               "metrics": _score(ref, row["image_array"], GRID_METRICS[:2])})
            bar.update(1)
    finally:
        bar.close()
    chan = settings["channel"] + (f", {settings['estimator']} CSI" if settings["channel"] == "rayleigh" else "")
    grid = str(Path(out, "grid.png"))
    save_grid(ref, results, grid, f"{name}: Es/N0 {snr_db:g} dB, {chan}, {profile} profile")
    curves = None
    if points:
        curves = str(Path(out, "quality_vs_snr.png"))
        mode = (f"transmitter designed for {snr_db:g} dB ({mcs.name}), channel varies" if sweep == "fixed"
                else "transmitter knows the SNR (link adaptation)")
        save_sweep_plot(points, curves, snr_db if sweep == "fixed" else None, f"{name}, {chan}: {mode}")
    report = {"image": name, "path": str(files[0]), "version": __version__, "command": command,
              "settings": dict(settings, snr_db=snr_db, profile=profile, systems=list(systems), snrs=list(snrs),
                               sweep=sweep if snrs else "none"),
              "sweep_mcs": mcs.name if mcs is not None and points else None,
              "systems": [{k: v for k, v in r.items() if k != "image_array"} for r in results],
              "sweep": points, "grid": grid, "curves": curves,
              "wall_s": round(time.perf_counter() - t0, 2)}
    report["html"] = write_html(report, out, grid, curves)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "compare", help="one image through every system side by side: grid PNG, quality-vs-SNR plot, HTML report",
        description="Sends one image through every system (each in the real GNU Radio flowgraph, one shared "
                    "inference worker) at one SNR and channel, and writes to --out: grid.png (sent | each "
                    "system's received image with its channel uses, PSNR, SSIM, BRISQUE and received caption), "
                    "quality_vs_snr.png (PSNR and SSIM against SNR: by default the transmitter designed for --snr "
                    "and the channel varied, so the digital cliff shows), report.html (self-contained, with the "
                    "per-stage timings), report.json and received/. Offline and on the CPU with the embedded "
                    "profiles (what `make demo` runs).",
        epilog="examples:\n  gensemcom compare                                   # the bundled photo, 10 dB AWGN\n"
               "  gensemcom compare --image kodim23.png --snr 4 --channel rayleigh --out out/k23\n"
               "  gensemcom compare --systems deepjscc,jpeg2000-ldpc --snrs 0:14:1 --out out/cliff\n"
               "  gensemcom compare --channel rayleigh --estimator ls --pilots 4 --out out/pilots\n"
               "  gensemcom compare --systems all --snrs '' --out out/all   # every offline system, no sweep",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to compare")
    g.add_argument("--image", default=None, help="one image file (default: the bundled astronaut.jpg)")
    g.add_argument("--systems", default="default",
                   help=f"comma-separated systems, 'default' ({','.join(DEFAULT_SYSTEMS)}) or 'all' (every system "
                        "with the profile)")
    g.add_argument("--profile", choices=["embedded", "tiny", "full"], default="embedded",
                   help="models for every system (default embedded: offline, CPU)")
    g.add_argument("--size", type=int, default=256,
                   help="centre-crop and resize the image to SIZE x SIZE for every system (default 256)")
    g.add_argument("--task", default="person",
                   help="the receiver's task for task_adaptive (a class label or free text; default person)")
    g = p.add_argument_group("channel")
    g.add_argument("--snr", type=float, default=10.0, help="Es/N0 in dB per complex symbol (default 10)")
    g.add_argument("--channel", choices=["awgn", "rayleigh"], default="awgn")
    g.add_argument("--estimator", choices=["perfect", "ls", "lmmse"], default="perfect",
                   help="Rayleigh channel estimate: perfect CSI or pilots (default perfect)")
    g.add_argument("--pilots", type=int, default=4, help="pilots per coherence block for ls/lmmse (default 4)")
    g.add_argument("--coherence", type=int, default=64, help="Rayleigh block length in symbols (default 64)")
    g.add_argument("--seed", type=int, default=0, help="channel seed, the same for every system (default 0)")
    g = p.add_argument_group("quality against SNR")
    g.add_argument("--snrs", default=",".join(f"{x:g}" for x in DEFAULT_SNRS),
                   help="channel SNRs of the sweep: a list or start:stop:step; '' for no sweep "
                        "(default %(default)s)")
    g.add_argument("--sweep", choices=["fixed", "adaptive"], default="fixed",
                   help="fixed: the transmitter designed for --snr (MCS and SNR-adaptive encoders fixed there), "
                        "the channel varies (the digital cliff); adaptive: the transmitter knows each SNR "
                        "(default fixed)")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="out/compare", help="output folder (default out/compare)")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per flowgraph run (default 600)")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_compare_cmd)
    return p


def run_compare_cmd(args) -> int:
    from ..image_io import sample_image

    def err(msg) -> int:
        print(f"gensemcom compare: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 2

    try:
        image = args.image or sample_image()
        names = resolve_systems(args.systems, args.profile)
        snrs = parse_snrs(args.snrs)
        if args.size < 16:
            raise CompareError(f"--size must be at least 16, got {args.size}")
        for v in [args.snr] + snrs:
            if not (np.isfinite(v) and -50 <= v <= 100):
                raise CompareError(f"SNRs must be finite numbers of dB in -50..100, got {v}")
    except (CompareError, FileNotFoundError) as e:
        return err(e)
    os.environ.setdefault("GENSEMCOM_WORKER_LOG_LEVEL", "WARNING")
    settings = {"channel": args.channel, "estimator": args.estimator, "pilots": args.pilots,
                "coherence": args.coherence, "seed": args.seed, "size": args.size, "task": args.task,
                "timeout": args.timeout}
    from gnuradio import gr

    from ..cli import _stdout_to_stderr
    from ..flowgraphs.semantic_link import LinkInputError, check_images

    gr.logging().set_default_level(gr.log_levels.warn)  # not each block's "using the worker at ..." line

    try:
        check_images(image)
        with _stdout_to_stderr(True):  # GNU Radio logs to stdout; keep it for the summary
            report = compare(image, names, args.profile, args.snr, settings, args.out, snrs, args.sweep,
                             progress=not args.json, command="gensemcom " + " ".join(sys.argv[1:]))
    except (CompareError, LinkInputError, ValueError, FileNotFoundError, RuntimeError) as e:
        return err(f"{type(e).__name__}: {e}" if not isinstance(e, (CompareError, LinkInputError)) else e)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['image']} at Es/N0 {args.snr:g} dB, {args.channel}, {args.profile} profile, "
          f"{args.size} x {args.size}:")
    for r in report["systems"]:
        if not r["received"]:
            print(f"  {r['system']:<15} LOST: {r.get('reason', '')}")
            continue
        m, cu = r["metrics"], r["channel_uses"]
        b = m.get("brisque")
        text = f'  "{r["received_text"]}"' if r.get("received_text") else ""
        print(f"  {r['system']:<15} {cu['total']:>6,} uses  PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  "
              f"BRISQUE {b:5.1f}{text}" if isinstance(b, float) else
              f"  {r['system']:<15} {cu['total']:>6,} uses  PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}{text}")
    print(f"grid: {report['grid']}\n" + (f"quality against SNR: {report['curves']}\n" if report["curves"] else "")
          + f"report: {report['html']}\nwall {report['wall_s']} s")
    return 0
