"""The benchmark scripts whose numbers the README quotes run from a clone and print sane tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_sd_placement_prints_one_consistent_row_per_R(tmp_path):
    done = run_benchmark("sd_placement.py", "--data", "sample_data/brain_sim.h5", "--R", "4", "8", "--P", "4")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| 4 |", "| 8 |"))]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        correlations = [float(cell) for cell in cells[1:8]]  # six Spearman values and the ceiling
        assert all(-1.0 <= value <= 1.0 for value in correlations)
        assert float(cells[8]) > 0 and float(cells[9]) > 0  # rim / interior SD, median ratio
        above_2, above_3 = (float(cell.split("%")[0]) for cell in cells[10:12])
        assert 0.0 <= above_3 <= above_2 <= 100.0
    (tmp_path / "empty").mkdir()
    done = run_benchmark("sd_placement.py", "--data", str(tmp_path / "empty"))
    assert done.returncode != 0 and "no .h5 files" in done.stderr
