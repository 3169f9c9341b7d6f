"""The shell scripts: shellcheck-clean, and the stack switch's argument checks."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCRIPTS = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh")) + [str(ROOT / ".ci" / "run")]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    out = subprocess.run(["shellcheck"] + SCRIPTS, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_install_deps_refuses_an_unknown_stack():
    """Refused before apt or pip is touched."""
    out = subprocess.run([str(ROOT / "scripts" / "install-deps.sh")], capture_output=True,
                         text=True, env=dict(os.environ, SB_STACK="debian11"), timeout=30)
    assert out.returncode == 2
    assert "unknown SB_STACK=debian11 (current or debian12)" in out.stderr


def test_stack_tests_exist():
    """Every path scripts/stack-tests.sh names is there (a rename would
    silently drop it from the second stack's run)."""
    out = subprocess.run([str(ROOT / "scripts" / "stack-tests.sh")], capture_output=True,
                         text=True, check=True)
    paths = out.stdout.split()
    # The guests, and the tests that run qemu-storage-daemon.
    assert {"tests/e2e", "tests/functional/test_vhost_initiator_qsd.py",
            "tests/functional/test_vhost_bench.py"} <= set(paths)
    for p in paths:
        assert (ROOT / p).exists(), p
