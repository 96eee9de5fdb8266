"""Serving the gateway: uvicorn on a socket bound here (so `--port 0` can report the port it got), on
a thread of its own, with gRPC channels to the service and a stop that drains and closes them.

    gw = GatewayServer.start("127.0.0.1:50051", host="127.0.0.1", port=0)
    print(gw.url)      # http://127.0.0.1:<port>
    gw.stop()
"""

from __future__ import annotations

import math
import socket
import threading
import time

import grpc
import uvicorn

from server.gateway.app import MAX_BODY_BYTES, create_app

STARTUP_POLL_S = 0.02
MAX_HEAD_BYTES = 2 * 1024 * 1024


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class GatewayServer:
    """uvicorn serving the gateway app on a thread; `stop()` finishes in-flight requests, then closes."""

    def __init__(
        self,
        grpc_target: str,
        sock: socket.socket,
        default_timeout_s: float,
        grace_period_s: float,
        connections: int,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", MAX_BODY_BYTES),
            ("grpc.max_send_message_length", MAX_BODY_BYTES),
            # Without it, channels to one target share one subchannel, hence one connection.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        self.channels = [grpc.insecure_channel(grpc_target, options=options) for _ in range(connections)]
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.host, self.port = host, port
        app = create_app(self.channels, default_timeout_s=default_timeout_s)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, math.ceil(grace_period_s)),
            # A request head may be long: up to 100 repeated metric keys of 4 KiB each in the query.
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http-gateway", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def start(
        cls,
        grpc_target: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_timeout_s: float = 30.0,
        grace_period_s: float = 10.0,
        connections: int = 1,
    ) -> GatewayServer:
        """Bind, start serving on a thread, and return once uvicorn accepts connections.

        `connections`: gRPC connections to the service, used in turn (more than one lets the
        kernel spread HTTP calls over the processes of `serve --workers N`).
        """
        gateway = cls(grpc_target, bind(host, port), default_timeout_s, grace_period_s, connections)
        gateway._thread.start()
        while not gateway._server.started:
            if not gateway._thread.is_alive():
                gateway._close_channels()
                raise RuntimeError("the HTTP gateway failed to start (see the log)")
            time.sleep(STARTUP_POLL_S)
        return gateway

    def _run(self) -> None:
        # uvicorn installs no signal handlers off the main thread: the caller owns SIGTERM.
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._close_channels()
        self._sock.close()

    def _close_channels(self) -> None:
        for channel in self.channels:
            channel.close()
