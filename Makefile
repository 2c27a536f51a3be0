# The README's two commands: `make run` and `make test`. `make install` is the idempotent setup both share.
# The system's Python when it is 3.11 or newer, whatever else PATH finds first (a pyenv under a private home):
# appd starts each app as a user of its own, and such a user must be able to run the interpreter.
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
            && echo /usr/bin/python3 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lensos-installed

# Debian packages the tests and the real backends need (PortAudio for sounddevice, DejaVu for the HUD's text,
# espeak-ng for the offline voice, systemd for `systemd-analyze verify` of the units, chromium for the live
# view's browser test, gcc for the broker's forwarding loop in C, WenQuanYi Micro Hei for the lens catalog's
# Chinese names: 5 MB where Noto CJK is 90; Tesseract's library and its English and simplified Chinese models
# for the lens's text rung, without the tesseract program, which it does not run). Only those that are missing,
# and only what they depend on: no recommended packages (chromium alone recommends about 120). The README lists them.
SYSTEM_PACKAGES := libportaudio2 fonts-dejavu-core espeak-ng systemd chromium gcc libc6-dev fonts-wqy-microhei \
                   libtesseract5 tesseract-ocr-eng tesseract-ocr-chi-sim

.PHONY: install run test hostile faults sysdeps clean

install: sysdeps $(STAMP) broker/_fastpath.so bus/_seqlock.so tests/foxglove/node_modules/.installed
	@# Bytecode ahead of time: with PYTHONDONTWRITEBYTECODE set (as on this machine) every process would
	@# compile its sources at each start, which costs `lens up` about 0.15 s of its boot on 2 cores.
	@$(BIN)/python -m compileall -q -j 0 bus broker frames shellclient bustools cli manager apphost webview shell daemons policies apps >/dev/null

# Checked on every call (cheap); installed only when missing and we are root, otherwise a clear message.
sysdeps:
	@missing=""; \
	$(PYTHON) -c "import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library('portaudio') else 1)" \
	  || missing="$$missing libportaudio2"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	$(PYTHON) -c "import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library('tesseract') else 1)" \
	  || missing="$$missing libtesseract5"; \
	[ -f /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] || missing="$$missing tesseract-ocr-eng"; \
	[ -f /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata ] || missing="$$missing tesseract-ocr-chi-sim"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v cc >/dev/null && [ -f /usr/include/stdlib.h ]; } || missing="$$missing gcc libc6-dev"; \
	$(PYTHON) -c "import ensurepip" 2>/dev/null || [ -x $(BIN)/python ] || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "lensos: installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $$missing >/dev/null; \
	  else \
	    echo "lensos: missing system packages:$$missing"; \
	    echo "lensos: install them with: sudo apt-get install --no-install-recommends$$missing  (audio tests are skipped without libportaudio2 or espeak-ng; the HUD falls back to Pillow's own font; the lens reads no text without Tesseract)"; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The broker's hot path in C, loaded with ctypes (needs cc and libc's headers, not Python's). Without a
# compiler the broker forwards in Python and says so: slower, never different.
broker/_fastpath.so: broker/fastpath.c broker/fastpath.py $(STAMP)
	@$(BIN)/python -m broker.fastpath || true

# The frame ring's fences (bus/seqlock.c), the same way. Without them the ring works on x86 only, and says so.
bus/_seqlock.so: bus/seqlock.c broker/fastpath_build.py
	@$(BIN)/python broker/fastpath_build.py bus/seqlock.c $@ || true

# A Foxglove client nobody here wrote (@foxglove/ws-protocol, the npm registry's) for tests/bustools/test_foxglove.py,
# at the versions package-lock.json pins; no install scripts run. Without npm the test is skipped, saying so.
tests/foxglove/node_modules/.installed: tests/foxglove/package.json tests/foxglove/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix tests/foxglove --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null && touch $@; \
	else \
	  echo "lensos: no npm: the Foxglove client test is skipped (install nodejs and npm to run it)"; \
	fi

run: install
	$(BIN)/lens up --web

# The boot test (tests/board) is part of it: its image build and VM start in the background when the suite
# is collected, niced, and its assertions run last (tests/board/boot.py). LENS_BOARD_TEST=0 leaves it out.
test: install board-deps
	$(BIN)/python -m pytest

# The hostile-app suite alone (tests/hostile): every attack of issue 27 against the broker and the running
# glasses, and every request an app may send, fuzzed. `make test` runs it too.
hostile: install
	$(BIN)/python -m pytest tests/hostile

# The fault suite alone (issue 28): every test marked fault (kills, hangs, a full disk, LED faults, batteries
# pulled, against running processes), wherever its subject's tests live. `make test` runs them too, and the
# board's boot test the same faults under the image's systemd (`make board-test`).
faults: install
	LENS_BOARD_TEST=0 $(BIN)/python -m pytest -m fault

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache broker/_fastpath.so bus/_seqlock.so tests/foxglove/node_modules

# The board (board/README.md): the glasses' OS image (Debian 12, mmdebstrap; the base cached in
# /var/cache/lensos), and the boot test, which boots it in QEMU and checks it from inside (tests/board, run by
# `make test` too). Root is needed; the kernel headers and source for the board's modules are installed by
# board/modules, for the image's own kernel.
BOARD_PACKAGES := mmdebstrap qemu-system-x86 e2fsprogs
FLAVOUR ?= development
HOST_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
ARCH ?= $(HOST_ARCH)
# An arm64 image on an amd64 host (board/README.md): its chroot steps under qemu-user through binfmt
# (qemu-user-static, binfmt-support; arch-test is what mmdebstrap checks a foreign arch with), the lensos
# wheel's C and the board's modules cross-compiled (gcc-aarch64-linux-gnu with its libc), and the VM
# (qemu-system-arm has qemu-system-aarch64).
ifeq ($(ARCH),arm64)
ifneq ($(HOST_ARCH),arm64)
BOARD_PACKAGES += qemu-user-static binfmt-support arch-test gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm
endif
endif

.PHONY: image board-test board-deps

board-deps:
	@missing=""; for p in $(BOARD_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "lensos: installing the board's packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "lensos: the boot test is skipped without:$$missing (make test as root installs them)"; \
	  fi; \
	fi

image: install board-deps
	board/build-image --flavour $(FLAVOUR) --arch $(ARCH)

board-test: install board-deps
	$(BIN)/python -m pytest tests/board
