"""The benchmark's ceiling: a bare Bottle route answering the 35-byte GIF, on one of three HTTP servers.

Usage: python bench/baseline.py SERVER PORT, SERVER one of
  bjoern    the C event loop (the machine's ceiling: SPEC §9's ratios are taken against it)
  granian   granian's Rust worker in this process, exactly as `prisme-lite serve` runs it (its default threads)
  waitress  waitress, 8 threads pinned to one CPU (its best measured settings), for reference
It listens on 127.0.0.1:PORT as `prisme-lite serve` does, prints "ready" and serves until SIGTERM. granian and
waitress are served by `prisme_lite.run_http_server`, the server code of `prisme-lite serve` itself.
"""

import os
import sys

import bottle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prisme_lite  # noqa: E402  (the same GIF, the same socket, the same server code)

app = bottle.Bottle()


@app.route("/api/v1/noscript/events/pageviews")
def pixel() -> bytes:
    for name, value in prisme_lite.GIF_HEADERS.items():
        bottle.response.set_header(name, value)
    return prisme_lite.GIF


def main() -> None:
    server, port = sys.argv[1], int(sys.argv[2])
    sock = prisme_lite.listen("127.0.0.1", port)
    print("ready", flush=True)
    if server == "bjoern":
        import bjoern

        sock.setblocking(False)
        bjoern.server_run(sock, app)
        return
    flags = {"server": server, "host": "127.0.0.1", "port": port}
    if server == "waitress":
        flags.update(threads=8, pin_cpu=True)
    config = prisme_lite.load_config(flags, environ={})
    if config["pin_cpu"]:
        prisme_lite.pin_to_one_cpu()
    prisme_lite.run_http_server(app, sock, config)


if __name__ == "__main__":
    main()
