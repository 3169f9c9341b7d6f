"""Crash and restart: no acknowledged write is lost, state is never corrupt.

1. The process serving a controller is SIGKILLed at a random moment of a
   write load, 20 times in a row, and started again: every controller comes
   back and every write the front-end saw acknowledged before the kill is
   on the disk (a write in flight at the kill may or may not be; nothing
   else may be there).  Two servers: native/tools/vhost_target (the engine
   alone) and the agent (which replays its saved state on start).

   The front-end is tests/support/vhost_frontend.py with 8 requests in
   flight: unlike the C initiator it records which (block, generation) each
   acknowledged write carried, so the check after the restart is exact.
   Each 4 KiB block holds its number and generation in every 16 bytes.

2. The agent SIGKILLed at random moments of a loop of state-changing RPCs,
   20 times: it always starts again, and its state file is the state before
   or after the call in progress - never corrupt, never anything else.

3. A full file system under ``state_dir``: a state-changing RPC fails with
   a clear error and the state file is unchanged.
"""

import errno
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from spdk_backend.agent import state as agent_state
from tests.support import agent_proc
from tests.support.vhost_frontend import (DeviceGone, Frontend, Pipeline, VIRTIO_BLK_T_IN,
                                          VIRTIO_BLK_T_OUT)

pytestmark = pytest.mark.timeout(900)

BS = 4096
BLOCKS = 256            # the first MiB of the disk is written
ITERATIONS = int(os.environ.get("SB_CRASH_ITERATIONS", "20"))
QD = 8


