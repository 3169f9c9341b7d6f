"""Fixtures shared by every test layer.

The C engine is process-wide, so the ``engine`` fixture starts it for one
test and always stops it, whatever the test did.
"""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NATIVE_BUILD = ROOT / "native" / "build"


@pytest.fixture
def engine_factory(tmp_path):
    """Start engines with custom options; each one is stopped at teardown."""
    from spdk_backend.engine import Engine

    started = []

    def factory(core_mask="0x1", **kw):
        kw.setdefault("vhost_socket_dir", str(tmp_path / "vhost"))
        kw.setdefault("max_delay_us", 1000)
        eng = Engine(core_mask=core_mask, **kw)
        eng.start()
        started.append(eng)
        return eng

    yield factory
    for eng in started:
        eng.stop()


@pytest.fixture
def engine(engine_factory):
    """A running one-reactor engine."""
    return engine_factory("0x1")


@pytest.fixture(scope="session")
def native_tools():
    """Build native/build/tools/* once per session; returns the directory."""
    subprocess.run(["make", "-C", str(ROOT / "native"), "-j2", "tools"], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    return NATIVE_BUILD / "tools"


@pytest.fixture(scope="session")
def initiator(native_tools):
    """The C vhost-user front-end (native/tools/vhost_initiator)."""
    return native_tools / "vhost_initiator"


def online_cpus():
    return sorted(os.sched_getaffinity(0))
