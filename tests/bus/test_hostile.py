"""Attacks on a running broker from real processes, with an app's own key or with none (issue 27), and
what each must come to: the broker standing, the traffic that may flow flowing, every refusal counted
and reported with who the kernel says did it."""

from __future__ import annotations

import os
import sys

from bus import connections
from tests.bus.test_pubsub import collect
from tests.bus.test_security import app_node
from tests.conftest import wait_for, wait_line

# Idle unix connections, no ZeroMQ greeting, as fast as one process can make them, held until its own
# descriptors run out (then the oldest go); progress on stdout.
ATTACK = """
import collections, resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
held, opened = collections.deque(), 0
while True:
    for path in sys.argv[1:]:
        if len(held) >= 12000:
            held.popleft().close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            continue
        held.append(s)
        opened += 1
        if opened % 1000 == 0:
            print("opened", opened, flush=True)
"""
LIMITED_BROKER = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({0}, {0})); "
                  "sys.argv = ['bus.broker']; runpy.run_module('bus.broker', run_name='__main__')")


def test_idle_connections_without_a_key_neither_crash_the_broker_nor_stop_its_traffic(procs, runtime, nodes):
    limit = 4096  # the broker cannot raise it (hard limit): the attack opens more connections than that
    broker = procs.start_ready("-c", LIMITED_BROKER.format(limit))
    listener, talker = nodes("listener"), nodes("demo")
    ticks = collect(listener, "demo.tick")
    reports = collect(listener, "bus.security")
    listener.start()
    talker.start()
    paths = [runtime.socket_path(name) for name in runtime.socket_names()]
    attacker = procs.start("-c", ATTACK, *map(str, paths))
    wait_line(attacker.stdout, f"opened {(limit // 1000 + 2) * 1000}")  # more than the broker has descriptors
    # Valid traffic, measured during the attack: it flows, and a process that starts now gets on the bus.
    sent = 0

    def flowing() -> bool:
        nonlocal sent
        sent += 1
        talker.publish("demo.tick", n=sent, text="during the attack")
        talker.run_once(0.01)
        return len(ticks) >= 20
    wait_for(flowing, what="ticks through the broker during the attack", poll=listener.run_once)
    late = nodes("latecomer")
    late.subscribe("demo.tick", lambda msg: None)
    late.start()
    wait_line(attacker.stdout, "opened")  # the attack went on all the while
    assert attacker.poll() is None and broker.poll() is None
    procs.stop(attacker)
    mine = [r.payload for r in reports if r.payload["topic"] == "<connect>" and r.payload["pid"] == attacker.pid]
    wait_for(lambda: any(r.payload["reason"].startswith("shed: ") and r.payload["pid"] == attacker.pid
                         for r in reports), what="the shedding reported", poll=listener.run_once)
    mine = [r.payload for r in reports if r.payload["topic"] == "<connect>" and r.payload["pid"] == attacker.pid]
    assert {r["uid"] for r in mine} == {os.getuid()} and {r["identity"] for r in mine} == {"?"}
    assert broker.poll() is None


def test_the_broker_raises_its_own_descriptor_limit():
    code = ("import resource; from bus import connections; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            "print(connections.raise_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = connections.WANTED_LIMIT if hard == resource.RLIM_INFINITY else min(hard, connections.WANTED_LIMIT)
    assert out == [str(wanted), str(wanted)]
