"""Where the bus lives: the runtime directory and the ipc:// endpoints in it.

Resolution order: ``$LENS_RUNTIME_DIR``; ``$RUNTIME_DIRECTORY`` (set by systemd's
``RuntimeDirectory=lensos``, i.e. /run/lensos on the board); otherwise a
per-user development directory, ``$XDG_RUNTIME_DIR/lensos`` or
``/tmp/lensos-<uid>``. The directory is created 0700 when missing and refused
when another user owns it or others may write to it: a socket planted there by
someone else would be a man in the middle.
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from pathlib import Path
from typing import NamedTuple

from bus.errors import RuntimeDirError
from bus.topics import LANES

# sun_path is 108 bytes on Linux including the terminating NUL.
_MAX_IPC_PATH = 107


def default_runtime_dir() -> Path:
    for var in ("LENS_RUNTIME_DIR", "RUNTIME_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            # systemd may list several directories separated by ':'; ours is the first.
            return Path(value.split(":")[0])
    return default_bus_dir()


class Runtime(NamedTuple):
    dir: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None, *, create: bool = True) -> "Runtime":
        directory = Path(path) if path else default_runtime_dir()
        runtime = cls(directory.absolute())
        if create:
            runtime.ensure()
        return runtime

    def ensure(self) -> None:
        """Create the directory if needed and check that it is safe and short enough."""
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.dir.stat()
        except OSError as exc:
            raise RuntimeDirError(f"runtime directory {self.dir}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise RuntimeDirError(f"runtime directory {self.dir} is not a directory")
        shared = info.st_gid in (os.getgid(), *os.getgroups()) and info.st_mode & stat.S_IRWXG == stat.S_IRWXG
        if info.st_uid != os.getuid() and os.getuid() != 0 and not shared:
            # On the board each daemon is its own user; the bus directory is the broker's, shared through the
            # lensos group (RuntimeDirectoryMode=0770). Anyone else's directory is not ours to trust.
            raise RuntimeDirError(f"runtime directory {self.dir} belongs to uid {info.st_uid} and is not shared "
                                  f"with a group of ours")
        if info.st_mode & stat.S_IWOTH:
            raise RuntimeDirError(f"runtime directory {self.dir} is world-writable; refusing to put the bus there")
        longest = max(len(str(self.socket_path(name))) for name in self.socket_names())
        if longest > _MAX_IPC_PATH:
            raise RuntimeDirError(
                f"runtime directory {self.dir} is too long for ipc:// sockets "
                f"({longest} > {_MAX_IPC_PATH} bytes); set LENS_RUNTIME_DIR to a shorter path"
            )

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def socket_dir(self) -> Path:
        """The bus's sockets: the broker's alone to write (bus.access), unlike the directory around it."""
        return self.path("bus")

    def socket_path(self, name: str) -> Path:
        return self.socket_dir / name

    def make_socket_dir(self) -> Path | None:
        """The broker's: create ``socket_dir``, writable by nobody but this user. Whatever another user put
        at its name is moved aside (the owner of the sticky runtime directory may), and where to is returned."""
        try:
            info = os.lstat(self.socket_dir)
        except FileNotFoundError:
            info = None
        foreign = None
        if info is not None and (info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode)):
            foreign = self.path(f"bus.foreign-{os.urandom(4).hex()}")
            os.replace(self.socket_dir, foreign)
            info = None
        if info is None:
            self.socket_dir.mkdir(mode=0o750)
        mode = stat.S_IMODE(os.stat(self.socket_dir).st_mode)
        if mode & 0o022:
            # Only when others may write, and never naming the setgid bit the directory inherits from the
            # board's 3770 bus directory: under RestrictSUIDSGID= a chmod that sets it is refused (EPERM).
            os.chmod(self.socket_dir, mode & 0o755)
        return foreign

    @staticmethod
    def socket_names() -> list[str]:
        return [f"{lane}.{side}" for lane in LANES for side in ("in", "out")] + ["latch"]

    def publish_endpoint(self, lane: str) -> str:
        """Where publishers connect (the broker's XSUB)."""
        return f"ipc://{self.socket_path(lane + '.in')}"

    def subscribe_endpoint(self, lane: str) -> str:
        """Where subscribers connect (the broker's XPUB)."""
        return f"ipc://{self.socket_path(lane + '.out')}"

    @property
    def latch_endpoint(self) -> str:
        """The broker's last-value cache (ROUTER): snapshots of latched topics."""
        return f"ipc://{self.socket_path('latch')}"

    @property
    def lock_path(self) -> Path:
        return self.path("broker.lock")

    def broker_gone(self) -> bool:
        """True when no broker serves this directory for sure: no lock file (a broker removes it when it
        stops), or the pid written in it is no process. False when one does or may (it is writing its pid
        now; the file cannot be read). Never takes the lock, which would refuse a broker starting just then."""
        try:
            text = self.lock_path.read_text().strip()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        if not text.isdigit():
            return False
        try:
            os.kill(int(text), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's broker (the board's): it exists
            return False
        return False

    @property
    def tap_path(self) -> Path:
        """The tap (bus.tap): a ring of what the broker forwards, there while a tool watches."""
        return self.path("tap")

    @property
    def cache_path(self) -> Path:
        return self.path("latched.msgpack")

    @property
    def present_path(self) -> Path:
        """Who was connected to the broker (identity -> connections): a crashed broker's successor waits for
        them before it forwards (broker.present). In the sockets' directory, the broker's alone to write: the
        runtime directory is shared with the lensos group, whose members could plant one there."""
        return self.socket_dir / "present.msgpack"


def state_dir(path: str | os.PathLike | None = None, runtime_dir: str | os.PathLike | None = None) -> Path:
    """Where state that must outlive a reboot lives (audit log, saved state), created 0700.

    ``$LENS_STATE_DIR``; ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=lensos``,
    /var/lib/lensos on the board); otherwise, in development, the bus's own:
    ``$XDG_STATE_HOME/lensos`` (or ``~/.local/state/lensos``) for the bus in the
    default runtime directory, and ``.../lensos/buses/<runtime dir>`` for any
    other (``runtime_dir``, else ``$LENS_RUNTIME_DIR``). A user may run several
    buses; one's privacy log and crash checkpoint are not another's.
    """
    if path is None:
        for var in ("LENS_STATE_DIR", "STATE_DIRECTORY"):
            if os.environ.get(var):
                path = os.environ[var].split(":")[0]
                break
        else:
            base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "lensos"
            path = base / bus_state_name(runtime_dir)
    directory = Path(path).absolute()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeDirError(f"state directory {directory}: {exc.strerror}") from None
    return directory


def bus_state_name(runtime_dir: str | os.PathLike | None = None) -> str:
    """The part of the development state directory that is one bus's: empty for the default runtime directory
    (where a single bus's state always was), else the bus's runtime directory made a readable name, with a
    checksum of its full path so two directories never share one."""
    runtime = Path(runtime_dir or default_runtime_dir()).absolute()
    if runtime == default_bus_dir():
        return ""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", str(runtime)).strip("-")[-48:]
    return f"buses/{readable}-{zlib.crc32(str(runtime).encode()):08x}"  # zlib: hashlib would load OpenSSL


def default_bus_dir() -> Path:
    """The runtime directory of a user's bus when nothing names another."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return (Path(xdg) / "lensos" if xdg else Path(f"/tmp/lensos-{os.getuid()}")).absolute()


def boot_id() -> str | None:
    """This boot's id, which tells a crash (same boot: carry on) from a reboot (start afresh); None when it
    cannot be known. ``$LENS_BOOT_ID`` first: a board's unit sets it from systemd's own ``%b``, since its
    ``ProcSubset=pid`` hides /proc/sys from the process (the file read "", the same "" at every boot, and a
    crash checkpoint or kept state of an earlier boot passed for this one's)."""
    try:  # one spelling for both: %b is the 32 hex digits, the file the same with dashes (a UUID)
        said = os.environ.get("LENS_BOOT_ID") or Path("/proc/sys/kernel/random/boot_id").read_text()
    except OSError:
        return None
    return said.strip().replace("-", "") or None


def this_boot(said: object) -> bool:
    """Whether a boot id a file kept (either spelling, or none) is this boot's; never when this boot is
    unknown, since a file of another boot would then pass for this one's."""
    now = boot_id()
    return now is not None and str(said or "").replace("-", "") == now


def write_atomically(path: Path, data: bytes, durable: bool = True) -> None:
    """Write, rename: the file is either old or new, never torn.

    ``durable`` adds the fsyncs that make it survive power loss too; without
    them it survives the process dying, which is all a crash checkpoint needs
    (and flash is not written every time it changes)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
