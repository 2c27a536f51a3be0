"""Who is who on the bus: CURVE key pairs, one per process, and where each side finds them.

The broker admits only public keys it holds (over CURVE on the latch socket,
and on the lanes with the pass that key earns there: bus.access); the name of
a key file is the identity the broker stamps on
each message from that key (see broker.gate). Key files are ZeroMQ certificates
in the format pyzmq's ``zmq.auth.certs`` reads (``NAME.key`` public,
``NAME.key_secret`` secret, 0600).

Where keys live:

- the provisioned keys directory: ``$LENS_KEYS_DIR`` (``/etc/lensos/keys`` on
  the board, written at image build by ``lens keys generate``), otherwise
  ``<runtime dir>/keys``: in development the first process to use the runtime
  directory creates the broker's and the developer's keys there, and ``lens up``
  adds one per process of the table;
- app keys, minted by appd for each app it starts: only the public half is a
  file (``<runtime dir>/appkeys/NAME.key``); the secret half reaches the app
  through a pipe (``$LENS_KEY_FD``) and is never written anywhere another app
  could read it; the broker's public key comes with it (``$LENS_BROKER_KEY``),
  since an app, a user of its own, may not read the keys directory. A name
  there never stands for a provisioned identity: an app called "shell" is
  not the shell.

A process finds its own secret key in this order: an explicit path;
``$LENS_KEY_FD`` (appd's pipe, read once); ``$LENS_KEY`` (set by ``lens up``
for each child); systemd's
``$CREDENTIALS_DIRECTORY/lensos.key`` (``LoadCredential=``, readable only by
the service's user); ``NAME.key_secret`` in the keys directory; the
developer's key (``developer``), which only development machines hold.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import NamedTuple

import zmq

from bus.errors import KeyMissing
from bus.runtime import Runtime

BROKER = "broker"
DEVELOPER = "developer"  # the developer's tools: may say anything, as anyone (development machines only)
BRIDGE = "bridge"  # the bus's edge to paired phones and laptops (lens bus bridge), provisioned with the rest
CREDENTIAL = "lensos.key"
ZAP_DOMAIN = b"lensos"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_KEY_LINE = re.compile(rb'^\s*(public|secret)-key\s*=\s*"([!-~]{40})"\s*$', re.MULTILINE)  # Z85: 40 chars


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def keys_dir(runtime: Runtime) -> Path:
    value = os.environ.get("LENS_KEYS_DIR")
    return Path(value) if value else runtime.path("keys")


def app_keys_dir(runtime: Runtime) -> Path:
    return runtime.path("appkeys")


def generate(directory: Path, names: list[str], *, replace: bool = False, dir_mode: int = 0o700) -> list[str]:
    """Write a key pair for each name not already there (all of them with ``replace``); the names written.

    ``dir_mode`` for a new directory: 0750 where the broker, another user on the board, must list it."""
    _check_names(names)  # before writing any: a half-provisioned directory helps nobody
    written = []
    for name in names:
        if not replace and (directory / f"{name}.key_secret").exists():
            continue
        secret = mint(directory, name, dir_mode)
        _write_whole(directory / f"{name}.key_secret", secret, 0o600)  # the owner's alone, from the first byte
        written.append(name)
    return written


def mint(directory: Path, name: str, dir_mode: int = 0o750) -> bytes:
    """A fresh pair for ``name`` of which only the public half is written (for the broker to admit);
    the secret half is returned as certificate text, for the caller to keep or hand over without a file."""
    _check_names([name])
    directory.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    forget(directory, name)  # unlinked, not overwritten: the directory's mtime tells the broker to reread
    _write_whole(directory / f"{name}.key", _certificate(public), 0o644)  # the broker, another user, reads it
    return _certificate(public, secret)


def _check_names(names: list[str]) -> None:
    wrong = [name for name in names if not valid_name(name)]
    if wrong:
        raise ValueError(f"{', '.join(map(repr, wrong))}: not a key name (lower-case letters, digits, - and _)")


def _write_whole(path: Path, data: bytes, mode: int) -> None:
    """``data`` at ``path`` with ``mode``, whole or not at all: nobody reads half a key."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _certificate(public: bytes, secret: bytes | None = None) -> bytes:
    """ZeroMQ's certificate text (what zmq.auth.certs reads)."""
    lines = ["# lensos CURVE certificate", "curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return ("\n".join(lines) + "\n").encode()


def forget(directory: Path, name: str) -> None:
    """Remove a key pair: the broker refuses it from its next handshake on."""
    for suffix in (".key", ".key_secret"):
        (directory / f"{name}{suffix}").unlink(missing_ok=True)


def ensure_development_keys(runtime: Runtime) -> None:
    """The broker's and the developer's keys in the runtime directory, once, whoever comes first.

    Only for the default keys directory: a board names its provisioned one (LENS_KEYS_DIR) and nothing
    is ever generated there behind its owner's back."""
    if os.environ.get("LENS_KEYS_DIR"):
        return
    directory = keys_dir(runtime)
    if (directory / f"{DEVELOPER}.key_secret").exists() and (directory / f"{BROKER}.key").exists():
        return
    directory.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two processes starting at once write one set of keys
        generate(directory, [BROKER, DEVELOPER])
    finally:
        os.close(fd)


class KeyPair(NamedTuple):
    identity: str
    public: bytes
    secret: bytes
    path: Path

    def __repr__(self) -> str:  # never the secret half, not even in a traceback's locals or a debug log
        return f"KeyPair(identity={self.identity!r}, public={self.public!r}, path={str(self.path)!r})"


def parse_certificate(text: bytes, where: str) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from certificate text: ours, or the files pyzmq's zmq.auth writes."""
    found = {kind: value for kind, value in _KEY_LINE.findall(text)}
    if b"public" not in found:
        raise KeyMissing(f"{where} is not a CURVE certificate (no public-key line)")
    return found[b"public"], found.get(b"secret")


def _read_certificate(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return parse_certificate(path.read_bytes(), str(path))
    except OSError as exc:
        raise KeyMissing(f"cannot read the key {path}: {exc.strerror}") from None


def load_pair(path: Path, identity: str | None = None) -> KeyPair:
    return _pair(_read_certificate(path), identity or path.name.removesuffix(".key_secret"), path)


def _pair(certificate: tuple[bytes, bytes | None], identity: str, path: Path) -> KeyPair:
    public, secret = certificate
    if not secret:
        raise KeyMissing(f"{path} holds no secret key (is it the public half, {identity}.key?)")
    return KeyPair(identity, public, secret, path)


def own_pair(runtime: Runtime, name: str, explicit: str | os.PathLike | None = None, *,
             fallback: bool = True) -> KeyPair:
    """This process's key pair (the order is in the module docstring; ``fallback=False``: never the
    developer's)."""
    if explicit:
        return load_pair(Path(explicit))
    if os.environ.get("LENS_KEY_FD") or _inherited:
        return _inherited_pair(name)
    if os.environ.get("LENS_KEY"):
        return load_pair(Path(os.environ["LENS_KEY"]))
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL).exists():
        return load_pair(Path(credentials) / CREDENTIAL, identity=name)
    ensure_development_keys(runtime)
    directory = keys_dir(runtime)
    for candidate in (name, DEVELOPER) if fallback else (name,):
        path = directory / f"{candidate}.key_secret"
        if valid_name(candidate) and path.exists():
            return load_pair(path)
    raise KeyMissing(f"no key for {name!r} in {directory}: provision one with `lens keys generate {directory} "
                    f"{name}` or set LENS_KEY")


_inherited: list[KeyPair] = []


def _inherited_pair(name: str) -> KeyPair:
    """The pair appd wrote into the pipe at $LENS_KEY_FD, for the name in $LENS_KEY_NAME: read once, then
    this process's every node's (as $LENS_KEY would be)."""
    if not _inherited:
        fd = int(os.environ.pop("LENS_KEY_FD"))  # not for this process's own children
        chunks = []
        try:
            # Read from the descriptor itself: reopening /dev/fd/N would check the pipe's owner, which is
            # appd's user, not the app's own.
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
        finally:
            os.close(fd)
        where = Path(f"/dev/fd/{fd}")
        certificate = parse_certificate(b"".join(chunks), f"the key appd passed ({where})")
        _inherited.append(_pair(certificate, os.environ.pop("LENS_KEY_NAME", name), where))
    return _inherited[0]


def load_public(path: Path) -> bytes:
    return _read_certificate(path)[0]


def broker_public(runtime: Runtime) -> bytes:
    """The broker's public key: ``$LENS_BROKER_KEY`` (appd gives it to an app, which may not read the keys
    directory), otherwise the keys directory's ``broker.key``."""
    given = os.environ.get("LENS_BROKER_KEY")
    if given:
        if len(given) != 40:
            raise KeyMissing(f"LENS_BROKER_KEY is not a Z85 public key (40 characters, not {len(given)})")
        return given.encode()
    path = keys_dir(runtime) / f"{BROKER}.key"
    try:
        return load_public(path)
    except KeyMissing:
        raise KeyMissing(f"no broker key at {path}: is this the right runtime directory, or run "
                         f"`lens keys generate {path.parent}`") from None


def as_client(sock: zmq.Socket, pair: KeyPair, server_public: bytes) -> None:
    """Make ``sock`` (before connect) authenticate to the broker with ``pair``."""
    sock.curve_serverkey = server_public
    sock.curve_publickey = pair.public
    sock.curve_secretkey = pair.secret


def verified(frame: zmq.Frame) -> str:
    """The identity the ZAP handler gave the frame's sender ("" for a pipe of the process's own)."""
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:
        return ""


def as_server(sock: zmq.Socket, pair: KeyPair) -> None:
    """Make ``sock`` (before bind) a CURVE server whose clients the broker's ZAP handler vets."""
    sock.curve_server = True
    sock.curve_secretkey = pair.secret
    sock.zap_domain = ZAP_DOMAIN


class Directory:
    """The public keys the broker admits: identity by public key, reread when a directory changes."""

    def __init__(self, provisioned: Path, apps: Path | None = None):
        self.provisioned = provisioned
        self.apps = apps  # None: the provisioned keys only (a bridge's peers)
        self.by_key: dict[bytes, str] = {}
        self.by_name: dict[str, bytes] = {}
        self._seen: tuple = ()

    def identity(self, public_z85: bytes) -> str | None:
        """The identity of a public key (Z85) the directory holds, None when none."""
        self._refresh()
        return self.by_key.get(public_z85)

    def public(self, identity: str) -> bytes | None:
        """The public key (Z85) the directory holds for ``identity``, None when none."""
        self._refresh()
        return self.by_name.get(identity)

    def _refresh(self) -> None:
        """Reread on every change, not only for a key it does not know: a key forgotten (bus.keys.forget) is
        one it still knows."""
        if self._changed():
            self.reload()

    def _changed(self) -> bool:
        return self._stamp() != self._seen

    def _stamp(self) -> tuple:
        """What each directory holds, by name and inode: a key added, forgotten or replaced (written anew,
        renamed into place) changes it. A directory's mtime may not, within one tick of the kernel's clock."""
        stamps = []
        for directory in (self.provisioned, self.apps):
            if directory is None:
                continue
            try:
                with os.scandir(directory) as entries:
                    stamps.append(frozenset((entry.name, entry.inode()) for entry in entries))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def reload(self) -> None:
        self._seen = self._stamp()
        system = _public_keys(self.provisioned)
        apps = {key: name for key, name in (_public_keys(self.apps) if self.apps else {}).items()
                if name not in system.values()}
        self.by_key = {**apps, **system}
        self.by_name = {name: key for key, name in self.by_key.items()}


def _public_keys(directory: Path) -> dict[bytes, str]:
    out = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.key")):
        name = path.name.removesuffix(".key")
        if not valid_name(name):
            continue
        try:
            out[load_public(path)] = name
        except KeyMissing:
            continue
    return out
