"""SIGKILL in the middle of a stream of creates: every answered one comes back.

Several connections create bdevs without pause; the agent is killed while
calls are in flight (some appended and not answered, some half-written).
After the restart every bdev a client was told about is there, nothing
that was never asked for is, and the agent starts cleanly from its files
(config.json and its log, docs/agent.md "Persistence").  Three kills at
different points of the stream.
"""

import signal
import threading
import time

import pytest

from spdk_backend.agent import state as agent_state

pytestmark = pytest.mark.timeout(120)

CLIENTS = 4


def _bdev_names(config):
    (bdev_sub,) = [s for s in config["subsystems"] if s["subsystem"] == "bdev"]
    return {c["params"]["name"] for c in bdev_sub["config"] if "params" in c}


def test_every_answered_create_survives_a_kill_mid_stream(agent):
    asked, acked = set(), set()
    lock = threading.Lock()
    for round_ in range(3):
        stop = threading.Event()
        stopped = []

        def worker(i):
            try:
                with agent.client(timeout=10) as c:
                    k = 0
                    while not stop.is_set():
                        name = "r%d_c%d_%d" % (round_, i, k)
                        k += 1
                        with lock:
                            asked.add(name)
                        c.call("bdev_null_create", name=name, num_blocks=64, block_size=512)
                        with lock:
                            acked.add(name)
            except Exception as exc:  # the kill ends every connection
                stopped.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        # Let some answers out, then kill at a point that moves each round.
        deadline = time.monotonic() + 10
        while len(acked) < 40 * (round_ + 1) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.013 * round_)
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(20)
        assert len(stopped) == CLIENTS
        on_disk = _bdev_names(agent_state.load_file(agent.state_file))
        assert acked <= on_disk, sorted(acked - on_disk)[:10]
        assert on_disk <= asked, sorted(on_disk - asked)[:10]
        agent.start()
        with agent.client() as c:
            served = {b["name"] for b in c.call("bdev_get_bdevs")}
        assert acked <= served and served <= asked
        # Every start folds the log into config.json.
        assert _bdev_names(agent_state.load_file(agent.state_file)) == served
    assert len(acked) >= 120
