"""Running the app under uvicorn: the socket bound first (so ``--port 0`` reports the port it got), one process or
several workers sharing it, and SIGTERM as a clean stop.

On SIGTERM (or Ctrl-C) uvicorn stops accepting, lets in-flight requests finish, then runs the app's shutdown,
where the batcher scores whatever is still queued. uvicorn then raises the signal again so that the process dies
of it; the handler installed here turns that into a normal return, so a drained server exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable

from zoo.serve.options import OPTIONS_ENV

LOG_LEVEL = "warning"   # uvicorn's own lines (its start-up banner names a socket, not the URL); errors stay


def run(app, *, host: str, port: int, workers: int = 1, worker_options: str | None = None,
        on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` (an ASGI app; with ``workers`` > 1, ignored: each worker builds its own from
    ``worker_options``) on ``host``:``port`` until SIGTERM or SIGINT; ``on_ready`` gets the URL actually bound."""
    import uvicorn

    if workers > 1:
        os.environ[OPTIONS_ENV] = worker_options or ""
        config = uvicorn.Config("zoo.serve.app:app_from_environment", factory=True, host=host, port=port,
                                workers=workers, log_level=LOG_LEVEL, timeout_graceful_shutdown=None)
    else:
        config = uvicorn.Config(app, host=host, port=port, log_level=LOG_LEVEL, timeout_graceful_shutdown=None)
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # The socket uvicorn binds says protocol 0, so asyncio does not set TCP_NODELAY on the connections it
        # accepts, and Nagle's algorithm holds each answer until the client's delayed ACK (40 ms on Linux).
        # Accepted connections inherit the option from the listening socket.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(config.backlog)   # connections made from now on wait in the backlog until the server takes them
    bound_host, bound_port = sock.getsockname()[:2]
    if on_ready is not None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        on_ready(f"http://{shown}:{bound_port}")
    server = uvicorn.Server(config)

    def stop(signum, frame) -> None:
        # Before uvicorn takes the signals over: stop as soon as it starts. After its graceful shutdown, when it
        # raises the signal again: nothing more to do, and the process exits normally.
        server.should_exit = True

    # Signals can be handled only on the main thread (an embedding program may run this on another).
    on_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)} if on_main else {}
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            try:
                supervisor = Multiprocess(config, sockets=[sock])
            except TypeError:   # older uvicorn names the function each worker runs
                supervisor = Multiprocess(config, target=server.run, sockets=[sock])
            supervisor.run()
        else:
            server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
