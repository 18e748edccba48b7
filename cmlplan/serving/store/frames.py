"""Length-prefixed pickle frames between the proxy and its store writer process (a private socket pair)."""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

LENGTH = struct.Struct(">I")


def encode(value: Any) -> bytes:
    payload = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(payload)) + payload


def write_frame(sock: socket.socket, value: Any) -> None:
    sock.sendall(encode(value))


def read_frame(sock: socket.socket) -> Any:
    """One frame from a blocking socket; EOFError when the peer closed first."""
    (size,) = LENGTH.unpack(_read_exactly(sock, LENGTH.size))
    return pickle.loads(_read_exactly(sock, size))


def split(buffer: bytearray) -> tuple[list[bytes], int]:
    """The complete frames' payloads at the start of buffer, and how many bytes they took."""
    payloads, offset, end = [], 0, len(buffer)
    while end - offset >= LENGTH.size:
        (size,) = LENGTH.unpack_from(buffer, offset)
        if end - offset - LENGTH.size < size:
            break
        payloads.append(bytes(buffer[offset + LENGTH.size : offset + LENGTH.size + size]))
        offset += LENGTH.size + size
    return payloads, offset


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the peer closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
