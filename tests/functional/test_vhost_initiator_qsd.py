"""The C vhost-user-blk initiator against qemu-storage-daemon.

qemu-storage-daemon is an independent, real vhost-user-blk target: if the
initiator's workload and verification pass here, they can be trusted to
judge our own target.  Its answers to the hostile cases are printed, never
asserted (they are QEMU's business).
"""

import struct
import time
import subprocess

import pytest

from tests.support.initiator import hostile_cases, run_initiator
from tests.support.qsd import QsdExport, file_blockdev, null_blockdev

pytestmark = pytest.mark.timeout(300)

DISK = 16 << 20
MAGIC = 0x524f54494e494256  # "VBINITOR", first word of every sector


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(DISK)
    return path


@pytest.fixture
def qsd(tmp_path, disk):
    with QsdExport(tmp_path / "vu.sock", file_blockdev(disk),
                   num_queues=4) as export:
        yield export


def _sector(path, n):
    with open(path, "rb") as f:
        f.seek(n * 512)
        return f.read(512)


def test_verify_writes_and_reads_whole_range(initiator, qsd, disk):
    res = run_initiator(initiator, qsd.sock_path, "--verify", "--seed", "11",
                        "--json")
    assert res.rc == 0, res.stderr + res.stdout
    blocks = DISK // 4096
    assert res.json["blocks"] == blocks
    assert res.json["prefill"]["writes"] == blocks
    assert res.json["readback"]["verified"] == blocks
    assert res.json["errors"] == 0 and res.json["verify_mismatches"] == 0
    # The data really is on the target's backing file, at the right place.
    for n in (0, 7, DISK // 512 - 1):
        magic, sector, gen, seed = struct.unpack_from("<QQQQ",
                                                      _sector(disk, n))
        assert (magic, sector, gen, seed) == (MAGIC, n, 1, 11)
    assert qsd.alive()


@pytest.mark.parametrize("mode", [["--interrupt"],
                                  ["--interrupt", "--event-idx"],
                                  ["--event-idx"]],
                         ids=["interrupt", "interrupt-event-idx",
                              "poll-event-idx"])
def test_randrw_multiqueue(initiator, qsd, mode):
    res = run_initiator(initiator, qsd.sock_path, "--rw", "randrw",
                        "--rwmixread", "70", "--queues", "2", "--qd", "8",
                        "--time", "1", "--verify", "--json", *mode)
    assert res.rc == 0, res.stderr + res.stdout
    main = res.json["main"]
    assert main["reads"] > 0 and main["writes"] > 0
    assert main["verified"] > 0
    assert main["iops"] > 0 and 0 < main["p50_us"] <= main["p99_us"]
    assert res.json["verify_mismatches"] == 0


def test_verify_read_detects_corruption(initiator, qsd, disk):
    res = run_initiator(initiator, qsd.sock_path, "--verify", "--seed", "5",
                        "--size-limit", "1M", "--rw", "randwrite",
                        "--ios", "2000", "--json")
    assert res.rc == 0, res.stderr + res.stdout
    res = run_initiator(initiator, qsd.sock_path, "--verify-read", "--seed",
                        "5", "--size-limit", "1M", "--json")
    assert res.rc == 0, res.stderr + res.stdout
    assert res.json["readback"]["verified"] == 256

    # One flipped byte in sector 1000 (block 125) must be found and named.
    with open(disk, "r+b") as f:
        f.seek(1000 * 512 + 100)
        byte = f.read(1)
        f.seek(1000 * 512 + 100)
        f.write(bytes([byte[0] ^ 0xff]))
    res = run_initiator(initiator, qsd.sock_path, "--verify-read", "--seed",
                        "5", "--size-limit", "1M", "--json")
    assert res.rc == 1
    assert res.json["verify_mismatches"] == 1
    assert "sector 1000" in res.json["first_error"]

    # A different seed is someone else's data.
    res = run_initiator(initiator, qsd.sock_path, "--verify-read", "--seed",
                        "6", "--size-limit", "1M", "--json")
    assert res.rc == 1 and res.json["verify_mismatches"] == 256


def test_sequential_and_null_target(initiator, tmp_path):
    with QsdExport(tmp_path / "null.sock", null_blockdev(64 << 20)) as q:
        for rw in ("read", "write", "randread"):
            res = run_initiator(initiator, q.sock_path, "--rw", rw,
                                "--ios", "3000", "--qd", "4", "--bs", "8192",
                                "--json")
            assert res.rc == 0, res.stderr + res.stdout
            assert res.json["main"]["ios"] == 3000


def test_target_death_is_reported(initiator, qsd):
    cmd = [str(initiator), "--socket", str(qsd.sock_path), "--rw",
           "randread", "--time", "30", "--io-timeout", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        qsd.proc.kill()
        qsd.proc.wait(10)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Either the I/O stalls (timeout) or the stop sequence fails: never 0.
    assert proc.returncode == 3, out + err


def test_readonly_target_refuses_write_workload(initiator, tmp_path, disk):
    with QsdExport(tmp_path / "ro.sock", file_blockdev(disk),
                   writable=False) as q:
        res = run_initiator(initiator, q.sock_path, "--rw", "randwrite",
                            "--ios", "10")
        assert res.rc == 2 and "read-only" in res.stderr
        res = run_initiator(initiator, q.sock_path, "--rw", "randread",
                            "--ios", "100")
        assert res.rc == 0, res.stderr


def test_hostile_cases_run_against_qsd(initiator, tmp_path, disk):
    """Informative: prints what qemu-storage-daemon does with each case.

    QEMU 7.2's daemon does not survive every case (it segfaults on an
    out-of-range vring index), so it is restarted whenever it died; only
    the initiator's own behaviour is asserted.
    """
    names = hostile_cases(initiator)
    assert len(names) >= 24
    lines = []
    for name in names:
        with QsdExport(tmp_path / "h.sock", file_blockdev(disk),
                       writable=(name != "write-readonly")) as q:
            res = run_initiator(initiator, q.sock_path, "--hostile", name,
                                "--json", timeout=60)
            time.sleep(0.2)
            assert res.rc in (0, 3), res.stderr
            (case,) = res.json
            assert case["case"] == name
            assert case["ran"] == (res.rc == 0)
            assert set(case) >= {"disconnected", "answering", "io_status",
                                 "good_io_after", "reply", "note"}
            lines.append("%-18s qsd %s  %s" % (
                name, "alive" if q.alive() else "DIED ", case))
    print("\nqemu-storage-daemon vs hostile cases:\n" + "\n".join(lines))
