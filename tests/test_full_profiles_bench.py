"""``bench/full_profiles.py`` (issue 18) runs its stages on the published architectures with
random weights: two cheap stages here (SegFormer-B0 and CLIP ViT-B/16, a few seconds each on a
CPU), each in its own process, and the README's table made from the results. The timings
themselves are the benchmark's business, not a test's."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("torch")
pytest.importorskip("diffusers")

BENCH = ROOT / "bench" / "full_profiles.py"


@pytest.mark.slow
def test_two_stages_run_and_make_the_table(tmp_path):
    out = tmp_path / "fp.json"
    r = subprocess.run([sys.executable, str(BENCH), "--stages", "task_adaptive.segment,gened_sc.clip", "--threads",
                        "1", "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["device"].startswith(("CPU", "NVIDIA")) and rep["dtype"] in ("float32", "float16")
    rows = {row["stage"]: row for row in rep["rows"]}
    assert set(rows) == {"task_adaptive.segment", "gened_sc.clip"}
    for row in rows.values():
        assert "error" not in row, row
        assert row["time_s"] > 0
        assert (row.get("peak_rss_mib") or row.get("peak_gpu_mib")) > 100  # the weights are really there
    assert rows["task_adaptive.segment"]["size"] == "384x512" and rows["gened_sc.clip"]["size"] == 224
    table = subprocess.run([sys.executable, str(BENCH), "--markdown", "--json", str(out)], capture_output=True,
                           text=True, timeout=120, cwd=ROOT)
    assert table.returncode == 0
    lines = [ln for ln in table.stdout.splitlines() if ln.startswith("| task_adaptive") or ln.startswith("| gened_sc")]
    assert len(lines) == 2 and rep["device"] in table.stdout


def test_unknown_stage_is_refused():
    r = subprocess.run([sys.executable, str(BENCH), "--stages", "nope"], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 2 and "nope" in r.stderr
