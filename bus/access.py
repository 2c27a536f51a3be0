"""How a process gets onto the lanes: with a pass where the kernel already keeps the sockets private,
sealed (CURVE) where it cannot be sure of that.

Sealing every frame of every lane bought nothing the kernel does not give a
local socket: nobody but root reads another's unix socket, and the broker
learns each peer's uid and pid from the kernel (SO_PEERCRED: ZAP is told
``localhost:uid:gid:pid`` for an ipc connection). It cost half the broker's
CPU. What CURVE's handshake still gave, this keeps:

- *who the client is.* A process proves its key once, over the latch socket,
  which stays CURVE: the broker answers with a **pass**, a keyed hash of the
  identity, its public key and the uid and pid the kernel gives for that
  connection. The lanes use ZeroMQ's PLAIN mechanism with the identity and the
  pass; the broker's ZAP handler computes the pass again from the uid and pid
  of the lane's connection, so a pass works for no other process, and for no
  key the keys directory no longer holds. The broker keeps no table: the
  hash's key comes from its secret key, so a restarted broker admits the
  reconnecting lanes as the old one did.
- *who the server is.* CURVE's server key stopped anyone else binding a fake
  broker at the sockets' paths. Here the sockets live in a directory that only
  the broker's user can write, and every directory above it is writable only
  by root or that user, or sticky (so that no other user may rename what is
  in it): checked by the broker before it serves unsealed and by each client,
  against the broker's uid that came over the sealed latch. A path that fails
  the check is served sealed, as before.

PLAIN shows the pass in the clear to whoever holds the other end of the socket;
so a client connects unsealed only once that check holds.

``LENS_BUS_SEALED=1`` for the broker seals the lanes whatever the directory.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import time
from pathlib import Path
from typing import Callable

# hashlib's and hmac's own, without the import of OpenSSL's libcrypto that hashlib and hmac make (3.4 MiB in
# every process: tests/test_imports.py).
from _blake2 import blake2b
from _operator import _compare_digest

import msgpack
import zmq
from zmq.utils import z85

from bus.errors import BusError
from bus.keys import DEVELOPER, KeyPair, as_client, broker_public, own_pair
from bus.runtime import Runtime

log = logging.getLogger(__name__)

SEALED_ENV = "LENS_BUS_SEALED"
ASK_AGAIN_S = 0.5  # a question the broker did not answer (it died meanwhile) is asked again this often
REFUSED_AGAIN_S = 1.0  # a node asks again at most this often when the broker refuses its lanes or its answer
                       # cannot be used: a broker that refuses every time is not asked in a loop
_PERSON = b"lensos-lanes"  # this key's purpose, so that it is never the same as another use of the secret


def lane_key(secret_z85: bytes) -> bytes:
    """The key the broker computes its passes with, from its own CURVE secret key."""
    return blake2b(z85.decode(secret_z85), digest_size=32, person=_PERSON).digest()


def pass_for(key: bytes, identity: str, public_z85: bytes, uid: int, pid: int) -> bytes:
    """The pass of ``identity`` (holding ``public_z85``) from process ``pid`` of user ``uid``."""
    fields = b"\0".join([identity.encode(), public_z85, str(uid).encode(), str(pid).encode()])
    return blake2b(fields, key=key, digest_size=32).hexdigest().encode()


def same(a: bytes, b: bytes) -> bool:
    return _compare_digest(a, b)


def peer(address: str) -> tuple[int, int] | None:
    """(uid, pid) from the address libzmq gives for an ipc peer (``localhost:uid:gid:pid``), else None."""
    parts = address.split(":")
    if len(parts) != 4 or parts[0] != "localhost" or not all(p.isdigit() for p in parts[1:]):
        return None
    return int(parts[1]), int(parts[3])


def forced_sealed() -> bool:
    return os.environ.get(SEALED_ENV, "") not in ("", "0")


def unsafe(directory: Path, owner: int) -> str | None:
    """Why someone other than root or ``owner`` could put a socket at a path in ``directory``; None when
    nobody can. Each directory from / down must belong to root or ``owner``; each above ``directory`` may be
    writable by others only if it is sticky; ``directory`` itself by nobody else. A symbolic link on the
    way is followed, and the directory holding it must pass the same test."""
    trusted = (0, owner)
    for chain in (_down_to(Path(os.path.abspath(directory))), _down_to(Path(os.path.realpath(directory)))):
        for path in chain:
            try:
                info = os.lstat(path)  # a link is judged as itself; where it leads, further down the chain
            except OSError as exc:
                return f"{path}: {exc.strerror}"
            if info.st_uid not in trusted:
                return f"{path} belongs to uid {info.st_uid}"
            if stat.S_ISLNK(info.st_mode):
                continue
            others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            if others_write and (path == chain[-1] or not info.st_mode & stat.S_ISVTX):
                return f"{path} may be written by others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _down_to(path: Path) -> list[Path]:
    return [*reversed(path.parents), path]


def read_answer(answer, runtime: Runtime) -> tuple[bool, bytes | None]:
    """(sealed, pass) from the broker's answer on the latch; BusError when it cannot be used: malformed,
    or unsealed lanes in a directory someone besides the broker could put a socket in."""
    if type(answer) is not dict or type(answer.get("sealed")) is not bool or type(answer.get("uid")) is not int:
        raise BusError(f"a malformed answer from the broker on how to reach the lanes: {answer!r:.200}")
    if answer["sealed"]:
        return True, None
    if type(answer.get("pass")) is not bytes:
        raise BusError("the broker gave no pass for the lanes (does it hold this key?)")
    why = unsafe(runtime.socket_dir, answer["uid"])
    if why is not None:
        raise BusError(f"the broker offers unsealed lanes, but not only it can put a socket in "
                       f"{runtime.socket_dir}: {why}")
    return False, answer["pass"]


def enter(sock: zmq.Socket, sealed: bool, lane_pass: bytes | None, pair: KeyPair, server: bytes) -> None:
    """Make ``sock`` (before connect) ready to be let onto a lane."""
    if sealed:
        as_client(sock, pair, server)
    else:
        sock.plain_username = pair.identity.encode()
        sock.plain_password = lane_pass


def request(request_id: int) -> bytes:
    return msgpack.packb([request_id, "lanes"])


def authenticate(sock: zmq.Socket, runtime: Runtime, pair: KeyPair | None = None, timeout: float = 20.0) -> KeyPair:
    """A lane socket of one's own (a test's, a benchmark's), with ``pair`` (the developer's key if None),
    before connect: asks the broker how, and waits up to ``timeout`` seconds for its answer."""
    pair = pair or own_pair(runtime, DEVELOPER)
    server = broker_public(runtime)
    latch = sock.context.socket(zmq.DEALER)
    try:
        latch.setsockopt(zmq.LINGER, 0)
        as_client(latch, pair, server)
        latch.connect(runtime.latch_endpoint)
        latch.send_multipart([b"", request(1)])
        if not latch.poll(int(timeout * 1000)):
            raise BusError(f"no answer from the broker at {runtime.dir} on how to reach the lanes")
        _, body = latch.recv_multipart()
        enter(sock, *read_answer(msgpack.unpackb(body)[1], runtime), pair, server)
    finally:
        latch.close(0)
    return pair


class LaneAdmission:
    """One node's way onto the lanes: its question to the broker on the latch, and from the answer, how
    to ready each lane's socket (``enter``). The node does the sending and the connecting."""

    def __init__(self, name: str, runtime: Runtime, keys: Callable[[], tuple[KeyPair, bytes]]):
        self.name, self.runtime = name, runtime
        self._keys = keys  # the node's pair and the broker's public key, read when first needed
        self.enter: Callable[[zmq.Socket], None] | None = None  # once answered
        self.due: float | None = None  # while asking: when to send the question (again)
        self.error: str | None = None  # why the last answer could not be used
        self._id = 0
        self._refused_at = -REFUSED_AGAIN_S

    def ask(self, not_before: float = 0.0) -> None:
        if self.enter is None and self.due is None:
            self.due = not_before
            self._id += 1  # a new question: an answer to an earlier one may be out of date

    def question(self, now: float) -> bytes:
        """The question to send now; asked again, under the same id, at ``due`` unless answered."""
        self.due = now + ASK_AGAIN_S
        return request(self._id)

    def take(self, reply_id, answer) -> bool:
        """The broker's answer: True when it can be used (``enter`` is set and the lanes may connect)."""
        if reply_id != self._id or self.due is None:
            return False  # to a question asked before, or not asked
        try:
            sealed, lane_pass = read_answer(answer, self.runtime)
        except BusError as exc:
            if str(exc) != self.error:
                log.error("%s: %s", self.name, exc)
            self.error = str(exc)
            self.due, self._id = time.monotonic() + REFUSED_AGAIN_S, self._id + 1  # in case it is mended
            return False
        self.due = self.error = None
        pair, server = self._keys()
        self.enter = functools.partial(enter, sealed=sealed, lane_pass=lane_pass, pair=pair, server=server)
        return True

    def refused(self) -> None:
        """The broker refused a lane's handshake (it restarted sealed, unsealed or with another key): ask
        again how to enter."""
        self.enter = self.due = None  # a new question, whatever was asked before
        not_before, self._refused_at = self._refused_at + REFUSED_AGAIN_S, time.monotonic()
        self.ask(not_before)
