"""A screenshot of the teaching demo (``examples/teaching_demo.grc``) for the README and tutorial.

Runs the committed generated flowgraph (``examples/teaching_demo.py``) on Qt's offscreen
platform (no screen needed), with the embedded profile on the bundled photos by
default, for ``--seconds`` seconds, then saves the main window's ``grab()`` (PNG, or
JPEG for a ``.jpg`` name) and prints a JSON summary (images each display showed,
samples each constellation sink read, the link monitor's rows, and the longest the
GUI thread took to run a 200 ms timer: how close it came to stalling).

Usage::

    make install   # the flowgraph imports the installed gnuradio.gensemcom, as GRC does
    .venv/bin/python bench/teaching_demo_screenshot.py --seconds 60

The models run in the inference worker (started by the flowgraph unless ``--address``
names one); on a 2-core CPU the first images take a few seconds (models load), then
TISC's embedded textual inversion takes 2 to 9 s per image, DeepJSCC and JPEG2000 well
under a second.
"""
import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISPLAYS = ("tisc_display", "deepjscc_display", "jpeg2000_display")
SINKS = ("digital_constellation", "analog_constellation")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "teaching_demo.png"),
                    help="picture to write (.png, or .jpg/.jpeg for JPEG)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the flowgraph runs before the grab")
    ap.add_argument("--min-images", type=int, default=2,
                    help="after --seconds, keep running (up to twice as long) until every display has shown this "
                         "many images")
    ap.add_argument("--profile", default="embedded", help="model profile (embedded, tiny, full)")
    ap.add_argument("--image", default="", help="image folder or file (empty: the bundled examples/data photos)")
    ap.add_argument("--size", type=int, default=256, help="crop and scale each image to size x size (0 keeps it)")
    ap.add_argument("--period", type=float, default=3.0, help="seconds between images")
    ap.add_argument("--snr-db", type=float, default=10.0, help="Es/N0 (the slider's start value)")
    ap.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"), help="channel (the chooser's start)")
    ap.add_argument("--address", default="", help="inference worker address (empty: the flowgraph starts one)")
    ap.add_argument("--width", type=int, default=1400, help="window width in pixels")
    ap.add_argument("--height", type=int, default=1000, help="window height in pixels")
    ap.add_argument("--quality", type=int, default=88, help="JPEG quality (JPEG output only)")
    ap.add_argument("--max-kb", type=int, default=400,
                    help="a PNG larger than this is reduced to 256 colours (with Pillow, when it is installed)")
    ap.add_argument("--script", default=str(ROOT / "examples" / "teaching_demo.py"),
                    help="the generated flowgraph to run")
    return ap.parse_args(argv)


def shrink_png(path: Path) -> None:
    """Reduce a PNG to 256 colours (median cut, Floyd-Steinberg dithering) with Pillow,
    when Pillow is installed (the venv has it; GRC's /usr/bin/python3 may not)."""
    try:
        from PIL import Image
    except ImportError:
        print(f"{path}: {path.stat().st_size // 1024} kB; install Pillow (or pass a .jpg name) to shrink it",
              file=sys.stderr)
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    small.save(path, optimize=True)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("GENSEMCOM_WORKER_LOG_LEVEL", "WARNING")
    spec = importlib.util.spec_from_file_location("teaching_demo_screenshot_target", args.script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from PyQt5 import Qt

    app = Qt.QApplication(["teaching_demo"])
    tb = mod.teaching_demo(address=args.address, channel=args.channel, image=args.image, period=args.period,
                           profile=args.profile, size=args.size, snr_db=args.snr_db)
    tb.resize(args.width, args.height)
    tb.start()
    tb.show()
    t0 = time.monotonic()
    gaps = {"last": t0, "max": 0.0}  # how late the GUI thread got to run the 200 ms timer

    def shown():
        return {d: getattr(tb, d).counters()["shown"] for d in DISPLAYS}

    def tick():
        now = time.monotonic()
        gaps["max"], gaps["last"] = max(gaps["max"], now - gaps["last"]), now
        elapsed = now - t0
        enough = all(n >= args.min_images for n in shown().values())
        if elapsed >= args.seconds and (enough or elapsed >= 2 * args.seconds):
            timer.stop()
            app.quit()

    timer = Qt.QTimer()
    timer.timeout.connect(tick)
    timer.start(200)
    app.exec_()
    app.processEvents()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pixmap = tb.grab()
    jpeg = out.suffix.lower() in (".jpg", ".jpeg")
    if not pixmap.save(str(out), "JPEG" if jpeg else "PNG", args.quality if jpeg else -1):
        sys.exit(f"could not write {out}")
    if not jpeg and out.stat().st_size > 1024 * args.max_kb:
        shrink_png(out)
    summary = {"out": str(out), "bytes": out.stat().st_size, "size": [pixmap.width(), pixmap.height()],
               "seconds": round(time.monotonic() - t0, 1), "shown": shown(),
               "sink_items": {s: int(getattr(tb, s).nitems_read(0)) for s in SINKS},
               "monitor_rows": tb.monitor.rows(), "max_gui_timer_gap_s": round(gaps["max"], 3)}
    tb.stop()
    tb.wait()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
