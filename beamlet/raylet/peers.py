"""The raylet's TCP side: authenticated connections to and from peer raylets.

Every raylet listens on (node ip, a free port); the port is in its GCS node record
(`peer_port`).  A connection is useless until both ends proved they hold the
cluster token (the Redis password): the listener sends a random nonce, the
connector answers with HMAC(token, nonce) and a nonce of its own, the listener
answers that one.  Before that, at most one small handshake frame is read and it
is only msgpack-decoded (never unpickled); a wrong answer closes the connection.
Messages: protocol.py, "raylet <-> raylet".
"""
import asyncio
import hashlib
import hmac
import os
import socket
import struct

import msgpack

from .._private import config
from .._private import protocol as P

_len = struct.Struct("<I")


class PeerAuthError(ConnectionError):
    pass


def proof(token: bytes, nonce: bytes) -> bytes:
    return hmac.new(token, nonce, hashlib.sha256).digest()


def _decode(body):
    msg = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], int):
        raise PeerAuthError("malformed message")
    return msg


# --- stream (asyncio StreamReader/Writer) side: the listener and control links -----
def _check_size(n, max_size):
    cap = config.MAX_FRAME_BYTES if max_size is None else max_size
    if n > cap:
        raise PeerAuthError(f"a frame of {n} bytes is larger than the maximum of {cap} "
                            f"bytes" + ("" if max_size else " (BEAMLET_MAX_FRAME_BYTES)"))


async def read_frame(reader, max_size=None):
    """One frame of at most `max_size` bytes (default: config.MAX_FRAME_BYTES)."""
    (n,) = _len.unpack(await reader.readexactly(4))
    _check_size(n, max_size)
    return _decode(await reader.readexactly(n))


async def accept_handshake(reader, writer, token: bytes, timeout=10.0) -> str:
    """Listener side; returns the peer's node id (hex) or raises PeerAuthError."""
    nonce = os.urandom(32)
    writer.write(P.frame([P.PEER_CHALLENGE, P.VERSION, nonce]))
    msg = await asyncio.wait_for(read_frame(reader, P.PEER_HANDSHAKE_MAX), timeout)
    if (len(msg) != 4 or msg[0] != P.PEER_AUTH or not isinstance(msg[1], bytes)
            or not isinstance(msg[3], bytes)
            or not hmac.compare_digest(msg[1], proof(token, nonce))):
        raise PeerAuthError("the peer did not prove it holds the cluster token")
    writer.write(P.frame([P.PEER_AUTH_OK, proof(token, msg[3])]))
    return str(msg[2])


async def connect(host, port, token: bytes, node_hex: str, timeout=10.0):
    """Open an authenticated stream connection to a peer raylet."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        c_nonce = os.urandom(32)
        msg = await asyncio.wait_for(read_frame(reader, P.PEER_HANDSHAKE_MAX), timeout)
        if len(msg) != 3 or msg[0] != P.PEER_CHALLENGE or msg[1] != P.VERSION:
            raise PeerAuthError(f"unexpected handshake from {host}:{port}")
        writer.write(P.frame([P.PEER_AUTH, proof(token, msg[2]), node_hex, c_nonce]))
        msg = await asyncio.wait_for(read_frame(reader, P.PEER_HANDSHAKE_MAX), timeout)
        if (len(msg) != 2 or msg[0] != P.PEER_AUTH_OK
                or not hmac.compare_digest(msg[1], proof(token, c_nonce))):
            raise PeerAuthError(f"{host}:{port} did not prove it holds the cluster token")
    except BaseException:
        writer.close()
        raise
    return reader, writer


# --- raw socket side: pulls receive straight into the arena (no extra copy) --------
async def sock_recv_exact_into(loop, sock, view):
    while len(view):
        n = await loop.sock_recv_into(sock, view)
        if n == 0:
            raise ConnectionError("the peer closed the connection")
        view = view[n:]


async def sock_read_frame(loop, sock, max_size=None):
    hdr = bytearray(4)
    await sock_recv_exact_into(loop, sock, memoryview(hdr))
    (n,) = _len.unpack(hdr)
    _check_size(n, max_size)
    body = bytearray(n)
    await sock_recv_exact_into(loop, sock, memoryview(body))
    return _decode(bytes(body))


async def sock_connect(loop, host, port, token: bytes, node_hex: str, timeout=10.0):
    """An authenticated non-blocking socket to a peer (for one pull)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        c_nonce = os.urandom(32)
        msg = await asyncio.wait_for(
            sock_read_frame(loop, sock, P.PEER_HANDSHAKE_MAX), timeout)
        if len(msg) != 3 or msg[0] != P.PEER_CHALLENGE:
            raise PeerAuthError(f"unexpected handshake from {host}:{port}")
        await loop.sock_sendall(sock, P.frame(
            [P.PEER_AUTH, proof(token, msg[2]), node_hex, c_nonce]))
        msg = await asyncio.wait_for(
            sock_read_frame(loop, sock, P.PEER_HANDSHAKE_MAX), timeout)
        if (len(msg) != 2 or msg[0] != P.PEER_AUTH_OK
                or not hmac.compare_digest(msg[1], proof(token, c_nonce))):
            raise PeerAuthError(f"{host}:{port} did not prove it holds the cluster token")
    except BaseException:
        sock.close()
        raise
    return sock
