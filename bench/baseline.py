"""The benchmark's baseline: a bare Bottle route answering the 35-byte GIF, served exactly as `prisme-lite serve`
serves (waitress, the same threads, pinned to one CPU). Usage: python bench/baseline.py PORT THREADS PIN."""

import os
import sys

import bottle
import waitress

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prisme_lite  # noqa: E402  (the same GIF, the same pinning)

app = bottle.Bottle()


@app.route("/api/v1/noscript/events/pageviews")
def pixel() -> bytes:
    for name, value in prisme_lite.GIF_HEADERS.items():
        bottle.response.set_header(name, value)
    return prisme_lite.GIF


if __name__ == "__main__":
    port, threads, pin = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "true"
    if pin:
        prisme_lite.pin_to_one_cpu()
    print("ready", flush=True)
    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, _quiet=True)
