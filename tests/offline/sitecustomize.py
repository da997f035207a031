"""Loaded by every Python process started with this folder on PYTHONPATH (tests/test_offline.py): any attempt to
resolve a host name or open a network connection is written to $CATTLEPOSE_NET_LOG and refused."""

import os
import socket
import traceback

_LOG = os.environ.get("CATTLEPOSE_NET_LOG")


def _refuse(what: str, *args: object) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"pid {os.getpid()}: {what}{args!r}\n{''.join(traceback.format_stack(limit=8))}\n")
    raise OSError(f"network blocked by tests/offline/sitecustomize.py: {what}")


def _blocked(name: str):
    def f(*args: object, **kwargs: object) -> None:
        _refuse(name, *args)

    return f


socket.getaddrinfo = _blocked("getaddrinfo")
socket.gethostbyname = _blocked("gethostbyname")
socket.create_connection = _blocked("create_connection")
_connect = socket.socket.connect


def _socket_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    _connect(self, address)  # Unix sockets (multiprocessing) stay allowed: they never leave the machine


socket.socket.connect = _socket_connect
socket.socket.connect_ex = lambda self, address: _socket_connect(self, address) or 0
