"""The ``gensemcom`` command line tool.

Subcommands:
  phy-ber   sweep SNR for a modulation and code; BER/BLER table, --json, --plot
  demo      the PHY link demo: a caption over the digital path and a vector over
            the analog path, in a real GNU Radio flowgraph
  link      an image through a semantic system and the PHY, in a real flowgraph
  eval      every system through the PHY over SNRs and images; CSV/JSON and plots
  train     train the embedded models (gensemcom train deepjscc --help)
  worker    the ZMQ inference worker (see ``gensemcom worker --help``)
  models    list, fetch and verify the models every system uses (offline field sites)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
from typing import List, Optional

from . import __version__


@contextlib.contextmanager
def _stdout_to_stderr(active: bool = True):
    """Send file descriptor 1 (GNU Radio's C++ logger writes there) to stderr while active."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _fmt(v, spec=".3e"):
    return "-" if v is None else format(v, spec)


# ------------------------------------------------------------------ phy-ber
def add_phy_ber_parser(sub) -> None:
    p = sub.add_parser(
        "phy-ber", help="BER/BLER versus SNR of uncoded or LDPC-coded M-QAM",
        description="Monte Carlo BER and BLER of the project's PHY (the same QAM, LLR and LDPC code the "
                    "GNU Radio blocks use) versus SNR, with the closed-form BER of uncoded Gray M-QAM. "
                    "SNR is Es/N0 per complex symbol unless --snr-type ebn0.",
        epilog="examples:\n  gensemcom phy-ber --modulation 16 --snrs 0:20:2 --plot ber16.png\n"
               "  gensemcom phy-ber --modulation 4 --code ldpc --snr-type ebn0 --snrs 1:2.5:0.25 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("link")
    g.add_argument("--modulation", "-m", default="16",
                   help="QAM order(s): 4, 16, 64, 256, comma separated (default 16)")
    g.add_argument("--code", choices=["none", "ldpc"], default="none", help="uncoded or LDPC-coded (default none)")
    g.add_argument("--backend", default="default", help="LDPC backend (default: the measured best)")
    g.add_argument("--rate", default="1/2", help="LDPC code rate (default 1/2)")
    g.add_argument("--llr", choices=["exact", "maxlog"], default="exact", help="LLR demapping (default exact)")
    g.add_argument("--max-iter", type=int, default=None, help="LDPC decoder iterations (default: backend's)")
    g = p.add_argument_group("channel")
    g.add_argument("--channel", choices=["awgn", "rayleigh"], default="awgn")
    g.add_argument("--coherence", type=int, default=64, help="Rayleigh block length in symbols (default 64)")
    g.add_argument("--snrs", default="0:20:2", help="start:stop:step (stop included) or a comma list (default 0:20:2)")
    g.add_argument("--snr-type", choices=["esn0", "ebn0"], default="esn0",
                   help="the SNRs are Es/N0 per complex symbol (default) or Eb/N0 per information bit")
    g = p.add_argument_group("statistics")
    g.add_argument("--min-errors", type=int, default=1000,
                   help="uncoded: stop a point after this many bit errors (default 1000)")
    g.add_argument("--max-bits", type=float, default=2e7, help="uncoded: at most this many bits per point (default 2e7)")
    g.add_argument("--min-block-errors", type=int, default=100,
                   help="coded: stop a point after this many block errors (default 100)")
    g.add_argument("--max-blocks", type=int, default=5000, help="coded: at most this many blocks per point (default 5000)")
    g.add_argument("--seed", type=int, default=1)
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g.add_argument("--plot", metavar="FILE", help="write a matplotlib plot (PNG, PDF or SVG)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run_phy_ber)


def run_phy_ber(args) -> int:
    from .eval import ber as B

    try:
        orders = [int(m) for m in str(args.modulation).split(",")]
        snrs = B.parse_snrs(args.snrs)
        code = None
        if args.code == "ldpc":
            from .phy import ldpc
            code = ldpc.get_code(backend=args.backend, rate=args.rate)
        from .phy.qam import QAM
        for m in orders:
            QAM(m)
    except (ValueError, ImportError) as e:
        print(f"gensemcom phy-ber: error: {e}", file=sys.stderr)
        return 2
    rate = code.rate if code is not None else 1.0
    curves, report = {}, []
    for m in orders:
        bps = QAM(m).bits_per_symbol
        esn0s = [B.to_esn0(s, args.snr_type, bps, rate) for s in snrs]
        if code is None:
            def point(s, m=m):
                return B.uncoded_point(m, s, args.channel, args.min_errors, int(args.max_bits),
                                       args.coherence, args.seed)
            label = f"{m}-QAM uncoded"
        else:
            def point(s, m=m):
                return B.coded_point(code, m, s, args.channel, args.min_block_errors, args.max_blocks,
                                     llr_method=args.llr, coherence=args.coherence, seed=args.seed,
                                     max_iter=args.max_iter)
            label = f"{m}-QAM {code.name} ({code.backend})"
        pts = B.sweep(esn0s, point, progress=not args.quiet, desc=label)
        curves[label] = pts
        gaps = [abs(p.ber_rel_gap) for p in pts if p.ber_rel_gap is not None and p.ber_theory >= 1e-4]
        report.append({"label": label, "modulation": m, "channel": args.channel,
                       "code": None if code is None else {"name": code.name, "backend": code.backend,
                                                           "n": code.n, "k": code.k, "rate": code.rate},
                       "llr": args.llr, "snr_convention": "Es/N0 per complex symbol, Es=1",
                       "max_abs_rel_gap_where_ber_ge_1e-4": max(gaps) if gaps else None,
                       "points": [p.to_dict() for p in pts]})
    if args.plot:
        B.plot_curves(curves, args.plot, title=f"{args.channel.upper()}",
                      x="esn0_db" if args.snr_type == "esn0" else "ebn0_db")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for r in report:
            print(f"\n{r['label']}, {r['channel']}")
            print(f"{'Es/N0':>7} {'Eb/N0':>7} {'BER':>10} {'theory':>10} {'gap':>8} {'BLER':>10} {'bits':>10}")
            for p in r["points"]:
                gap = None if p["ber_rel_gap"] is None else 100 * p["ber_rel_gap"]
                print(f"{p['esn0_db']:7.2f} {p['ebn0_db']:7.2f} {_fmt(p['ber']):>10} {_fmt(p['ber_theory']):>10} "
                      f"{_fmt(gap, '+.1f') + ('%' if gap is not None else ''):>8} {_fmt(p['bler']):>10} {p['bits']:>10}")
            g = r["max_abs_rel_gap_where_ber_ge_1e-4"]
            if g is not None:
                print(f"largest |BER - theory| / theory where theory >= 1e-4: {100 * g:.2f}%")
        if args.plot:
            print(f"\nplot: {args.plot}")
    return 0


# --------------------------------------------------------------------- demo
def add_demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="PHY link demo in a real GNU Radio flowgraph",
        description="Send a caption over the digital path (CRC-32, LDPC, M-QAM) and a float vector over the "
                    "analog path (power-normalised, uncoded) through a PDU channel in a GNU Radio flowgraph, "
                    "and report what arrived.")
    p.add_argument("--text", default="a red barn under a blue sky with white clouds", help="the caption to send")
    p.add_argument("--dim", type=int, default=768, help="length of the analog vector (even; default 768)")
    p.add_argument("--snr", type=float, default=6.0, help="Es/N0 in dB (default 6)")
    p.add_argument("--channel", choices=["awgn", "rayleigh"], default="awgn")
    p.add_argument("--modulation", type=int, default=16, choices=[4, 16, 64, 256])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from .flowgraphs.phy_loopback import run_phy_demo

    with _stdout_to_stderr(args.json):
        report = run_phy_demo(text=args.text, dim=args.dim, snr_db=args.snr, channel=args.channel,
                              modulation=args.modulation, seed=args.seed)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for k, v in report.items():
            print(f"{k:>24}: {v}")
    return 0 if report.get("frames_received") == 2 else 1


# --------------------------------------------------------------------- link
def add_link_parser(sub) -> None:
    p = sub.add_parser(
        "link", help="an image through a semantic system and the PHY, in a real GNU Radio flowgraph",
        description="Builds and runs the semantic link flowgraph: image source -> semantic encoder (inference "
                    "worker) -> frame mapper -> digital path (CRC, LDPC, QAM) and analog path -> channel -> "
                    "equalisers -> frame demapper -> semantic decoder (worker) -> image sink. Starts a local "
                    "worker unless --address is given. Writes the received image, a side-by-side PNG "
                    "(sent | received) and a JSON report.",
        epilog="examples:\n  gensemcom link --system tisc --image kodim01.png --snr 10 --out out/\n"
               "  gensemcom link --system tisc --profile full --image kodim01.png --snr 5 --channel rayleigh "
               "--out out/   # BLIP + Stable Diffusion (GPU)\n"
               "  gensemcom link --system deepjscc --image photos/ --snr 1 --json\n"
               "  gensemcom link --system sc_sic --image kodim23.png --snr 5 --out out/   # Stable Cascade SIC, "
               "embedded\n"
               "  gensemcom link --system sc_sic-digital --profile full --image kodim23.png --snr 15 --out out/"
               "   # Stage B lite (GPU)\n"
               "  gensemcom link --system task_adaptive --task person --image camvid.png --snr 10 --out out/"
               "   # three phases, feedback on the return link\n"
               "  gensemcom link --system gened_sc --image bird.jpg --snr 4 --channel rayleigh --modulation 16 "
               "--code-rate 1/2 --out out/   # fg/bg JSCC segments + caption (the paper's text path)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import systems

    p.epilog += "\n\nsystems and their profiles (* runs offline):\n" + systems.describe()
    g = p.add_argument_group("system")
    g.add_argument("--system", default="tisc", metavar="SYSTEM",
                   help=f"semantic system: {', '.join(systems.names())} (default tisc)")
    g.add_argument("--profile", choices=list(systems.PROFILES), default=None,
                   help="models: embedded (shipped, CPU), tiny (random, tests), full (paper models); "
                        "default: the system's own (embedded where it has one)")
    g.add_argument("--image", required=True, help="an image file or a folder of images")
    g.add_argument("--task", default="", metavar="TASK",
                   help="the receiver's task, for task-adaptive systems: a class label (person, car, cyclist, "
                        "sign, ..., all) or free text ('the cyclist'); it goes back over the return link and the "
                        "transmitter answers with the edges that matter (default: none, phase 1 only)")
    g.add_argument("--size", type=int, default=0, help="centre-crop and resize to SIZE x SIZE (default: keep)")
    g.add_argument("--blip", metavar="ID_OR_PATH", default=None,
                   help="full profile: BLIP captioner, a hub id or a local save_pretrained folder "
                        "(sets GENSEMCOM_BLIP for the local worker; default Salesforce/blip-image-captioning-base)")
    g.add_argument("--sd", metavar="ID_OR_PATH", default=None,
                   help="full profile: Stable Diffusion pipeline, a hub id or a local folder "
                        "(sets GENSEMCOM_SD for the local worker; default an SD 1.5 checkpoint)")
    g.add_argument("--sc-encoder", metavar="ID_OR_PATH", default=None,
                   help="sc_sic full profile: EfficientNet-V2-S encoder weights, a hub id or effnet_encoder.safetensors "
                        "(sets GENSEMCOM_SC_ENCODER; default stabilityai/stable-cascade)")
    g.add_argument("--sc-decoder", metavar="ID_OR_PATH", default=None,
                   help="sc_sic full profile: Stage B + Stage A, a hub id, a saved pipeline or a fine-tuned decoder "
                        "folder (sets GENSEMCOM_SC_DECODER; default stabilityai/stable-cascade, Stage B lite)")
    g.add_argument("--convert", action="store_true",
                   help="accept images that are not 8-bit RGB (grayscale, palette, RGBA, CMYK...) and convert them")
    g = p.add_argument_group("channel")
    g.add_argument("--phy", choices=["pdu", "ota-sim"], default="pdu",
                   help="pdu: the PDU PHY blocks (AWGN/Rayleigh); ota-sim: the OFDM burst PHY through "
                        "channels.channel_model with CFO, timing drift and multipath (default pdu)")
    g.add_argument("--cfo", type=float, default=0.1, help="ota-sim: CFO in subcarrier spacings (default 0.1)")
    g.add_argument("--epsilon", type=float, default=1.0001, help="ota-sim: sample-rate ratio (default 1.0001)")
    g.add_argument("--taps", default="1,0.5,0.3", help="ota-sim: multipath taps, comma separated (default 1,0.5,0.3)")
    g.add_argument("--snr", type=float, default=10.0, help="Es/N0 in dB per complex symbol (default 10)")
    g.add_argument("--channel", choices=["awgn", "rayleigh"], default="awgn")
    g.add_argument("--coherence", type=int, default=64, help="Rayleigh block length in symbols (default 64)")
    g.add_argument("--estimator", choices=["perfect", "ls", "lmmse"], default="perfect",
                   help="Rayleigh channel estimate: perfect CSI or pilots (default perfect)")
    g.add_argument("--pilots", type=int, default=4, help="pilots per coherence block for ls/lmmse (default 4)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--return-snr", type=float, default=None,
                   help="Es/N0 of the return link that carries a receiver's feedback (systems with feedback "
                        "rounds; default: --snr)")
    g = p.add_argument_group("digital path")
    g.add_argument("--modulation", type=_modulation_arg, default="auto",
                   help="payload QAM order 4, 16, 64, 256, or auto (default: link adaptation picks the MCS "
                        "whose code-block error rate at --snr is below 1e-2)")
    g.add_argument("--code-rate", choices=["auto", "1/5", "1/4", "1/3", "1/2", "2/3", "3/4", "5/6"], default="auto",
                   help="payload LDPC rate (1/5..1/3: 5G NR base graph 2; 1/2..5/6: IEEE 802.16e), or auto "
                        "(default). The frame's header always travels in its own QPSK rate-1/5 block")
    g.add_argument("--budget", type=int, default=0, help="channel uses per image for rate-matched systems")
    g = p.add_argument_group("run")
    g.add_argument("--address", default="", help="inference worker or broker address (default: start one)")
    g.add_argument("--curve-keys", metavar="DIR", default="",
                   help="CURVE key folder for a remote worker or broker (from 'gensemcom worker keygen')")
    g.add_argument("--out", default="", help="folder for received images, comparisons and report.json")
    g.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_link_cmd)


STAGE_PREFIX = ".gensemcom-link-"


def _exit_on_signal(signum, _frame):
    """SIGTERM/SIGHUP end the run like Ctrl-C does: the ``finally`` clauses run."""
    raise SystemExit(128 + signum)


def _restore(handlers) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _remove_stale_stages(parent: str) -> None:
    """Remove staging folders left in ``parent`` by runs that were killed (their pid is gone)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(STAGE_PREFIX):
            continue
        pid = name[len(STAGE_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _check_writable(out: str) -> None:
    """``--out`` must be a folder this process can create and write, checked before any work."""
    from .flowgraphs.semantic_link import LinkInputError

    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise LinkInputError(f"--out {out!r} exists and is not a folder")
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise LinkInputError(f"--out {out!r} cannot be created: {probe!r} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK) or (os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK)):
        raise LinkInputError(f"--out {out!r} cannot be written (no write permission on {probe!r}): choose another "
                             "folder")


def _link_error(msg: str) -> int:
    print(f"gensemcom link: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return 2


def run_link_cmd(args) -> int:
    import tempfile

    from . import systems
    from .flowgraphs.semantic_link import (FlowgraphOptions, LinkInputError, check_images, check_system,
                                           run_flowgraph, run_flowgraph_ota)

    try:  # a profile the system does not have is refused before anything runs
        _, profile = systems.check(args.system, args.profile)
    except ValueError as e:
        return _link_error(e)
    opts = FlowgraphOptions(system=args.system, profile=profile, images=args.image, snr_db=args.snr,
                            channel=args.channel, coherence=args.coherence, estimator=args.estimator,
                            n_pilots=args.pilots, modulation=args.modulation, code_rate=args.code_rate,
                            budget_symbols=args.budget, address=args.address, out_dir=args.out, seed=args.seed,
                            size=args.size, timeout_s=args.timeout, return_snr_db=args.return_snr,
                            curve_keys=args.curve_keys, task=args.task)
    os.environ.setdefault("GENSEMCOM_WORKER_LOG_LEVEL", "WARNING")  # the local worker's start-up chatter
    for flag, env in ((args.blip, "GENSEMCOM_BLIP"), (args.sd, "GENSEMCOM_SD"), (args.sc_encoder, "GENSEMCOM_SC_ENCODER"),
                      (args.sc_decoder, "GENSEMCOM_SC_DECODER")):
        if flag:  # read by the model loaders of the local worker this process starts
            os.environ[env] = flag
    taps = None
    try:  # everything that can be checked before a flowgraph runs: nothing is written on an error
        if args.phy == "ota-sim":
            try:
                taps = tuple(complex(t) if "j" in t else float(t) for t in args.taps.split(","))
            except ValueError:
                raise LinkInputError(f"--taps must be numbers, got {args.taps!r}") from None
        if args.size < 0:
            raise LinkInputError(f"--size must be 0 (keep) or a positive size, got {args.size}")
        if args.out:
            _check_writable(args.out)
        if args.curve_keys and not os.path.isdir(args.curve_keys):
            raise LinkInputError(f"--curve-keys {args.curve_keys!r} is not a folder of CURVE keys")
        check_images(args.image, convert=args.convert)
        opts.validate()
        if args.phy != "ota-sim":
            with _stdout_to_stderr(args.json):
                check_system(opts)
    except (LinkInputError, ValueError, FileNotFoundError) as e:
        return _link_error(e)
    # outputs go to a staging folder beside --out, moved into place only when the run completes;
    # it goes on any exit (SIGTERM and SIGHUP included), and one a SIGKILLed run left is removed next time
    old = {sig: signal.signal(sig, _exit_on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    stage = None
    if args.out:
        parent = os.path.dirname(os.path.abspath(args.out))
        try:
            os.makedirs(parent, exist_ok=True)
            _remove_stale_stages(parent)
            stage = tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=parent)
        except OSError as e:
            _restore(old)
            return _link_error(f"--out {args.out!r} cannot be written: {e}")
        opts.out_dir = stage
    try:
        with _stdout_to_stderr(args.json):  # GNU Radio logs to stdout; keep it clean for --json
            if args.phy == "ota-sim":
                report = run_flowgraph_ota(opts, cfo=args.cfo, epsilon=args.epsilon, taps=taps)
            else:
                report = run_flowgraph(opts)
        if stage:
            for r in report["images"]:
                if r.get("output"):
                    r["output"] = os.path.join(args.out, os.path.basename(r["output"]))
            with open(os.path.join(stage, "report.json"), "w") as f:
                json.dump(report, f, indent=1)
            os.makedirs(args.out, exist_ok=True)
            for name in os.listdir(stage):
                os.replace(os.path.join(stage, name), os.path.join(args.out, name))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        return _link_error(f"{type(e).__name__}: {e}")
    finally:
        _restore(old)
        if stage:
            shutil.rmtree(stage, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['system']} [{report['profile']}], {report.get('channel', report.get('phy'))} at Es/N0 "
              f"{report['snr_db']} dB, modulation {report['modulation']}, code rate {report['code_rate']}")
        for r in report["images"]:
            if not r["received"]:
                print(f"  {r['image']}: LOST: {r.get('reason', 'see the block counters in the JSON report')}")
                hint = lost_hint(r, args, report)
                if hint:
                    print(f"    hint: {hint}")
                continue
            cu = r["channel_uses"]
            fb = f", {cu['rounds']} rounds, {cu['feedback']} on the return link" if "rounds" in cu else ""
            print(f"  {r['image']}: PSNR {r['psnr_db']} dB, channel uses {cu['total']} (digital {cu['digital']} "
                  f"incl. header {cu.get('header', 0)}, analog {cu['analog']}{fb}), CBR {r.get('cbr', '-')}, "
                  f"MCS {r.get('mcs')}, header_ok {r.get('header_ok')}, crc_ok {r['crc_ok']}, "
                  f"SNR estimate {r.get('snr_est_db')} dB, {r.get('timings_ms')}")
        print(f"wall {report['wall_s']} s" + (f"; files in {args.out}" if args.out else ""))
    return 0 if all(r["received"] for r in report["images"]) else 1


def _modulation_arg(v: str):
    if v == "auto":
        return v
    if v not in ("4", "16", "64", "256"):
        raise argparse.ArgumentTypeError(f"modulation must be auto, 4, 16, 64 or 256, got {v!r}")
    return int(v)


def lost_hint(row: dict, args, report: Optional[dict] = None) -> str:
    """What to try when an image is lost (for the console)."""
    if row.get("header_ok") is False or (report or {}).get("frames_header_lost"):
        return ("the protected header was lost too: the SNR is below what any frame survives "
                "(about -3 dB on AWGN); raise --snr, or use --channel awgn / --estimator perfect")
    if args.modulation != "auto" or args.code_rate != "auto":
        return ("the payload failed at the fixed MCS; try --modulation auto --code-rate auto (link adaptation) "
                "or a lower --modulation / --code-rate")
    return ("the payload failed at the adapted MCS and the system's policy discards such frames "
            "(link adaptation targets a code-block error rate of 1e-2); raise --snr")


# --------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gensemcom", description="gr-gensemcom: generative semantic communication for GNU Radio.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--version", action="version", version=f"gr-gensemcom {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_phy_ber_parser(sub)
    add_demo_parser(sub)
    add_link_parser(sub)
    from .eval import compare, harness
    harness.add_parser(sub)
    compare.add_parser(sub)
    train = sub.add_parser("train", help="train the embedded models (DeepJSCC, ...)",
                           description="Train the small models the embedded profile ships.")
    from .train import add_parsers as add_train_parsers
    add_train_parsers(train.add_subparsers(dest="model", metavar="MODEL"))
    train.set_defaults(func=lambda a: (train.print_help(), 2)[1])
    try:
        from .worker import cli as worker_cli
    except ImportError:
        worker_cli = None
    if worker_cli is not None and hasattr(worker_cli, "add_parser"):
        worker_cli.add_parser(sub)
    from .models import cli as models_cli
    models_cli.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
