"""lensos-vm-hardware: the glasses' touchpad, button and capture LED in the virtual machine.

The board has them as platform devices; the VM makes them from user space through real kernel interfaces,
so inputd and ledd meet the kernel's evdev and LED class exactly as on the board:
- uinput: "lensos-touchpad" (single touch: BTN_TOUCH and ABS_X 0..1000) and "lensos-button" (KEY_CAMERA);
  udev links them where policies/hardware.toml looks (70-lensos-vm.rules);
- uleds: the LED class device "lensos:capture"; every brightness the kernel gives it is read back here.

A control socket (/run/lensos-vm/control, root's alone: one JSON request a line, one JSON answer a line) lets
the boot check touch the pad and read or remove the LED:
    {"do": "tap"} | {"do": "swipe"} | {"do": "button"} | {"do": "led"} | {"do": "led-remove"} | {"do": "led-restore"}
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

CONTROL = "/run/lensos-vm/control"
LED_NAME = "lensos:capture"
LINKS = ("/dev/input/by-path/platform-lensos-touchpad-event", "/dev/input/by-path/platform-lensos-button-event",
         f"/sys/class/leds/{LED_NAME}")

EV_SYN, EV_KEY, EV_ABS = 0x00, 0x01, 0x03
BTN_TOUCH, KEY_CAMERA, ABS_X = 0x14A, 212, 0x00
BUS_VIRTUAL = 0x06
# linux/uinput.h
UI_SET_EVBIT, UI_SET_KEYBIT, UI_SET_ABSBIT = 0x40045564, 0x40045565, 0x40045567
UI_DEV_SETUP, UI_ABS_SETUP, UI_DEV_CREATE = 0x405C5503, 0x401C5504, 0x5501
_EVENT = struct.Struct("llHHi")  # struct input_event on a 64-bit kernel
PAD_MAX = 1000


def _uinput(name: str, keys: list[int], x_axis: bool) -> int:
    fd = os.open("/dev/uinput", os.O_WRONLY | os.O_NONBLOCK)
    fcntl.ioctl(fd, UI_SET_EVBIT, EV_KEY)
    for key in keys:
        fcntl.ioctl(fd, UI_SET_KEYBIT, key)
    if x_axis:
        fcntl.ioctl(fd, UI_SET_EVBIT, EV_ABS)
        fcntl.ioctl(fd, UI_SET_ABSBIT, ABS_X)
        # struct uinput_abs_setup: code, then struct input_absinfo (value, min, max, fuzz, flat, resolution)
        fcntl.ioctl(fd, UI_ABS_SETUP, struct.pack("H2x6i", ABS_X, 0, 0, PAD_MAX, 0, 0, 0))
    # struct uinput_setup: struct input_id (bustype, vendor, product, version), name[80], ff_effects_max
    fcntl.ioctl(fd, UI_DEV_SETUP, struct.pack("4H80sI", BUS_VIRTUAL, 0x1209, 0x0001, 1, name.encode(), 0))
    fcntl.ioctl(fd, UI_DEV_CREATE)
    return fd


def _emit(fd: int, *events: tuple[int, int, int]) -> None:
    data = b"".join(_EVENT.pack(0, 0, t, c, v) for t, c, v in (*events, (EV_SYN, 0, 0)))
    os.write(fd, data)


class Hardware:
    def __init__(self):
        self.pad = _uinput("lensos-touchpad", [BTN_TOUCH], x_axis=True)
        self.button = _uinput("lensos-button", [KEY_CAMERA], x_axis=False)
        self.led = -1
        self.brightness: list[int] = []  # every value the kernel handed the LED, in order
        self.led_restore()

    def led_restore(self) -> dict:
        if self.led < 0:
            self.led = os.open("/dev/uleds", os.O_RDWR | os.O_NONBLOCK)
            os.write(self.led, struct.pack("64si", LED_NAME.encode(), 1))  # struct uleds_user_dev
        return self.led_state()

    def led_remove(self) -> dict:
        if self.led >= 0:
            os.close(self.led)  # the kernel unregisters the LED class device with its last user
            self.led = -1
        return self.led_state()

    def led_read(self) -> None:
        try:
            data = os.read(self.led, 4 * 64)
        except BlockingIOError:
            return
        self.brightness += [v for (v,) in struct.iter_unpack("i", data[: len(data) // 4 * 4])]

    def led_state(self) -> dict:
        if self.led >= 0:
            self.led_read()
        return {"present": self.led >= 0 and os.path.exists(LINKS[2]), "brightness": self.brightness[-1:] or [0],
                "history": self.brightness[-20:]}

    def touch(self, xs: list[int], step_s: float) -> None:
        _emit(self.pad, (EV_KEY, BTN_TOUCH, 1), (EV_ABS, ABS_X, xs[0]))
        for x in xs[1:]:
            time.sleep(step_s)
            _emit(self.pad, (EV_ABS, ABS_X, x))
        time.sleep(step_s)
        _emit(self.pad, (EV_KEY, BTN_TOUCH, 0))

    def handle(self, request: dict) -> dict:
        what = request.get("do")
        if what == "tap":
            self.touch([500, 500], 0.04)
        elif what == "swipe":  # forward: towards larger x, the length of most of the pad in 0.2 s
            self.touch(list(range(100, 901, 100)), 0.025)
        elif what == "button":
            _emit(self.button, (EV_KEY, KEY_CAMERA, 1))
            time.sleep(0.05)
            _emit(self.button, (EV_KEY, KEY_CAMERA, 0))
        elif what == "led":
            return self.led_state()
        elif what == "led-remove":
            return self.led_remove()
        elif what == "led-restore":
            return self.led_restore()
        else:
            return {"error": f"unknown request {what!r}"}
        return {"done": what}


def notify(state: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect("\0" + path[1:] if path.startswith("@") else path)
            sock.send(state.encode())


def main() -> int:
    hardware = Hardware()
    deadline = time.monotonic() + 30
    while not all(os.path.exists(p) for p in LINKS):  # udev's links, the LED's sysfs directory
        if time.monotonic() > deadline:
            print(f"lensos-vm-hardware: missing after 30 s: {[p for p in LINKS if not os.path.exists(p)]}")
            return 1
        time.sleep(0.05)
    subprocess.run(["udevadm", "settle", "--timeout=30"], check=False)  # the LED's group (60-lensos.rules)
    os.makedirs(os.path.dirname(CONTROL), mode=0o700, exist_ok=True)
    if os.path.exists(CONTROL):
        os.unlink(CONTROL)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(CONTROL)
    server.listen()
    print("lensos-vm-hardware: touchpad, button and LED ready", flush=True)
    notify("READY=1")
    clients: dict[socket.socket, bytes] = {}
    while True:
        watched = [server, *clients] + ([hardware.led] if hardware.led >= 0 else [])
        readable, _, _ = select.select(watched, [], [])
        for r in readable:
            if r is server:
                client, _ = server.accept()
                clients[client] = b""
            elif r == hardware.led:
                hardware.led_read()
            else:
                data = r.recv(4096)
                if not data:
                    del clients[r]
                    r.close()
                    continue
                clients[r] += data
                while b"\n" in clients[r]:
                    line, _, clients[r] = clients[r].partition(b"\n")
                    try:
                        answer = hardware.handle(json.loads(line))
                    except (ValueError, OSError) as exc:
                        answer = {"error": str(exc)}
                    r.sendall(json.dumps(answer).encode() + b"\n")


if __name__ == "__main__":
    sys.exit(main())
