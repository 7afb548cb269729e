"""prisme-lite import bench (python bench/import_log.py): lines/s of `prisme-lite import` on a generated log.

Writes a combined-format access log of LINES lines (default 200,000) over a week: 2,000 visitors (IP and one of 40
user agents) reading 300 pages in visits of a few pages, with the requests a real log has beside them (--assets,
3 by default, per page, a bot in ten lines, a few 404s and POSTs); then imports it into a fresh database with the
real command and prints its summary and the lines/s (wall time of the whole command, Python start included).
`--gzip` compresses the log first. Runs alone on the machine for a figure worth quoting.
"""

from __future__ import annotations

import argparse
import gzip
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
BROWSERS = [
    f"Mozilla/5.0 ({system}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"
    for system in ("X11; Linux x86_64", "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7",
                   "Linux; Android 14; Pixel 8")
    for major in range(110, 120)
]  # fmt: skip
BOTS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "curl/8.5.0"]


def generate(path: Path, lines: int, compress: bool, assets: int = 3) -> None:
    rng = random.Random(7)
    start = int(time.time()) - 8 * 86_400
    visitors = [(f"198.51.{rng.randrange(256)}.{rng.randrange(256)}", rng.choice(BROWSERS)) for _ in range(2_000)]
    pages = [f"/posts/{n}-a-title-of-some-length" for n in range(300)]
    out, t, written = [], start, 0
    while written < lines:
        ip, agent = rng.choice(visitors)
        referrer = rng.choice(["-", "https://www.google.com/", "https://news.example/item?id=3"])
        for _ in range(rng.randint(1, 4)):
            t += rng.randint(1, 3)
            when = time.gmtime(t)
            stamp = f"{when.tm_mday:02}/{MONTHS[when.tm_mon - 1]}/{time.strftime('%Y:%H:%M:%S', when)} +0000"
            page = rng.choice(pages)
            if rng.random() < 0.1:
                out.append(f'66.249.66.1 - - [{stamp}] "GET {page} HTTP/1.1" 200 5120 "-" "{rng.choice(BOTS)}"')
            status = 404 if rng.random() < 0.02 else 200
            out.append(f'{ip} - - [{stamp}] "GET {page} HTTP/1.1" {status} 5120 "{referrer}" "{agent}"')
            files = rng.sample(["/assets/site.css", "/assets/app.js", "/img/logo.png", "/favicon.ico"], assets)
            page_url = f"https://blog.example.com{page}"
            out.extend(f'{ip} - - [{stamp}] "GET {name} HTTP/1.1" 200 900 "{page_url}" "{agent}"' for name in files)
            referrer = f"https://blog.example.com{page}"
        written = len(out)
    data = ("\n".join(out[:lines]) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--assets", type=int, default=3, choices=range(5), help="asset requests per page (default 3)")
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("prisme-lite"))]
    with tempfile.TemporaryDirectory() as tmp:
        log, db = Path(tmp) / ("access.log.gz" if args.gzip else "access.log"), Path(tmp) / "bench.db"
        generate(log, args.lines, args.gzip, args.assets)
        subprocess.run([*command, "init", "--db", str(db)], check=True, capture_output=True)
        subprocess.run([*command, "origins", "add", "blog.example.com", "--db", str(db)], check=True,
                       capture_output=True)  # fmt: skip
        started = time.monotonic()
        done = subprocess.run([*command, "import", str(log), "--site", "blog.example.com", "--db", str(db)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        seconds = time.monotonic() - started
        print(done.stdout, end="")
        print(f"{args.lines:,} lines in {seconds:.2f} s: {args.lines / seconds:,.0f} lines/s"
              f" ({log.stat().st_size / 1e6:.1f} MB {'gzipped ' if args.gzip else ''}log)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
