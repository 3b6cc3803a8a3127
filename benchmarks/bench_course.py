"""How long the whole smoke course takes (`tcv run --profile smoke`), against its budget.

The smoke profile promises the whole course in ``course_minutes`` (10) on 2 CPU cores, and
notebooks 04-06 within 6 minutes. Wall-clock seconds depend on the machine as much as on the
course, so this prints them beside a baseline measured in the same process: the machine's
matrix-multiplication speed (GFLOP/s, the operation training spends its time on), and the
course's seconds times that speed (its work in "GFLOP-seconds", comparable across machines).
The last lines are the ratios to the budgets (<= 1 meets them).

    python benchmarks/bench_course.py [--out runs-bench]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tcv_helpers.compute import measure_matmul_gflops
from tcv_helpers.config import PROFILES

MODELING = ("04_model_selection.ipynb", "05_training.ipynb", "06_evaluation.ipynb")
MODELING_BUDGET_S = 360.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="Keep the run here (default: temp).")
    args = parser.parse_args()
    budget = PROFILES["smoke"].course_minutes * 60.0
    gflops = measure_matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "runs"
        command = [sys.executable, "-c", "from tcv_helpers.cli import app; app()", "run"]
        command += ["--profile", "smoke", "--out", str(out), "--no-progress"]
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)
        run_dir = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    for entry in summary["notebooks"]:
        print(f"{entry['notebook']:<36} {entry['status']:<6} {entry['seconds']:7.1f} s")
    total = summary["seconds"]
    modeling = sum(e["seconds"] for e in summary["notebooks"] if e["notebook"] in MODELING)
    print(f"machine_gflops={gflops:.0f} course_seconds={total:.0f} budget_seconds={budget:.0f}")
    print(f"course_gflop_seconds={total * gflops:.0f} modeling_seconds={modeling:.0f}")
    print(f"ratio_to_budget={total / budget:.2f}")
    print(f"modeling_ratio_to_budget={modeling / MODELING_BUDGET_S:.2f}")


if __name__ == "__main__":
    main()
