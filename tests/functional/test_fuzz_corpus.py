"""The fuzz harnesses in CI: replay the saved corpus, then fuzz a little.

native/test/fuzz/ holds three harnesses (bench/fuzz.sh runs them for long):
the vhost-user message handler of a live engine, the virtqueue walker +
virtio-blk parser over a fuzzed guest-memory image, and the agent's
JSON-RPC framing and parameter decoding (atheris).  The saved corpus holds
hand-made seeds (make_seeds.py), the inputs the long runs kept, and the
reproducer of every bug they found (regress-*), so a regression fails
the replay at once; the short runs catch shallow new bugs.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "bench" / "fuzz.sh"
CORPUS = ROOT / "native" / "test" / "fuzz" / "corpus"
HARNESSES = ["vhost_msg", "vring", "jsonrpc"]
FUZZ_SECONDS = int(os.environ.get("SB_FUZZ_SECONDS", "20"))

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def fuzz_build():
    res = subprocess.run([str(FUZZ), "build"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return ROOT / "native" / "build-fuzz" / "fuzz"


def test_corpus_is_small_and_seeded():
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    assert total < 2 * 1024 * 1024, total
    for name in HARNESSES:
        files = [f.name for f in (CORPUS / name).iterdir()]
        assert any(f.startswith("seed-") for f in files), name


@pytest.mark.parametrize("name", HARNESSES)
def test_replay_saved_corpus(fuzz_build, tmp_path, name):
    env = dict(os.environ, SB_FUZZ_VOLUMES=str(tmp_path))
    res = subprocess.run([str(FUZZ), "replay", name], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "Done" in out or "Executed" in out, out[-2000:]
    for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                "deadly signal"):
        assert bad not in out, out[-4000:]


@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz_briefly(fuzz_build, tmp_path, name):
    env = dict(os.environ, FUZZ_OUT=str(tmp_path), SB_FUZZ_VOLUMES=str(tmp_path / "volumes"))
    (tmp_path / "volumes").mkdir()
    res = subprocess.run([str(FUZZ), "run", str(FUZZ_SECONDS), name], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=FUZZ_SECONDS + 300)
    log = (tmp_path / ("%s.log" % name)).read_text(errors="replace")
    findings = [p.name for p in (tmp_path / name).iterdir()
                if p.name.startswith(("crash-", "leak-", "timeout-"))]
    assert res.returncode == 0 and not findings, (res.stdout + log[-6000:])
    # It really ran: libFuzzer's final statistics report the executions.
    summary = res.stdout.strip().splitlines()[-1]
    execs = int(summary.split("execs=")[1].split()[0])
    assert execs > 100, summary


def test_framer_rejects_top_level_separator():
    """Regression of the first jsonrpc finding: "1," made FrameSplitter loop
    forever (an empty bare token that never consumed the ","), so one client
    could freeze the agent's event loop."""
    code = ("from spdk_backend.agent import jsonrpc\n"
            "for data in (b'1,', b',', b':', b'true :'):\n"
            "    out = jsonrpc.FrameSplitter().feed(data)\n"
            "    assert isinstance(out[-1], jsonrpc.ParseError), out\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=20)
    assert res.returncode == 0, res.stderr
