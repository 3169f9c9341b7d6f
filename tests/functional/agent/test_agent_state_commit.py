"""The state file under concurrent clients: group commit keeps every answer durable.

Several connections create bdevs at once, so changes arrive while a state
write runs and share the next one (state.StateWriter).  A change is
answered only once a write that includes it is on disk: after a SIGKILL
right behind the last answer, the state file holds every bdev a client was
told about, and the agent replays them all.
"""

import json
import threading

import pytest

from spdk_backend.agent import state as agent_state

pytestmark = pytest.mark.timeout(120)

CLIENTS = 8
EACH = 25


def test_every_answered_change_survives_a_kill(agent):
    acked, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def worker(i):
        try:
            with agent.client(timeout=60) as c:
                start.wait()
                for k in range(EACH):
                    name = "n%d_%d" % (i, k)
                    c.call("bdev_null_create", name=name, num_blocks=64, block_size=512)
                    with lock:
                        acked.append(name)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert len(acked) == CLIENTS * EACH
    # No clean stop: whatever was answered must already be on disk.
    agent.kill9()
    config = agent_state.load_file(agent.state_file)
    (bdev_sub,) = [s for s in config["subsystems"] if s["subsystem"] == "bdev"]
    on_disk = {c["params"]["name"] for c in bdev_sub["config"]
               if c["method"] == "bdev_null_create"}
    assert on_disk == set(acked)
    agent.start()
    with agent.client() as c:
        assert {b["name"] for b in c.call("bdev_get_bdevs")} == set(acked)
    # The start folded the log into config.json: the renderer's own file
    # (one call per line, valid JSON), the whole configuration.
    raw = open(agent.state_file).read()
    assert json.loads(raw) == config
