"""``gensemcom models``: list, fetch, verify and locate every model the systems use.

The data and the logic live in :mod:`gensemcom.models.manifest`; this module is the
command line around it (mounted by :func:`gensemcom.cli.build_parser`).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List

from .local import ENV_MODELS

_EPILOG = f"""examples:
  gensemcom models list                              # every system and profile, with status
  gensemcom models list --system tisc --profile full
  gensemcom models fetch --system tisc --to /media/usb/models --dry-run
  gensemcom models fetch --system tisc --to /media/usb/models        # on a connected machine
  {ENV_MODELS}=/media/usb/models gensemcom models verify --system tisc  # at the field site
  gensemcom models path sd

The local models folder: {ENV_MODELS}=DIR makes every loader look for DIR/<org>/<name>
(the layout fetch --to DIR writes) before the Hugging Face cache; a model's own
variable ($GENSEMCOM_SD, $GENSEMCOM_BLIP, ...) still wins. Sizes with ~ are approximate."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``models`` subcommand (list, path, fetch, verify) to an argparse subparsers object."""
    p = subparsers.add_parser(
        "models", help="list, fetch and verify the models every system uses (offline field sites)",
        description="Every model each system and profile uses: list them with their status, fetch them once on a "
                    "connected machine (huggingface_hub, resumable), carry the folder, verify it offline (files, "
                    "sha256, the model loads), and see where each would be loaded from.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")

    ls = sub.add_parser("list", help="every model of every system and profile: id, revision, size, licence, status",
                        description="Per system and profile: each model's id, revision, size, licence, where it is "
                                    "looked for and whether it was found (or is shipped); missing ones say how to "
                                    "get them.")
    ls.add_argument("--system", default=None, help="a system, a comma list, or 'eval' (metric weights); default all")
    ls.add_argument("--profile", default=None, help="only this profile (full, embedded, tiny, metrics)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    pa = sub.add_parser("path", help="where a model would be loaded from (exit 1 if nowhere)",
                        description="Print the folder or file a model would be loaded from (a manifest name such "
                                    "as 'sd', or a hub id); exit 1 with what was looked for when it is nowhere.")
    pa.add_argument("model", metavar="ID_OR_NAME")
    pa.set_defaults(func=run_path)

    fe = sub.add_parser("fetch", help="download models with huggingface_hub into a folder to carry (resumable)",
                        description="Download each model of the selection with huggingface_hub.snapshot_download "
                                    "(only the files the loader needs; partial downloads resume; progress bars) "
                                    "into DIR/<org>/<name>, and write DIR/<org>/<name>/.gensemcom-manifest.json "
                                    "with the resolved commit and the sha256 and size of every file. Metric "
                                    "checkpoints (--system eval) go to DIR/torch/hub/checkpoints.")
    fe.add_argument("--system", default=None, help="a system, a comma list, 'eval' or 'all'; default every system")
    fe.add_argument("--profile", default="full", help="profile whose models to fetch (default full)")
    fe.add_argument("--model", default=None, help="only these models (comma-separated names or ids)")
    fe.add_argument("--to", default=None, metavar="DIR", help=f"models folder (default ${ENV_MODELS})")
    fe.add_argument("--with-optional", action="store_true",
                    help="also models only a non-default option needs (e.g. GenED-SC's CLIP backbone)")
    fe.add_argument("--dry-run", action="store_true", help="list what would be fetched; no network")
    fe.add_argument("--json", action="store_true", help="print the plan or the results as JSON")
    fe.add_argument("--quiet", action="store_true", help="no progress bars")
    fe.set_defaults(func=run_fetch)

    ve = sub.add_parser("verify", help="check the models offline: files present, sha256, the model loads",
                        description="For each model of the selection, where the loaders would find it (or in "
                                    "--dir): every file the manifest lists is present with its size and sha256, "
                                    "every file the loader needs is present, every .safetensors header is intact, "
                                    "and (unless --no-load) the model loads with the project's own loader on the "
                                    "CPU with HF_HUB_OFFLINE=1 (this needs the model's memory: several GB for the "
                                    "diffusion models). Exit 0 when all are good, 1 otherwise.")
    ve.add_argument("--system", default=None, help="a system, a comma list, 'eval' or 'all'; default every system")
    ve.add_argument("--model", default=None, help="only these models (comma-separated names or ids)")
    ve.add_argument("--dir", default=None, help="check this models folder (the fetch layout) instead")
    ve.add_argument("--no-load", action="store_true", help="check the files only; do not load the models")
    ve.add_argument("--json", action="store_true", help="print JSON")
    ve.set_defaults(func=run_verify)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    return p