def _block(block, gen):
    return struct.pack("<QQ", block, gen) * (BS // 16)


def _gen_of(block, data):
    """Generation of a block read back; 0 = never written; AssertionError if torn."""
    if data == bytes(BS):
        return 0
    b, gen = struct.unpack_from("<QQ", data)
    assert b == block and data == _block(block, gen), \
        "block %d holds neither zeros nor one whole write (%r...)" % (block, data[:32])
    return gen


@pytest.fixture
def short_tmp():
    path = tempfile.mkdtemp(prefix="sbc-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


class _Ledger:
    """What the disk must hold: per block the last acknowledged generation,
    and the generation that was in flight when the server died."""

    def __init__(self):
        self.acked = {}
        self.maybe = {}
        self.gen = 0
        self.total_acked = 0

    def verify(self, fe):
        pipe = Pipeline(fe, qd=QD)
        pending = list(range(BLOCKS))
        seen = {}
        while pending or pipe.busy:
            while pending and pipe.can_submit():
                b = pending.pop()
                pipe.submit(VIRTIO_BLK_T_IN, b * BS // 512, BS, b)
            got = pipe.reap(timeout=5)
            if not got:
                raise DeviceGone("no completion in 5 s during the verify pass")
            for b, status, data in got:
                assert status == 0, "read of block %d failed: status %d" % (b, status)
                seen[b] = _gen_of(b, data)
        for b in range(BLOCKS):
            allowed = {self.acked.get(b, 0)}
            if b in self.maybe:
                allowed.add(self.maybe[b])
            assert seen[b] in allowed, (
                "block %d: generation %d on disk, acknowledged %s, in flight at the kill %s"
                % (b, seen[b], self.acked.get(b), self.maybe.get(b)))
            # Whatever is there now is the baseline for the next round.
            if seen[b]:
                self.acked[b] = seen[b]
        self.maybe = {}

    def write_until_dead(self, fe, dead, rng, arm):
        """Random 4 KiB writes until the server dies; records acknowledgements.
        ``arm()`` is called at the first acknowledgement (it starts the kill timer)."""
        pipe = Pipeline(fe, qd=QD)
        inflight = {}
        acked_now = 0
        last = time.monotonic()
        while True:
            while pipe.can_submit():
                b = rng.randrange(BLOCKS)
                if b in inflight:
                    break
                self.gen += 1
                inflight[b] = self.gen
                pipe.submit(VIRTIO_BLK_T_OUT, b * BS // 512, _block(b, self.gen), b)
            got = pipe.reap(timeout=0.2)
            for b, status, _ in got:
                assert status == 0, "write of block %d failed: status %d" % (b, status)
                self.acked[b] = inflight.pop(b)
                acked_now += 1
            if got:
                if acked_now == len(got):
                    arm()
                last = time.monotonic()
            elif dead.is_set() and time.monotonic() - last > 1.0:
                break
            elif time.monotonic() - last > 20:
                raise AssertionError("writes stalled while the server was alive")
        self.maybe = dict(inflight)
        self.total_acked += acked_now
        return acked_now


def _crash_loop(start, kill, sock, seed):
    ledger = _Ledger()
    rng = random.Random(seed)
    for it in range(ITERATIONS):
        start()
        with Frontend(sock, size=1 << 20, timeout=10) as fe:
            fe.connect()
            ledger.verify(fe)
            dead = threading.Event()

            def killer():
                kill()
                dead.set()

            # The kill lands 0.1-0.6 s after the first acknowledgement (a
            # loaded CI host may take a while to complete the first write).
            timer = threading.Timer(rng.uniform(0.1, 0.6), killer)
            try:
                acked = ledger.write_until_dead(fe, dead, rng, arm=timer.start)
            finally:
                timer.cancel()
                if timer.is_alive():
                    timer.join()
                if not dead.is_set():
                    killer()
            assert acked > 0, "iteration %d: no write acknowledged before the kill" % it
    # After the last kill: everything acknowledged is still there.
    start()
    with Frontend(sock, size=1 << 20, timeout=10) as fe:
        fe.connect()
        ledger.verify(fe)
    print("%d kills, %d writes acknowledged and verified after restarts, %d blocks written"
          % (ITERATIONS, ledger.total_acked, len(ledger.acked)))
    return ledger


def test_engine_sigkill_during_writes(native_tools, short_tmp):
    image = short_tmp / "disk.img"
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    sock_dir = short_tmp / "vhost"
    sock_dir.mkdir()
    binary = native_tools / "vhost_target"
    procs = []

    def start():
        proc = subprocess.Popen([str(binary), "--socket-dir", str(sock_dir), "--no-pin",
                                 "--uring", "u0:%s" % image, "--ctrlr", "c0:u0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "READY"

    def kill():
        procs[-1].kill()
        procs[-1].wait(10)

    try:
        ledger = _crash_loop(start, kill, sock_dir / "c0", seed=1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
            p.stdout.close()
    assert ledger.total_acked >= ITERATIONS
    assert len(procs) == ITERATIONS + 1


def test_agent_sigkill_during_writes(short_tmp):
    volumes = short_tmp / "volumes"
    volumes.mkdir()
    image = volumes / "disk.img"
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    agent = agent_proc.AgentProcess(str(short_tmp), allowed_backing_dirs=str(volumes))
    sock = Path(agent.vhost_socket_dir) / "c0"
    starts = []

    def start():
        agent.start()
        with agent.client() as c:
            if not starts:
                c.call("bdev_uring_create", name="u0", filename=str(image))
                c.call("vhost_create_blk_controller", ctrlr="c0", dev_name="u0")
            # Every bdev and controller is back after the restart.
            assert [b["name"] for b in c.call("bdev_get_bdevs")] == ["u0"]
            assert [x["ctrlr"] for x in c.call("vhost_get_controllers")] == ["c0"]
        starts.append(1)

    try:
        ledger = _crash_loop(start, agent.kill9, sock, seed=2)
    finally:
        agent.stop()
        agent.kill9()
    assert ledger.total_acked >= ITERATIONS
    assert "Traceback" not in agent.log()


# ---- state file ----


def _bdev_names(config):
    for sub in (config or {}).get("subsystems", []):
        if sub["subsystem"] == "bdev":
            return [c["params"]["name"] for c in sub["config"]
                    if c["method"] == "bdev_malloc_create"]
    return []


def test_agent_sigkill_while_saving_state(short_tmp):
    """A loop of creates/deletes; the kill lands anywhere, often inside the
    state write (every call rewrites and fsyncs the file)."""
    agent = agent_proc.AgentProcess(str(short_tmp))
    rng = random.Random(3)
    names = []          # the bdevs after every acknowledged call
    inflight = {"next": []}  # the bdevs if the call in progress completes
    try:
        for it in range(ITERATIONS):
            agent.start()
            config = agent_state.load_file(agent.state_file)
            on_disk = _bdev_names(config)
            # The old state or the new one: what was acknowledged, or that
            # plus the call in flight at the kill.
            assert on_disk in (names, inflight["next"]), (on_disk, names, inflight)
            names = on_disk
            with agent.client() as c:
                assert [b["name"] for b in c.call("bdev_get_bdevs")] == names
            stop = threading.Event()

            def churn():
                n = 0
                try:
                    with agent.client(timeout=10) as c:
                        while not stop.is_set():
                            n += 1
                            if names and rng.random() < 0.4:
                                nxt = names[:-1]
                                inflight["next"] = nxt
                                c.call("bdev_malloc_delete", name=names[-1])
                            else:
                                nxt = names + ["m%d_%d" % (it, n)]
                                inflight["next"] = nxt
                                c.call("bdev_malloc_create", name=nxt[-1], num_blocks=64,
                                       block_size=512)
                            names[:] = nxt
                except Exception:
                    pass  # the agent died under us

            th = threading.Thread(target=churn)
            th.start()
            time.sleep(rng.uniform(0.05, 0.5))
            agent.kill9()
            stop.set()
            th.join(30)
            assert not th.is_alive()
        agent.start()
        config = agent_state.load_file(agent.state_file)
        assert _bdev_names(config) in (names, inflight["next"])
    finally:
        agent.stop()
        agent.kill9()


def test_full_disk_under_state_dir(short_tmp):
    state_dir = short_tmp / "state"
    state_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0750", "tmpfs",
                    str(state_dir)], check=True, timeout=30)
    try:
        agent = agent_proc.AgentProcess(str(short_tmp), state_dir=str(state_dir))
        with agent:
            with agent.client() as c:
                c.call("bdev_malloc_create", name="m0", num_blocks=64, block_size=512)
                acked = ["m0"]
                # Fill the file system (the agent's lock file stays).
                filler = state_dir / "filler"
                fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    while True:
                        os.write(fd, b"\0" * 4096)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                finally:
                    os.close(fd)
                # Appends go on in the log's last page while it has room.
                for n in range(1, 200):
                    try:
                        c.call("bdev_malloc_create", name="m%d" % n, num_blocks=64,
                               block_size=512)
                    except Exception as exc:  # the full disk
                        err, failed = exc, "m%d" % n
                        break
                    acked.append("m%d" % n)
                else:
                    pytest.fail("no write failed on a full disk")
                msg = str(err)
                assert "could not save its state" in msg and "No space left" in msg, msg
                # The files hold every answered change, whole; no temp file is left.
                assert set(_bdev_names(agent_state.load_file(agent.state_file))) == set(acked)
                json.loads(Path(agent.state_file).read_bytes())
                assert sorted(os.listdir(state_dir)) == sorted(
                    ["agent.lock", "config.json", "config.wal", "filler"]), \
                    os.listdir(state_dir)
                # Space back: the next change is saved again (with the one
                # that failed to be, which the agent kept).
                filler.unlink()
                c.call("bdev_malloc_create", name="last", num_blocks=64, block_size=512)
                assert set(_bdev_names(agent_state.load_file(agent.state_file))) == set(
                    acked + [failed, "last"])
    finally:
        subprocess.run(["umount", "-l", str(state_dir)], timeout=30)
