"""A short run of bench/soak (SPEC §8, §9): a steady mixed load of every API family from a second process on
loopback, memory sampled every second. The full 10-minute run, whose memory must plateau, is `bench/soak`; this
one is bounded for CI and checks what holds from the first second: nothing acknowledged is lost, no request
fails, the process stays under the memory target and stops cleanly on SIGTERM."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.reliability]

SOAK = Path(__file__).parent.parent / "bench" / "soak.py"


def test_a_short_soak_loses_nothing_and_stays_under_80_mb(tmp_path):
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
    assert report["peak_rss_mb"] < 80
    assert report["server_exit_code"] == 0
