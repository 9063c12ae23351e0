"""``gensemcom eval --ray ADDRESS|auto``: the cells of an evaluation as Ray tasks.

Every (system, image, SNR) cell not already in ``rows.csv`` becomes one Ray task that
calls :func:`gensemcom.eval.harness.evaluate_cell` (the function the local run calls), on
a worker that builds each system once (:func:`gensemcom.eval.harness.runner_for`). The
task asks for one CPU, and one GPU for a system on its full profile where the cluster
has GPUs. Results stream back with ``ray.wait`` into the same ``rows.csv`` (appended in
completion order, so an interrupted run can ``--resume``; sorted into the local run's
order at the end) and the same rows/summary/plots as the local run.

Failures: a task whose worker process dies is run again (``max_retries``), as is one
that raises an infrastructure error (:data:`gensemcom.eval.harness.INFRA_ERRORS`); a
cell whose system raises is reported as failed with its reason and left out of the
rows (a later ``--resume`` runs it again). At the end, the cells that needed more than
one attempt and the failed ones are reported.

Ray is an optional extra (``pip install .[ray]``); this module is imported only when
``--ray`` is given.
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Sequence, Tuple

try:
    import ray
except ImportError:  # pragma: no cover - exercised without the extra
    ray = None

from .harness import INFRA_ERRORS, Cell, EvalConfig, EvalError, _run_cell, pin_torch_threads, runner_for

#: attempts of a cell whose worker dies (or that raises an infrastructure error), after the first
MAX_RETRIES = 3
#: test hook: a file naming one cell (``Cell.describe()``); the worker running that cell exits
#: once (marker: the same path with ``.done``), as a killed worker would
CRASH_ENV = "GENSEMCOM_EVAL_CRASH_ONCE"


def _require_ray():
    if ray is None:
        raise EvalError("--ray needs Ray: pip install .[ray] (or pip install 'ray[serve]>=2.9')")
    return ray


def connect(address: str) -> bool:
    """Connect to the Ray cluster at ``address``; "auto": the running cluster, else a
    local one started for this run; "local": always a new local one. Returns whether this
    call connected (and so should disconnect); a process already connected keeps its
    connection. The workers must import the same gensemcom (installed on every node)."""
    _require_ray()
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address == "local":
        ray.init(**kw)
    elif address == "auto":
        try:
            ray.init(address="auto", **kw)
        except ConnectionError:  # no running cluster: start one here for this run
            ray.init(**kw)
    else:
        try:
            ray.init(address=address, **kw)
        except ConnectionError as e:
            raise EvalError(f"--ray {address}: cannot connect: {e}") from None
    return True


def _maybe_crash(cell: Cell) -> None:
    """The test hook (:data:`CRASH_ENV`): exit this worker once while running the named cell."""
    spec = os.environ.get(CRASH_ENV)
    if not spec or not os.path.isfile(spec):
        return
    with open(spec) as f:
        if f.read().strip() != cell.describe():
            return
    marker = spec + ".done"
    if os.path.exists(marker):
        return
    open(marker, "w").close()
    os._exit(1)


if ray is not None:
    @ray.remote(num_cpus=0)
    class _Attempts:
        """Counts each cell's attempts (a task registers itself before it computes)."""

        def __init__(self):
            self.n: Dict[str, int] = {}

        def start(self, cell: str) -> int:
            self.n[cell] = self.n.get(cell, 0) + 1
            return self.n[cell]

        def counts(self) -> Dict[str, int]:
            return dict(self.n)

    @ray.remote
    def _cell_task(cell: Cell, cfg: EvalConfig, image, attempts, keep_image: bool, threads: int) -> dict:
        """One cell on a worker: its row (and received image), or the system's error."""
        attempt = ray.get(attempts.start.remote(cell.describe()))
        _maybe_crash(cell)
        pin_torch_threads(threads)
        try:
            row, out_img = _run_cell(cell, cfg, runner_for(cfg), image)
        except EvalError as e:
            return {"error": str(e), "attempt": attempt}
        return {"row": row, "image": out_img if keep_image else None, "attempt": attempt}


def _resources() -> dict:
    r = ray.cluster_resources()
    return {"nodes": len([n for n in ray.nodes() if n.get("Alive")]), "CPU": float(r.get("CPU", 0)),
            "GPU": float(r.get("GPU", 0))}


def _needs_gpu(system: str, cfg: EvalConfig) -> bool:
    """A system on its full profile with models (one that cannot run offline): a GPU per task."""
    from .. import systems as registry

    spec, profile = registry.check(system, cfg.profile)
    return profile == "full" and not spec.offline.get(profile, False)


