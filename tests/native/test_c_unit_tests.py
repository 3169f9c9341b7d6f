"""Run the C unit tests (native/test/**/*_ut.c) as part of the pytest suite."""

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"


def _unit_tests():
    return sorted(p.relative_to(NATIVE / "test").with_suffix("")
                  for p in (NATIVE / "test").rglob("*_ut.c"))


@pytest.fixture(scope="module")
def built():
    subprocess.run(["make", "-C", str(NATIVE), "-j2", "tests"], check=True, timeout=900,
                   stdout=subprocess.DEVNULL)
    return NATIVE / "build" / "test"


@pytest.mark.parametrize("ut", _unit_tests(), ids=str)
def test_c_unit(built, ut):
    proc = subprocess.run([str(built / ut)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (ut, proc.stdout[-4000:],
                                                         proc.stderr[-4000:])
