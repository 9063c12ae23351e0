"""``gensemcom eval --ray``: on a local Ray cluster started and stopped here, the sweep's
rows equal the local run's (tiny profile), a second run resumes with nothing to do,
a cell whose worker process dies is run again and reported, and a cell whose system
raises is reported as failed, never dropped silently."""
import argparse
import json
import os

import numpy as np
import pytest

pytest.importorskip("torchmetrics")
ray = pytest.importorskip("ray")
from PIL import Image  # noqa: E402

from gensemcom.eval import harness as H  # noqa: E402
from gensemcom.eval import ray_runner as R  # noqa: E402
from gensemcom.systems.jpeg2000_ldpc import jpeg2000_available  # noqa: E402

SYSTEMS = "deepjscc,jpeg2000-ldpc" if jpeg2000_available() else "deepjscc,row-refine"
ARGS = ["--systems", SYSTEMS, "--profile", "tiny", "--snrs=0,20", "--cbr", "1/6", "--j2k-modulations", "16",
        "--j2k-rates", "1/2", "--metrics", "psnr,ssim", "-q"]
N_CELLS = 3 * 2 * 2  # images x systems x SNRs


@pytest.fixture(scope="module")
def crash_spec(tmp_path_factory):
    """The test hook's file (read by the workers, so set before the cluster starts)."""
    return tmp_path_factory.mktemp("crash") / "cell"


@pytest.fixture(scope="module")
def cluster(crash_spec):
    os.environ[R.CRASH_ENV] = str(crash_spec)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        os.environ.pop(R.CRASH_ENV, None)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    y, x = np.mgrid[0:64, 0:64]
    rng = np.random.default_rng(1)
    for i in range(3):
        im = np.stack([(x * 4 + 40 * i) % 256, y * 4, (x + y) * 2], -1)
        im = np.clip(im + rng.integers(-8, 9, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(d / f"img{i}.png")
    return d


def _parse(argv):
    p = argparse.ArgumentParser(prog="gensemcom")
    H.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["eval", *argv])


def _csv_cells(path):
    """rows.csv without the timing columns (and the timings in ``extra``)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for t in H.TIMING_FIELDS:
            r.pop(t)
        r["extra"] = {k: v for k, v in json.loads(r["extra"]).items() if not k.endswith(("_s", "_ms"))}
    return rows


@pytest.fixture(scope="module")
def local_run(images, tmp_path_factory):
    """The local run, with torch on one thread as each Ray task (float32 sums depend on the threads)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("local")
        res = H.evaluate(H.config_from_args(_parse(ARGS + ["--images", str(images), "--out", str(out)])))
    finally:
        torch.set_num_threads(before)
    return out, res


def test_ray_sweep_equals_local_run_and_resumes(cluster, images, local_run, tmp_path, capsys):
    local_out, local = local_run
    out = tmp_path / "ray"
    argv = ARGS + ["--images", str(images), "--out", str(out), "--ray", "auto"]
    assert H.run_eval(_parse(argv)) == 0
    printed = capsys.readouterr().out
    assert f"{N_CELLS} rows run" in printed and "on ray: 1 node(s), 2 CPU" in printed
    assert ray.is_initialized()  # the test's cluster is kept: the run did not start it
    rows = json.loads((out / "rows.json").read_text())
    assert len(rows) == len(local["rows"]) >= N_CELLS
    assert H.comparable_rows(rows) == H.comparable_rows(json.loads((local_out / "rows.json").read_text()))
    assert json.loads((out / "summary.json").read_text()) == json.loads((local_out / "summary.json").read_text())
    assert (out / "summary.txt").read_text() == (local_out / "summary.txt").read_text()
    assert _csv_cells(out / "rows.csv") == _csv_cells(local_out / "rows.csv")  # sorted as the local run's
    assert {p.name for p in out.iterdir()} == {p.name for p in local_out.iterdir()}

    res = H.evaluate(H.config_from_args(_parse(argv + ["--resume"])), ray="auto")
    assert (res["new_rows"], res["skipped_rows"], res["failed_cells"]) == (0, N_CELLS, [])
    assert len(res["rows"]) == len(local["rows"])

    # a dropped row is run again on the cluster, and only that one
    lines = (out / "rows.csv").read_text().splitlines(keepends=True)
    (out / "rows.csv").write_text("".join(lines[:-1]))
    res = H.evaluate(H.config_from_args(_parse(argv + ["--resume"])), ray="auto")
    assert (res["new_rows"], res["skipped_rows"]) == (1, N_CELLS - 1)
    assert _csv_cells(out / "rows.csv") == _csv_cells(local_out / "rows.csv")


def test_a_killed_worker_s_cell_is_retried_and_reported(cluster, images, local_run, crash_spec, tmp_path, capsys):
    local_out, local = local_run
    victim = H.Cell("deepjscc", "deepjscc", "auto", "auto", str(images / "img1.png"), 20.0)
    crash_spec.write_text(victim.describe())
    out = tmp_path / "crash"
    assert H.run_eval(_parse(ARGS + ["--images", str(images), "--out", str(out), "--ray", "auto"])) == 0
    printed = capsys.readouterr().out
    assert os.path.exists(str(crash_spec) + ".done")  # the worker did exit while running that cell
    assert "1 cell(s) needed more than one attempt" in printed and f"{victim.describe()}: 2 attempts" in printed
    assert H.comparable_rows(json.loads((out / "rows.json").read_text())) == H.comparable_rows(local["rows"])
    crash_spec.unlink()


def test_a_failing_cell_is_reported_not_dropped(cluster, images, tmp_path, capsys):
    out = tmp_path / "bad"
    # an LDPC backend that does not exist: every cell raises on the workers (a real error, not retried)
    argv = ARGS + ["--images", str(images), "--out", str(out), "--limit", "1", "--backend", "no-such-backend"]
    assert H.run_eval(_parse(argv + ["--ray", "auto"])) == 1
    printed = capsys.readouterr().out
    assert "4 cell(s) failed (not in the rows; --resume runs them again):" in printed
    assert "no-such-backend" in printed and "attempts" not in printed
    assert H.read_rows_csv(out / "rows.csv", ["psnr", "ssim"]) == []


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setattr(R, "ray", None)
    with pytest.raises(H.EvalError, match=r"pip install \.\[ray\]"):
        R.connect("auto")