def _error_reason(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    reason = f"{type(e).__name__}: {msg[-1] if msg else ''}"[:500]
    if "No module named 'gensemcom" in reason:
        reason += " (the cluster's workers must import gensemcom: install it on every node)"
    return reason


def run_cells(cfg: EvalConfig, cells: Sequence[Cell], on_row: Callable, address: str = "auto", total: int = 0,
              skipped: int = 0, keep_images: bool = False, inflight: int = 0, cpus: int = 1) -> dict:
    """Run ``cells`` as Ray tasks, handing each finished row to ``on_row(cell, row, image)``.

    Args:
        cfg (EvalConfig): the run's settings (shipped once to the object store).
        cells (Sequence[Cell]): the cells to run (those not in ``rows.csv``).
        on_row (Callable): called in completion order with the cell, its row and the
            received image (None unless ``keep_images``).
        address (str): the cluster (``ray.init`` address) or "auto".
        total (int): all cells of the run, for the progress bar.
        skipped (int): cells taken from an earlier run.
        keep_images (bool): send the received images back (set-level metrics need them).
        inflight (int): at most this many tasks submitted at once (0: twice the cluster's CPUs).
        cpus (int): CPUs per task, and the torch threads it runs with.

    Returns:
        dict: ``failed`` ([(cell, reason)]), ``retried`` ([(cell, attempts)]), ``cluster``
        (nodes, CPUs, GPUs, in-flight limit) and ``wall_s``.
    """
    from tqdm import tqdm

    started = connect(address)
    t0 = time.perf_counter()
    try:
        res = _resources()
        limit = int(inflight) if inflight and inflight > 0 else max(2, int(2 * res["CPU"] / max(1, cpus)))
        res["inflight"] = limit
        gpu = {n: res["GPU"] >= 1 and _needs_gpu(n, cfg) for n in {c.system for c in cells}}
        attempts = _Attempts.remote()
        cfg_ref = ray.put(cfg)
        images: "OrderedDict[str, object]" = OrderedDict()  # image path -> object ref, while cells use it
        desc = f"eval on ray ({res['nodes']} node(s), {res['CPU']:g} CPU, {res['GPU']:g} GPU)"
        bar = tqdm(total=total or len(cells), initial=skipped, desc=desc, unit="run", disable=not cfg.progress,
                   dynamic_ncols=True)
        pending: Dict[object, Cell] = {}
        failed: List[Tuple[Cell, str]] = []
        it = iter(cells)
        more = True
        try:
            while more or pending:
                while more and len(pending) < limit:
                    cell = next(it, None)
                    if cell is None:
                        more = False
                        break
                    if cell.image not in images:
                        from ..image_io import load_image

                        images[cell.image] = ray.put(load_image(cell.image))
                        while len(images) > max(4, limit):
                            images.popitem(last=False)
                    ref = _cell_task.options(
                        num_cpus=cpus, num_gpus=1 if gpu[cell.system] else 0, max_retries=MAX_RETRIES,
                        retry_exceptions=list(INFRA_ERRORS), name=f"eval {cell.describe()}",
                    ).remote(cell, cfg_ref, images[cell.image], attempts, keep_images, cpus)
                    pending[ref] = cell
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # the worker died past its retries, or an infrastructure error
                        failed.append((cell, _error_reason(e)))
                        bar.update(1)
                        continue
                    if "error" in out:
                        failed.append((cell, out["error"]))
                    else:
                        on_row(cell, out["row"], out["image"])
                        bar.set_postfix_str(f"{cell.label} {cell.name} {cell.snr:g}dB "
                                            f"psnr={out['row']['metrics']['psnr']:.2f}")
                    bar.update(1)
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)
        counts = ray.get(attempts.counts.remote())
        by_name = {c.describe(): c for c in cells}
        retried = sorted(((by_name[k], n) for k, n in counts.items() if n > 1 and k in by_name),
                         key=lambda cn: cn[0].describe())
        ray.kill(attempts)
        return {"failed": failed, "retried": retried, "cluster": res, "wall_s": time.perf_counter() - t0}
    finally:
        if started:
            ray.shutdown()


def format_report(failed: Sequence[Tuple[Cell, str]], retried: Sequence[Tuple[Cell, int]]) -> str:
    """The end-of-run report: the cells retried (and how many attempts) and the failed ones (and why)."""
    lines = []
    if retried:
        lines.append(f"{len(retried)} cell(s) needed more than one attempt (a worker died or an infrastructure "
                     "error), all accounted for:")
        lines += [f"  {c.describe()}: {n} attempts" for c, n in retried]
    if failed:
        lines.append(f"{len(failed)} cell(s) failed (not in the rows; --resume runs them again):")
        lines += [f"  {c.describe()}: {reason}" for c, reason in failed]
    return "\n".join(lines)
