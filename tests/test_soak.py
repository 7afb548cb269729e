"""A short run of bench/soak (SPEC §8, §9): a steady mixed load of every API family from a second process on
loopback, memory sampled every second. The full 10-minute run, whose memory must plateau, is `bench/soak`; this
one is bounded for CI and checks what holds from the first second: nothing acknowledged is lost, no request
fails, memory stays bounded and the process stops cleanly on SIGTERM.

Memory: SPEC §9's target (80 MB under load) is a benchmark's, judged by bench/run and bench/soak: a 30 s run's peak
depends on how far the writer falls behind, which is how busy the machine is (73 MB quiet, 80.8 MB in one CI run,
2026-12-02). This test holds a bound that no load of this size reaches without a leak: 1.6 times the quiet peak."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.reliability]

SOAK = Path(__file__).parent.parent / "bench" / "soak.py"
MEMORY_BOUND_MB = 120  # a leak's bound, not the target (see above)


def test_a_short_soak_loses_nothing_and_stays_bounded_in_memory(tmp_path):
    report_path = tmp_path / "soak.json"
    finished = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "30", "--rate", "150", "--json", str(report_path)],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert report_path.exists(), finished.stderr
    report = json.loads(report_path.read_text())
    assert report["lost"] == dict.fromkeys(("pageview", "custom", "counter", "server", "widget"), 0)
    assert all(report["load"]["acked"].values()), report["load"]  # every family was exercised
    assert set(report["load"]["answers"]) <= {"200", "202"}, report["load"]["answers"]
    load = report["load"]
    assert sum(load["answers"].values()) - load["warm_up_requests"] >= 150 * 30 * 0.9  # the steady load kept its rate
    assert len(report["samples"]) >= 28  # one sample a second
    assert report["peak_rss_mb"] < MEMORY_BOUND_MB
    assert report["server_exit_code"] == 0
