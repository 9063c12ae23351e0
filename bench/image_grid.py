#!/usr/bin/env python3
"""A sent | column | column ... figure from folders of received images.

Each column is ``LABEL=DIR``: ``DIR/STEM.png`` is that column's received version of the
sent image ``SENT/STEM.png``; each panel is titled with its PSNR and BRISQUE (PyPI
``brisque``, lower is better) against the sent image. Folders of received images come
from ``bench/sc_sic_compare.py --save-images DIR`` (``DIR/SYSTEM/STEM.png``).

Example (the TISC picture in the README: the shipped models before and after issue 14,
Kodak, AWGN 10 dB, QPSK 1/2)::

    python bench/image_grid.py --sent ../shared/data/kodak --images kodim04,kodim14,kodim23 \\
        --column "before (v1)=results/tisc_before/tisc" --column "after=results/tisc_after/tisc" \\
        --title "TISC embedded, Kodak, AWGN 10 dB, QPSK 1/2" --out docs/images/tisc_kodak.jpg
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sent", required=True, help="folder of the sent images (STEM.png)")
    p.add_argument("--images", required=True, help="comma-separated stems, one row each")
    p.add_argument("--column", action="append", required=True, metavar="LABEL=DIR",
                   help="a column of received images (repeat for more)")
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--out", required=True, help="output image (.png or .jpg)")
    a = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gensemcom.eval.metrics import psnr
    from gensemcom.image_io import load_image

    try:
        from brisque import BRISQUE

        model = BRISQUE(url=False)

        def brisque(img):
            return float(model.score(img))
    except ImportError:
        brisque = None
    cols = []
    for c in a.column:
        if "=" not in c:
            p.error(f"--column wants LABEL=DIR, got {c!r}")
        label, d = c.split("=", 1)
        cols.append((label, Path(d)))
    stems = [s.strip() for s in a.images.split(",") if s.strip()]
    fig, axes = plt.subplots(len(stems), len(cols) + 1, figsize=(3.2 * (len(cols) + 1), 2.35 * len(stems)),
                             squeeze=False)
    for i, stem in enumerate(stems):
        sent = load_image(Path(a.sent) / f"{stem}.png")
        axes[i, 0].imshow(sent)
        axes[i, 0].set_title(f"{stem}: sent" + (f"\nBRISQUE {brisque(sent):.1f}" if brisque else ""), fontsize=8)
        for j, (label, d) in enumerate(cols, 1):
            f = d / f"{stem}.png"
            if not f.is_file():
                axes[i, j].set_title(f"{label}: lost", fontsize=8)
                continue
            img = load_image(f)
            axes[i, j].imshow(img)
            t = f"{label}: {psnr(sent, img):.2f} dB" + (f"\nBRISQUE {brisque(img):.1f}" if brisque else "")
            axes[i, j].set_title(t, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    if a.title:
        fig.suptitle(a.title, fontsize=9)
    fig.tight_layout()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, **({"pil_kwargs": {"quality": 85}} if out.suffix.lower() in (".jpg", ".jpeg") else {}))
    print(f"figure: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
