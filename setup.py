"""The wheel carries the checkout's C libraries, loaded with ctypes: the broker's C loop (broker/_fastpath.so)
and the frame ring's fences (bus/_seqlock.so), so an image built from it forwards in C and keeps its frames
whole on any CPU, like a checkout after `make install`; the wheel is therefore tagged for its platform ($CC
picks the compiler: board/build-image cross-compiles the arm64 image's wheel).
Everything else about the package is in pyproject.toml."""

import importlib.util
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

# broker/fastpath_build.py by its path: importing the package `broker` here would need pyzmq in the build environment
_spec = importlib.util.spec_from_file_location("fastpath_build", Path(__file__).parent / "broker" / "fastpath_build.py")
fastpath_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fastpath_build)


class BuildPy(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return  # an editable install (make install) builds them in place
        for source, library in fastpath_build.LIBRARIES.items():
            output = Path(self.build_lib) / library
            try:
                subprocess.run(fastpath_build.command(output, Path(__file__).parent / source), check=True,
                               capture_output=True, text=True)
            except subprocess.CalledProcessError as exc:
                raise SystemExit(f"building {source} failed:\n{exc.stderr}") from None


class PlatformDistribution(Distribution):
    def has_ext_modules(self):
        return True  # a platform wheel (it holds a shared library), though no CPython extension


setup(cmdclass={"build_py": BuildPy}, distclass=PlatformDistribution)
