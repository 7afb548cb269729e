"""The benchmark's ceiling: a bare Bottle route answering the 35-byte GIF, on one of three HTTP servers.

Usage: python bench/baseline.py SERVER PORT, SERVER one of
  bjoern    the C event loop (the machine's ceiling: SPEC §9's ratios are taken against it)
  granian   granian's Rust worker run in this process, as `prisme-lite serve` runs it
  waitress  waitress, 8 threads pinned to one CPU (the former server), for reference
It binds 127.0.0.1:PORT itself, prints "ready" and serves until SIGTERM.

granian and waitress are served by `prisme_lite.run_http_server(app, sock, config)` where that function exists, so
the bare route runs on exactly the server code of `prisme-lite serve`; until then by `serve_granian` below (the
prototype's in-process worker) and waitress's own `serve`.
"""

import os
import signal
import socket
import sys
import threading

import bottle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import prisme_lite  # noqa: E402  (the same GIF, the same pinning, the same server code)

app = bottle.Bottle()


@app.route("/api/v1/noscript/events/pageviews")
def pixel() -> bytes:
    for name, value in prisme_lite.GIF_HEADERS.items():
        bottle.response.set_header(name, value)
    return prisme_lite.GIF


def serve_granian(wsgi_app, sock: socket.socket, blocking_threads: int = 1) -> None:
    """granian's WSGI worker in this process on `sock` (one Rust runtime thread, `blocking_threads` Python
    threads), until SIGTERM or SIGINT: the prototype /tmp/proto/g.py, until prisme_lite.run_http_server lands."""
    from granian._futures import _new_cbscheduler
    from granian._granian import SocketHolder, WorkerSignal, WSGIWorker
    from granian._loops import loops
    from granian.http import HTTP1Settings
    from granian.wsgi import _callback_wrapper

    stop, done = WorkerSignal(), threading.Event()
    stop.add_cb(done.set)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    http1 = HTTP1Settings(header_read_timeout=10_000, keep_alive=True, max_buffer_size=65536, pipeline_flush=False)
    worker = WSGIWorker(
        1, (None, SocketHolder(sock.fileno(), False, 1024)), None, threads=1, blocking_threads=512,
        py_threads=blocking_threads, py_threads_idle_timeout=30, backpressure=128, http_mode="1", http1_opts=http1,
    )  # fmt: skip
    loop = loops.get("auto")
    worker.serve_mtr(_new_cbscheduler(loop, _callback_wrapper(wsgi_app, {}, None), impl_asyncio=False), loop, stop)
    done.wait()


def main() -> None:
    server, port = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    print("ready", flush=True)
    run_http_server = getattr(prisme_lite, "run_http_server", None)
    if server == "bjoern":
        import bjoern

        sock.setblocking(False)
        bjoern.server_run(sock, app)
    elif run_http_server is not None:
        threads = {"waitress": 8}.get(server)  # granian: the server's own default of Python threads
        flags = {"server": server, "host": "127.0.0.1", "port": port, **({"threads": threads} if threads else {})}
        config = prisme_lite.load_config(flags, environ={})
        if server == "waitress" and config["pin_cpu"]:
            prisme_lite.pin_to_one_cpu()
        run_http_server(app, sock, config)
    elif server == "granian":
        serve_granian(app, sock)
    else:
        import waitress

        prisme_lite.pin_to_one_cpu()
        waitress.serve(app, sockets=[sock], threads=8, _quiet=True)


if __name__ == "__main__":
    main()
