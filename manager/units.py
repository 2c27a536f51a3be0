"""systemd units for the board, written from the process table (`lens units install --prefix DIR`).

One service per process and ``lensos.target``. The bus directory
``/run/lensos`` is the system's, made at boot by ``tmpfiles.d`` (root, group
``lensos``, 3770), not a ``RuntimeDirectory=`` of the broker: systemd puts a
DynamicUser's preserved runtime directory under ``/run/private`` (0700), where
no other unit can reach it. The broker runs in group ``lensos`` and makes its
own ``bus/`` in it; everything else starts after it and requires it, sends READY=1 only when its bus
subscriptions are confirmed (``Type=notify``) and WATCHDOG=1 from its own
loop (``WatchdogSec=``), and is restarted on failure within start limits.
Each runs as its own dynamic user in a sandbox that opens only the devices,
groups and sysfs paths its table row names. ``sysusers.d`` creates the
``lensos`` group that reaches the bus. Each process proves who it is to the
broker with its own CURVE key: systemd hands the secret half to the service
alone (``LoadCredential=``), from the keys directory an image build writes
with ``lens keys generate /etc/lensos/keys``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bus.development import IMAGE_ENV
from bus.keys import CREDENTIAL
from manager.processes import PROCESSES, Process, command

if TYPE_CHECKING:
    from policies.settings import File

RUNTIME_DIR = "/run/lensos"
STATE_ROOT = "/var/lib/lensos"  # each process with state keeps it in STATE_ROOT/<name>
KEYS_DIR = "/etc/lensos/keys"
GROUP = "lensos"
# The group of a directory a setting puts outside a process's state (camerad's media_dir on a partition of its
# own): ProtectSystem=strict opens it to the unit (ReadWritePaths=), but only a group can let a dynamic user
# write there, whose uid is not known when tmpfiles.d makes the directory.
SETTING_GROUP = "lensos-media"

# Hardening every unit gets: nothing here depends on what the process does.
_HARDENING = [
    ("DynamicUser", "yes"),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("RemoveIPC", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged"),
    ("UMask", "0007"),
]


# A capability -> the system calls it needs. With CAP_SETUID, capset too: appd's zygote gives each app its own
# user and then drops, with capset(2), the capabilities a forked process keeps across a change between users
# other than root (an exec would have dropped them).
_CALLS_FOR = {"CAP_SETUID": "@setuid capset", "CAP_CHOWN": "@chown"}


def service_name(name: str) -> str:
    return f"lensos-{name}.service"


def policy_dirs(process: Process, hardware: File) -> list[str]:
    """The directories ``process`` writes outside its state, as the hardware policy sets them (none if empty)."""
    found = []
    for setting in process.writes_setting:
        section, key = setting.split(".")
        value = getattr(getattr(hardware, section), key)
        if value:
            found.append(value)
    return found


def unit(process: Process, python: str, dirs: list[str] = ()) -> str:
    """``dirs``: policy_dirs(process): opened to it, and their group given to it."""
    after = [service_name(name) for name in process.after]
    unit_section = [("Description", f"lensos {process.name}: {process.doc}"), ("PartOf", "lensos.target"),
                    ("StartLimitIntervalSec", "60"), ("StartLimitBurst", "5")]
    # Wants=, not Requires=: systemd restarts every unit that Requires= one it restarts, so a broker killed and
    # brought back by Restart= took all nine daemons down with it (found booting the board image), though each
    # reconnects by itself and keeps its state (a recording, the mic, the latched cache's readers).
    unit_section += [("After", name) for name in after] + [("Wants", name) for name in after]
    service = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        *([("ExecCondition", f"{python} -m manager.condition {process.name}")] if process.runs_if else []),
        ("ExecStart", " ".join(command(process, python, "real"))),
        ("Environment", f"LENS_RUNTIME_DIR={RUNTIME_DIR}"),
        ("Environment", f"LENS_KEYS_DIR={KEYS_DIR}"),
        ("Environment", f"{IMAGE_ENV}=1"),  # one of an image's units: a product's knows no bench or demo topic
        # This boot's id, systemd's specifier: ProcSubset=pid hides /proc/sys/kernel/random/boot_id (bus.runtime)
        ("Environment", Specifier("LENS_BOOT_ID=%b")),
        ("LoadCredential", f"{CREDENTIAL}:{KEYS_DIR}/{process.name}.key_secret"),
        ("SyslogIdentifier", f"lensos-{process.name}"),  # its journal lines say who, not "python"
        ("Environment", "PYTHONUNBUFFERED=1"),
        ("Environment", "PYTHONDONTWRITEBYTECODE=1"),
        ("WatchdogSec", f"{process.watchdog_s:g}"),
        ("LimitNOFILE", f"{process.files}"),
        ("Restart", "on-failure"),
        ("RestartSec", "1"),
        ("TimeoutStopSec", "5"),
        ("User", f"lensos-{process.name}"),
    ]
    if process.name == "broker":
        service += [("Group", GROUP)]  # the bus directory is the group's (TMPFILES); its bus/ is the broker's
    else:
        service += [("SupplementaryGroups", " ".join((GROUP, *process.groups, *[SETTING_GROUP] * bool(dirs))))]
    service += [("ReadWritePaths", RUNTIME_DIR)]
    service += [("ReadWritePaths", path) for path in (*process.writes, *dirs)]
    if process.state:
        service += [("StateDirectory", f"lensos/{process.name}"),
                    ("Environment", f"LENS_STATE_DIR={STATE_ROOT}/{process.name}")]
    service += _HARDENING
    capabilities = " ".join(process.capabilities)
    service += [("CapabilityBoundingSet", capabilities)]
    if capabilities:
        service += [("AmbientCapabilities", capabilities)]
    # Back from ~@privileged: the calls a capability it keeps is for (else seccomp kills it at the first one).
    service += [("SystemCallFilter", calls) for capability, calls in _CALLS_FOR.items()
                if capability in process.capabilities]
    if not process.writes:
        service.append(("ProtectKernelTunables", "yes"))  # /sys read-only, unless it drives an LED or backlight
    if not process.jit:
        service.append(("MemoryDenyWriteExecute", "yes"))
    service.append(("RestrictAddressFamilies", " ".join(process.sockets)))
    if not {"AF_INET", "AF_INET6"} & set(process.sockets):
        service.append(("PrivateNetwork", "yes"))  # no network at all
    service.append(("DevicePolicy", "closed"))
    service += [("DeviceAllow", device) for device in process.devices]
    if not process.devices:
        service.append(("PrivateDevices", "yes"))
    install = [("WantedBy", "lensos.target")]
    return _render([("Unit", unit_section), ("Service", service), ("Install", install)])


def target(processes: tuple[Process, ...] = PROCESSES) -> str:
    names = [service_name(p.name) for p in processes if not p.dev_only]
    return _render([
        ("Unit", [("Description", "lensos: the smart-glasses shell and its daemons"),
                  ("Wants", " ".join(names)), ("After", service_name("broker"))]),
        ("Install", [("WantedBy", "multi-user.target")]),
    ])


LED_GROUP = "lensos-led"
SYSUSERS = (f"# The group whose members reach the lensos bus in {RUNTIME_DIR}.\ng {GROUP} -\n"
            f"# ledd's: the capture LED's sysfs attributes are the group's (lensos.udev.rules).\ng {LED_GROUP} -\n"
            f"# Directories the policy puts outside a process's state (camerad's media_dir): the group's.\n"
            f"g {SETTING_GROUP} -\n")


def udev_rules() -> str:
    """sysfs attributes are root's, whatever ReadWritePaths= says: udev hands the capture LED's brightness
    and trigger to ledd's group when the LED appears (found on the first boot under a real systemd: ledd
    could not write its trigger). The LED is the one policies/hardware.toml names."""
    from policies.loader import load

    led = Path(load().hardware.led.sysfs_dir).name
    files = "/sys%p/brightness /sys%p/trigger"
    return (f"# The capture LED for ledd (manager/units.py).\nSUBSYSTEM==\"leds\", KERNEL==\"{led}\", "
            f"RUN+=\"/bin/chgrp {LED_GROUP} {files}\", RUN+=\"/bin/chmod 0664 {files}\"\n")
# The bus directory, made at every boot and kept for the whole of it, so the latched cache outlives a broker
# restart and every unit's ReadWritePaths= finds the same directory. setgid: every socket a process makes in
# it (camerad's ring door) is the bus group's; sticky: nobody renames what another put there, so the broker's
# bus/ stays its own (bus.access). Not the broker's RuntimeDirectory=: with DynamicUser= and
# RuntimeDirectoryPreserve= systemd makes that /run/private/lensos, behind a 0700 directory only the broker's
# own namespace opens (found on the first boot under a real systemd: every other unit failed).
TMPFILES = f"# The lensos bus directory (manager/units.py).\nd {RUNTIME_DIR} 3770 root {GROUP} -\n"


def render_all(python: str, processes: tuple[Process, ...] = PROCESSES) -> dict[str, str]:
    """File name -> text, for every unit, the target, the sysusers.d and tmpfiles.d entries and the udev rules
    (from the process table and the policy, $LENS_POLICY_DIR's or the installed one)."""
    from policies.loader import load

    hardware = load().hardware
    processes = tuple(p for p in processes if not p.dev_only)
    dirs = {p.name: policy_dirs(p, hardware) for p in processes}
    files = {service_name(p.name): unit(p, python, dirs[p.name]) for p in processes}
    files["lensos.target"] = target(processes)
    files["lensos.sysusers.conf"] = SYSUSERS
    # Made at every boot if missing (a fresh partition), setgid so what the process makes in it is the group's.
    files["lensos.tmpfiles.conf"] = TMPFILES + "".join(
        f"# {p.name}'s {', '.join(p.writes_setting)} (policies/hardware.toml).\nd {d} 2770 root {SETTING_GROUP} -\n"
        for p in processes for d in dirs[p.name])
    files["lensos.udev.rules"] = udev_rules()
    return files


def install(prefix: Path, python: str) -> list[Path]:
    prefix.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all(python).items():
        path = prefix / name
        path.write_text(text)
        written.append(path)
    return written


def parse(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists, in order: what the tests compare with the table."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


class Specifier(str):
    """A value whose % is systemd's specifier, meant (%b: the boot's id); in every other value a % is a %."""


def _render(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    out = ["# Written by `lens units install` from manager/processes.py; edit the table, not this file."]
    for name, pairs in sections:
        out += ["", f"[{name}]"] + [f"{key}={value if isinstance(value, Specifier) else value.replace('%', '%%')}"
                                    for key, value in pairs]
    return "\n".join(out) + "\n"
