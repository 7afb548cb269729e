"""bench/compare: the pixel (and other ingest routes) of several versions of prisme_lite, in alternation.

Usage: bench/compare [--rounds 3] [--seconds 5] [--route pixel ...] [--server-flag=--threads=2 ...] REV [REV ...]
REV is a git revision (its prisme_lite.py and static/), `.` for the working tree, or a directory holding both
(a variant to try). Each round measures bjoern's
bare route (the ceiling, bench/baseline.py), then every version in turn, a fresh server on a database of its own
each time; the order of the versions alternates from round to round. Prints each version's median ratio to bjoern
in the same round, req/s, p99 and server CPU per request, with the spread over the rounds. On a shared machine,
only ratios taken in the same round are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROUTES = {
    # name: (method, path, headers, bodies)
    "pixel": ("GET", bench.PIXEL, {"User-Agent": bench.UA, "Referer": "http://localhost/blog/post"}, None),
    "pageview": ("POST", "/api/v1/events/pageviews",
                 {"User-Agent": bench.UA, "Origin": "http://localhost", "X-Prisme-Referrer": "http://localhost/a"},
                 None),
    "custom": ("POST", "/api/v1/events/custom/signup",
               {"User-Agent": bench.UA, "Origin": "http://localhost", "X-Prisme-Referrer": "http://localhost/a",
                "Content-Type": "application/json"}, ['{"plan": "pro"}']),
}  # fmt: skip


def checkout(rev: str, work: str) -> str:
    """A directory holding `rev`'s prisme_lite.py and static/ (the working tree's own for `.`; a directory that
    holds them is taken as it is)."""
    if rev == ".":
        return bench.ROOT
    if os.path.isdir(rev):
        return os.path.abspath(rev)
    directory = os.path.join(work, rev.replace("/", "_"))
    os.makedirs(directory, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", bench.ROOT, "archive", rev, "prisme_lite.py", "static"], capture_output=True, check=True
    ).stdout  # the module and what asset() reads beside it (static/schema.sql, the dashboard)
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
    return directory


def start(directory: str, db: str, flags: list[str]) -> bench.Server:
    cli = [sys.executable, os.path.join(directory, "prisme_lite.py")]
    subprocess.run([*cli, "init", "--db", db], capture_output=True, check=True)
    port = bench.free_port()
    argv = [*cli, "serve", "--db", db, "--port", str(port), "--access-log", "false", "--rate-limit", "0", *flags]
    return bench.Server(argv, port, banner=5)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--route", action="append", choices=sorted(ROUTES), help="default: pixel")
    parser.add_argument("--server-flag", action="append", default=[], help="passed to serve, e.g. --threads=2")
    args = parser.parse_args()
    routes = args.route or ["pixel"]
    work = tempfile.mkdtemp(prefix="prisme-compare-")
    versions = {rev: checkout(rev, work) for rev in args.revs}
    ceiling_script = bench.lua_script(
        os.path.join(work, "baseline.lua"), "GET", {"User-Agent": bench.UA, "Referer": "http://localhost/"}
    )
    results: dict[tuple[str, str], list[dict]] = {(rev, r): [] for rev in versions for r in routes}
    for n in range(args.rounds):
        baseline = bench.start_baseline("bjoern")
        ceiling = bench.measure(baseline, bench.PIXEL, ceiling_script, args.seconds, args.connections)
        baseline.stop()
        order = list(versions) if n % 2 == 0 else list(reversed(versions))
        for rev in order:
            for name in routes:
                method, path, headers, bodies = ROUTES[name]
                db = os.path.join(work, f"{len(os.listdir(work))}.db")
                server = start(versions[rev], db, args.server_flag)
                page_header = {"pixel": "Referer", "pageview": "X-Prisme-Referrer"}.get(name)
                script = bench.lua_script(
                    os.path.join(work, "route.lua"), method, headers, bodies, page_header=page_header
                )
                sql = "SELECT count(*) FROM events"
                result = bench.measure(server, path, script, args.seconds, args.connections, db, sql)
                server.stop()
                result["ratio"] = result["requests_per_s"] / ceiling["requests_per_s"]
                result["ceiling"] = ceiling["requests_per_s"]
                results[(rev, name)].append(result)
                print(f"round {n + 1} {rev} {name}: {result['requests_per_s']:.0f} req/s, ratio {result['ratio']:.3f}"
                      f" (bjoern {ceiling['requests_per_s']:.0f}), p99 {result['p99_ms']} ms,"
                      f" CPU {result['cpu_ms_per_request']} ms, lost {result['lost']}", file=sys.stderr)  # fmt: skip
    print(f"medians of {args.rounds} rounds, wrk -t1 -c{args.connections} -d{args.seconds}s, flags {args.server_flag}")
    print(f"{'version':24} {'route':9} {'ratio':>6} {'(min-max)':>13} {'req/s':>7} {'p99 ms':>7} {'CPU ms':>7} lost")
    summary = {}
    for (rev, name), done in results.items():
        ratios = [r["ratio"] for r in done]
        row = {
            "ratio": statistics.median(ratios),
            "requests_per_s": statistics.median(r["requests_per_s"] for r in done),
            "p99_ms": statistics.median(r["p99_ms"] for r in done),
            "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in done),
            "lost": sum(r["lost"] for r in done),
            "runs": done,
        }
        summary[f"{rev} {name}"] = row
        spread = f"{min(ratios):6.3f}-{max(ratios):.3f}"
        print(f"{rev:24} {name:9} {row['ratio']:6.3f} {spread} {row['requests_per_s']:7.0f} {row['p99_ms']:7.2f} "
              f"{row['cpu_ms_per_request']:7.3f} {row['lost']}")  # fmt: skip
    os.makedirs(os.path.join(bench.ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(bench.ROOT, "bench", "results", "compare.json"), "w") as file:
        json.dump(summary, file, indent=2)
    subprocess.run(["rm", "-rf", work], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
