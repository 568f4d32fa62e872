"""`tenantflow serve` opens its OpenFlow socket before loading anything (controller/serve.py
EarlyListener): a switch that connects during start-up waits in the accept queue and is served
by os-ken's own StreamServer once it starts, instead of being refused and retrying a second later."""
from __future__ import annotations

import socket
import threading

from os_ken.lib import hub

from controller.serve import EarlyListener


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_switch_connecting_during_start_up_is_served_by_oskens_server():
    port = _free_port()
    original = hub.listen
    early = EarlyListener("127.0.0.1", port)
    try:
        switch = socket.create_connection(("127.0.0.1", port), timeout=2)  # accepted by the kernel already
        switch.sendall(b"hello")
        served = threading.Event()
        got: list[bytes] = []

        def handle(sock, _addr):
            got.append(sock.recv(5))
            served.set()

        server = hub.StreamServer(("127.0.0.1", port), handle)  # what os-ken's OpenFlowController builds
        assert early.taken.is_set() and server.server.getsockname()[1] == port
        threading.Thread(target=server.serve_forever, daemon=True).start()
        assert served.wait(5) and got == [b"hello"]
        switch.close()
        other = _free_port()  # any other address still gets a socket of its own
        extra = hub.listen(("127.0.0.1", other))
        assert extra.getsockname()[1] == other
        extra.close()
    finally:
        hub.listen = original
        early.close()


def test_closed_before_oskens_server_takes_it_refuses_again():
    port = _free_port()
    original = hub.listen
    try:
        early = EarlyListener("127.0.0.1", port)
        early.close()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        assert refused and not early.taken.is_set()
    finally:
        hub.listen = original
