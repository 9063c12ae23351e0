"""Run the committed teaching demo (examples/teaching_demo.py) as GRC's Run button does,
headless, and print what its widgets received as one JSON line.

Run under /usr/bin/python3 (it imports the installed ``gnuradio.gensemcom``, as the
generated script does) with QT_QPA_PLATFORM=offscreen. Phases, each on the Qt event
loop (QTimer), never blocking it:

1. until every image display has shown an image and the link monitor has a row with
   channel uses for every link (or ``--phase-s`` passes);
2. the channel chooser switches to Rayleigh and the SNR slider moves (the generated
   ``set_chan`` / ``set_snr`` the widgets call), then until every display has shown
   another image (or ``--phase-s`` passes);
3. a clean stop (``tb.stop(); tb.wait()``).

A 50 ms timer measures how late the GUI thread gets to run (``max_gui_gap_s``).
"""
import argparse
import importlib.util
import json
import sys
import time

DISPLAYS = ("tisc_display", "deepjscc_display", "jpeg2000_display")
LINKS = ("tisc_link", "deepjscc_link", "jpeg2000_link")
SINKS = ("digital_constellation", "analog_constellation")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("script", help="the generated examples/teaching_demo.py")
    ap.add_argument("--image", required=True)
    ap.add_argument("--address", default="")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--period", type=float, default=0.5)
    ap.add_argument("--phase-s", type=float, default=120.0, help="longest wait of each phase")
    ap.add_argument("--switch-snr", type=float, default=12.0, help="SNR the slider moves to in phase 2")
    args = ap.parse_args()

    spec = importlib.util.spec_from_file_location("teaching_demo_probe_target", args.script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from PyQt5 import Qt

    app = Qt.QApplication(["teaching_demo"])
    tb = mod.teaching_demo(address=args.address, channel="awgn", image=args.image, period=args.period,
                           profile=args.profile, size=args.size, snr_db=10)
    tb.start()
    tb.show()
    out = {"phases": []}
    state = {"phase": 1, "t0": time.monotonic(), "last_tick": time.monotonic(), "max_gap": 0.0, "base": None}

    def shown():
        return {d: getattr(tb, d).counters()["shown"] for d in DISPLAYS}

    def snapshot(name):
        return {"phase": name, "t_s": round(time.monotonic() - state["t0"], 2), "shown": shown(),
                "sink_items": {s: int(getattr(tb, s).nitems_read(0)) for s in SINKS},
                "monitor_rows": tb.monitor.rows(), "monitor": tb.monitor.counters(),
                "links": {k: {"channel": getattr(tb, k).channel, "channels": [getattr(tb, k).dchan.kind,
                                                                                getattr(tb, k).achan.kind],
                              "snr_db": getattr(tb, k).snr_db, "counts": getattr(tb, k).counters()["link"]}
                          for k in LINKS}}

    def tick():
        now = time.monotonic()
        state["max_gap"] = max(state["max_gap"], now - state["last_tick"])
        state["last_tick"] = now
        elapsed = now - state["phase_t0"]
        s = shown()
        if state["phase"] == 1:
            rows = tb.monitor.rows()
            done = (all(v >= 1 for v in s.values()) and len(rows) == len(LINKS)
                    and all((r.get("total") or 0) > 0 for r in rows))
            if done or elapsed > args.phase_s:
                out["phases"].append(snapshot("awgn"))
                state["base"] = s
                tb.set_chan("rayleigh")  # what the chooser's radio button calls
                tb.set_snr(args.switch_snr)  # what the slider calls
                state["phase"], state["phase_t0"] = 2, time.monotonic()
        elif state["phase"] == 2:
            if all(s[d] > state["base"][d] for d in DISPLAYS) or elapsed > args.phase_s:
                out["phases"].append(snapshot("rayleigh"))
                state["phase"] = 3
                timer.stop()
                t = time.monotonic()
                tb.stop()
                tb.wait()
                out["stop_s"] = round(time.monotonic() - t, 2)
                out["max_gui_gap_s"] = round(state["max_gap"], 3)
                app.quit()

    state["phase_t0"] = time.monotonic()
    timer = Qt.QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    app.exec_()
    print(json.dumps(out, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
