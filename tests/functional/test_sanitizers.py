"""The engine under AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer).

``make -C native SANITIZE=1`` builds everything into native/build-asan/.
Three runs in CI:

* every C unit test of the sanitizer build;
* native/tools/vhost_target (the engine as a plain target process, ASan
  build) under every hostile case of the C initiator, a bystander doing
  verified I/O on another controller meanwhile, then verified workloads
  (several queues, EVENT_IDX, interrupts, the message shapes of SPDK's,
  DPDK's and rust-vmm's front-ends); a SIGTERM must then give a clean
  shutdown (exit 0: LeakSanitizer found nothing) and no sanitizer report;
* the engine's Python functional and isolation tests on an extension
  built with SB_SANITIZE=1 (libasan preloaded into the interpreter);
  tests/functional/engine includes test_engine_call_timeouts.py, where
  every bdev and workload control call gives up behind a stalled reactor
  and the caller frees what it passed before the reactor finishes.
"""

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.initiator import hostile_cases, run_initiator

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
ASAN = NATIVE / "build-asan"
REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
           "SUMMARY: UndefinedBehaviorSanitizer")

pytestmark = pytest.mark.timeout(900)


def _env():
    return dict(os.environ,
                ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23",
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=24",
                LSAN_OPTIONS="exitcode=23")


@pytest.fixture(scope="module")
def asan_build():
    res = subprocess.run(["make", "-C", str(NATIVE), "SANITIZE=1", "-j2", "tests", "tools"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return ASAN


def _clean(text):
    found = [r for r in REPORTS if r in text]
    assert not found, text[-8000:]


def test_c_unit_tests(asan_build):
    res = subprocess.run(["make", "-C", str(NATIVE), "SANITIZE=1", "test"], env=_env(),
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-8000:]
    assert out.count("== ") >= 10, out[-2000:]
    _clean(out)


class _Target:
    """build-asan/tools/vhost_target in its own process."""

    def __init__(self, binary, sock_dir, *args):
        self.sock_dir = Path(sock_dir)
        self.err_path = self.sock_dir / "target.err"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([str(binary), "--socket-dir", str(sock_dir), "--no-pin",
                                      *args], stdout=subprocess.PIPE, stderr=self.err,
                                     env=_env(), text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "READY", self.log()

    def log(self):
        self.err.flush()
        return self.err_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            rc = None
        self.proc.stdout.close()
        self.err.close()
        return rc


def test_hostile_cases_against_asan_target(asan_build, native_tools):
    initiator = native_tools / "vhost_initiator"
    with tempfile.TemporaryDirectory(prefix="sbsan-", dir="/tmp") as sock_dir:
        target = _Target(asan_build / "tools" / "vhost_target", sock_dir,
                         "--malloc", "m0:32768:512", "--malloc", "m1:32768:512",
                         "--malloc", "m2:8192:4096", "--ctrlr", "c0:m0:4:packed",
                         "--ctrlr", "c1:m1", "--ctrlr", "ro:m2:1:ro")
        rc = None
        try:
            sock = Path(sock_dir)
            bystander = subprocess.Popen(
                [str(initiator), "--socket", str(sock / "c1"), "--rw", "randrw", "--verify",
                 "--size-limit", "2M", "--time", "20", "--interrupt", "--qd", "4"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                cases = hostile_cases(initiator)
                res = run_initiator(initiator, sock / "c0", "--hostile", "all", "--json",
                                    timeout=300)
                assert res.rc == 0, res.stdout + res.stderr
                assert [c["case"] for c in res.json if c["ran"]] == cases, res.stdout
                res = run_initiator(initiator, sock / "ro", "--hostile", "write-readonly",
                                    "--json", timeout=60)
                assert res.rc == 0 and res.json[0]["io_status"] != 0, res.stdout
                out, _ = bystander.communicate(timeout=120)
            finally:
                if bystander.poll() is None:
                    bystander.kill()
                    bystander.wait()
            assert bystander.returncode == 0, out
            # ... and as the other front-ends speak (vhost_initiator --frontend).
            for mode in ([], ["--interrupt", "--event-idx"], ["--queues", "4", "--qd", "8"],
                         ["--packed", "--interrupt", "--event-idx", "--queues", "2"],
                         ["--frontend", "spdk"], ["--frontend", "dpdk", "--queues", "2"],
                         ["--frontend", "rust-vmm", "--queues", "2"]):
                res = run_initiator(initiator, sock / "c0", "--rw", "randrw", "--verify",
                                    "--size-limit", "4M", "--time", "2", "--json", *mode)
                assert res.rc == 0, res.stdout + res.stderr
                assert res.json["readback"]["verified"] > 0
            assert target.proc.poll() is None, target.log()
        finally:
            rc = target.stop()
        log = target.err_path.read_text(errors="replace")
        # Exit 0: clean shutdown and LeakSanitizer found nothing (it exits 23).
        assert rc == 0, log[-8000:]
        _clean(log)
        # The refusals were logged (the target did see the hostile input).
        assert "guest violation" in log, log[-3000:]


def _copy_tree(dst):
    """The checkout's tracked and new source files, without build products."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if not src.is_file():
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(src.read_bytes())


def test_python_functional_tests_under_asan(tmp_path):
    """The engine's Python functional and isolation tests on an ASan+UBSan extension.

    CPython is not leak-clean, so LeakSanitizer is off here (the C target
    test above covers leaks); any ASan or UBSan report fails the test.
    """
    tree = tmp_path / "tree"
    _copy_tree(tree)
    build = subprocess.run(
        [os.sys.executable, "spdk_backend/_build/build_native.py"],
        cwd=tree, env=dict(os.environ, SB_SANITIZE="1"), capture_output=True, text=True,
        timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (ext,) = (tree / "spdk_backend").glob("_native*.so")
    assert b"__asan_init" in ext.read_bytes(), "the extension is not instrumented"
    libs = [subprocess.run(["gcc", "-print-file-name=%s" % lib], capture_output=True,
                           text=True, check=True).stdout.strip()
            for lib in ("libasan.so", "libubsan.so")]
    env = dict(os.environ, PYTHONPATH=str(tree), LD_PRELOAD=":".join(libs),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=23",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=24")
    which = subprocess.run([os.sys.executable, "-c",
                            "import spdk_backend._native as n; print(n.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, timeout=60)
    assert which.stdout.strip() == str(ext), which.stdout + which.stderr
    res = subprocess.run(
        [os.sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/functional/engine", "tests/functional/test_isolation.py",
         # rates and CPU-time assertions measure the sanitizer, not the engine
         "-k", "not qos_limit_holds and not idle_engine_sleeps and "
               "not spinning_reactor_yields"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=1200)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-8000:]
    assert " passed" in out, out[-2000:]
    _clean(out)
