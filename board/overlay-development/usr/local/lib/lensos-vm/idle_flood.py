"""An attacker's flood of idle unix connections with no ZeroMQ greeting, as fast as one process makes them:
``python idle_flood.py COUNT PATH...`` connects to each PATH in turn until COUNT are open (0: no end), then
holds them, idle, until killed. It keeps at most 12,000 (the oldest closed first: its own descriptors run
out), bounds each connect (a full listen backlog would block it) and says "opened N" every 500.

The board's hostile check runs it from here, and the laptop's (tests/hostile/test_broker.py) from this file
in the tree: one attacker, so the two suites attack alike."""

import collections
import resource
import signal
import socket
import sys

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
held, opened, flood = collections.deque(), 0, int(sys.argv[1])
while not flood or opened < flood:
    for path in sys.argv[2:]:
        if len(held) >= 12000:
            held.popleft().close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(path)
        except OSError:
            s.close()
            continue
        held.append(s)
        opened += 1
        if opened % 500 == 0:
            print("opened", opened, flush=True)
signal.pause()  # held, idle, until killed
