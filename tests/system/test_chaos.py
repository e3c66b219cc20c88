"""The combined-fault harness (tests/chaos.py) in its quick mode, as part of the suite.

One fixed seed, short worker timings and a short circuit (about 75 s on a 2-core
machine; CI's time budget). More seeds: ``python -m tests.chaos --quick --seeds 4``; the
long run is ``python -m tests.chaos --seeds 20 --long``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

QUICK_SEEDS = (1,)


def test_quick_chaos_seeds_lose_nothing_bury_nothing_alive_and_keep_order() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--quick", "--seed", str(QUICK_SEEDS[0]),
         "--seeds", str(len(QUICK_SEEDS))],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    figure = lines[-1]
    fields = dict(item.split("=") for item in figure.split())
    assert list(fields) == ["seeds", "notifications", "lost", "wrongly_dead",
                            "order_violations", "max_lateness_s", "dup_other_id"], figure
    assert fields["seeds"] == str(len(QUICK_SEEDS)), figure
    # 25 recordings x 6 events x 6 destinations per seed
    assert int(fields["notifications"]) == 900 * len(QUICK_SEEDS), figure
    summary = [line for line in lines if line.startswith(("seed", "  WRONG", "  LOST"))]
    report = "\n".join(summary[:40])
    assert fields["lost"] == "0", report
    assert fields["wrongly_dead"] == "0", report
    assert fields["order_violations"] == "0", report
    assert fields["dup_other_id"] == "0", report
    assert float(fields["max_lateness_s"]) <= 120.0, report
    assert proc.returncode == 0, report