def _names(arg) -> List[str]:
    return [s.strip() for s in str(arg).split(",") if s.strip()] if arg else []


def _err(msg: str) -> None:
    print(f"gensemcom models: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- list
_TAG = {"found": "found", "shipped": "shipped", "missing": "MISSING", "partial": "PARTIAL", "overridden": "HUB?"}
_SOURCE = {"env": "named by its environment variable", "models_dir": ENV_MODELS, "hf_cache": "Hugging Face cache",
           "torch_hub": "torch hub checkpoints", "package": "installed", "dir": "the given folder"}


def _row_lines(r: dict) -> List[str]:
    from .manifest import fmt_size

    size = fmt_size(r["size_bytes"], r["size_approximate"])
    opt = " [optional]" if r.get("optional") else ""
    head = (f"  [{_TAG.get(r['status'], r['status'])}] {r['name']}: {r['id']} ({r['revision']}), {size}, "
            f"{r['licence']}{opt}")
    lines = [head, f"      role: {r['role']}" + (f"; override: ${r['use_env']}" if r.get("use_env") else "")]
    if r["status"] in ("found", "shipped"):
        lines.append(f"      at: {r['path']} ({_SOURCE.get(r['source'], r['source'])})")
    else:
        lines.append("      looked for: " + "; ".join(r["looked_for"]))
        lines.extend(f"      {p}" for p in r["problems"] if r["status"] == "partial")
    for n in (r.get("location_note"), r.get("note") if r["status"] != "shipped" else None):
        if n:
            lines.append(f"      note: {n}")
    return lines


def run_list(args) -> int:
    from . import manifest as M

    try:
        data = M.listing(args.system, args.profile)
    except (KeyError, ValueError) as e:
        _err(str(e).strip("'\""))
        return 2
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    root = data["models_dir"]
    print(f"local models folder: {'$' + ENV_MODELS + ' = ' + root if root else '$' + ENV_MODELS + ' is not set'}")
    print(f"Hugging Face cache:  {data['hf_cache']}")
    for s in data["systems"]:
        kind = "offline" if s["offline"] else "hub models: fetch once"
        print(f"\n{s['system']} / {s['profile']}  ({kind})")
        if s["note"]:
            print(f"  {s['note']}")
        for r in s["models"]:
            print("\n".join(_row_lines(r)))
        missing = [r for r in s["models"] if r["status"] not in ("found", "shipped") and not r.get("optional")]
        if missing:
            names = ", ".join(dict.fromkeys(r["name"] for r in missing))
            hub = [r for r in missing if r["kind"] != "shipped"]
            if hub:
                print(f"  missing {names}: on a connected machine run `gensemcom models fetch --system {s['system']} "
                      f"--to DIR`, copy DIR here and set {ENV_MODELS}=DIR")
            for r in missing:
                if r["kind"] == "shipped":
                    print(f"  missing {r['name']}: {r['how_to']}")
    if data["missing"]:
        print(f"\nmissing: {', '.join(data['missing'])}\nto get them: {data['how_to']}")
    return 0


# ---------------------------------------------------------------- path
def run_path(args) -> int:
    from . import manifest as M

    try:
        loc = M.path_of(args.model)
    except KeyError as e:
        _err(str(e).strip("'\""))
        return 2
    if loc.status in ("found", "shipped"):
        print(loc.path)
        return 0
    what = {"missing": "not found", "partial": f"incomplete at {loc.path}",
            "overridden": f"not found locally ({loc.problems[0] if loc.problems else ''})"}[loc.status]
    _err(f"{args.model}: {what}; looked for: {'; '.join(loc.looked)}")
    for p in loc.problems if loc.status == "partial" else ():
        print(f"  {p}", file=sys.stderr)
    try:
        print(f"  to get it: {M.how_to(M.get(args.model))}", file=sys.stderr)
    except KeyError:
        pass
    return 1


# ---------------------------------------------------------------- fetch
def run_fetch(args) -> int:
    from . import manifest as M
    from .local import models_root

    try:
        selected = M.select(args.system, args.profile, ("hub", "url"), _names(args.model), args.with_optional)
    except (KeyError, ValueError) as e:
        _err(str(e).strip("'\""))
        return 2
    to = args.to or (str(models_root()) if models_root() else None)
    if not selected:
        print(f"nothing to fetch for --system {args.system or 'every system'} --profile {args.profile}: its models "
              "are shipped or there are none (see `gensemcom models list`)")
        return 0
    if args.dry_run:
        plans = [M.plan(m, to) for m in selected]
        total = sum(p["size_bytes"] for p in plans)
        if args.json:
            print(json.dumps({"to": to, "models": plans, "size_bytes": total, "size_approximate": True}, indent=1))
            return 0
        print(f"would fetch {len(plans)} model(s), {M.fmt_size(total, True)} (approximate), into {to or 'DIR (--to)'}:")
        for p in plans:
            extra = " (gated: accept its licence on the hub and log in first)" if p.get("gated") else ""
            target = p["target"] or "DIR/" + ("torch/hub/checkpoints" if p.get("url") else p["id"])
            print(f"  {p['name']}: {p['id']} @ {p.get('revision', '-')}, {M.fmt_size(p['size_bytes'], True)}"
                  f"{extra}\n      -> {target}")
            print("      files: " + ", ".join(p["patterns"]) + (f"\n      from: {p['url']}" if p.get("url") else ""))
        return 0
    if not to:
        _err(f"give --to DIR (or set {ENV_MODELS})")
        return 2
    failed, done = [], []
    for m in selected:
        if not args.json:
            print(f"fetching {m.name}: {m.id} (~{M.fmt_size(m.size)}) into {to}", file=sys.stderr)
        try:
            data = M.fetch_model(m, to, progress=not args.quiet and not args.json)
        except M.FetchError as e:
            failed.append({"name": m.name, "id": m.id, "error": str(e)})
            _err(str(e))
            continue
        done.append({"name": m.name, "id": m.id, "folder": data["folder"], "commit": data.get("commit"),
                     "files": len(data["files"]), "size_bytes": sum(f["size"] for f in data["files"].values())})
        if not args.json:
            print(f"  {m.name}: {len(data['files'])} files, {M.fmt_size(done[-1]['size_bytes'])}, commit "
                  f"{data.get('commit') or '-'} -> {data['folder']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"to": to, "fetched": done, "failed": failed}, indent=1))
    elif done and not failed:
        print(f"done: copy {to} to the offline machine, set {ENV_MODELS}={to} there (or its new path) and run "
              "`gensemcom models verify`")
    return 2 if failed else 0


# ---------------------------------------------------------------- verify
def run_verify(args) -> int:
    from . import manifest as M

    try:
        res = M.verify(args.system, args.dir, load=not args.no_load, names=_names(args.model))
    except (KeyError, ValueError) as e:
        _err(str(e).strip("'\""))
        return 2
    if args.json:
        print(json.dumps(res, indent=1))
        return 0 if res["ok"] else 1
    where = f"in the models folder {args.dir}" if args.dir else "where the loaders look for them"
    print(f"verifying {len(res['models'])} model(s) {where}{'' if not args.no_load else ' (files only)'}:")
    for r in res["models"]:
        tag = {"ok": "ok", "failed": "FAILED", "missing": "MISSING", "skipped": "skipped"}[r["status"]]
        bits = []
        if r["status"] == "ok" and r["kind"] != "shipped":
            bits.append("hashes match" if r["hashes"] == "checked" else f"hashes: {r['hashes']}")
            if r["loaded"]:
                bits.append(f"loads ({r['load_seconds']} s)")
        print(f"  [{tag}] {r['name']}: {r['id']}" + (f" at {r['path']}" if r["path"] else "")
              + (f" ({', '.join(bits)})" if bits else ""))
        if r["status"] == "missing":
            print("      looked for: " + "; ".join(r["looked_for"]))
        for p in r["problems"]:
            print(f"      {p}")
        for n in r["notes"]:
            print(f"      note: {n}")
        if r.get("how_to"):
            print(f"      to get it: {r['how_to']}")
    bad = [r["name"] for r in res["models"] if r["status"] not in ("ok", "skipped")]
    print("all good" if not bad else f"not good: {', '.join(dict.fromkeys(bad))}")
    return 0 if res["ok"] else 1
