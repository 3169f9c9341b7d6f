"""The server over a real unix socket (fake engine): framing, batches,
notifications, errors, slow and concurrent clients."""

import json
import os
import socket
import stat
import threading
import time

import pytest

from spdk_backend.agent import client as agent_client
from tests.support import fake_engine


def connect(agent):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(agent.opts.rpc_socket)
    return sock


def req(method, params=None, req_id=1):
    r = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        r["params"] = params
    if req_id is not None:
        r["id"] = req_id
    return json.dumps(r).encode()


def read_replies(sock, count):
    decoder = json.JSONDecoder()
    buf, out = "", []
    while len(out) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk.decode()
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break
            out.append(obj)
            buf = buf[end:]
    return out


def assert_closed(sock):
    sock.settimeout(5)
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


def test_socket_mode(agent):
    st = os.stat(agent.opts.rpc_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_one_byte_at_a_time(agent):
    data = req("spdk_get_version", req_id=7)
    with connect(agent) as sock:
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
            time.sleep(0.001)
        (reply,) = read_replies(sock, 1)
    assert reply["id"] == 7 and reply["result"]["version"].startswith("spdk-backend")


def test_many_requests_in_one_write_answered_in_order(agent):
    data = b"".join(req("bdev_malloc_create", {"name": "m%d" % i, "num_blocks": 8,
                                               "block_size": 512}, req_id=i)
                    for i in range(30))
    with connect(agent) as sock:
        sock.sendall(data)
        replies = read_replies(sock, 30)
    assert [r["id"] for r in replies] == list(range(30))
    assert [r["result"] for r in replies] == ["m%d" % i for i in range(30)]


def test_replies_end_with_newline(agent):
    with connect(agent) as sock:
        sock.sendall(req("framework_wait_init"))
        data = b""
        while not data.endswith(b"\n"):
            data += sock.recv(4096)
    assert json.loads(data) == {"jsonrpc": "2.0", "id": 1, "result": True}


def test_batch_with_notification_and_errors(agent):
    batch = [json.loads(req("spdk_get_version", req_id=1)),
             json.loads(req("framework_wait_init", req_id=None)),  # notification
             json.loads(req("no_such_method", req_id=3)),
             {"jsonrpc": "2.0", "id": 4},
             5]
    with connect(agent) as sock:
        sock.sendall(json.dumps(batch).encode())
        (replies,) = read_replies(sock, 1)
    assert [r["id"] for r in replies] == [1, 3, 4, None]
    assert "result" in replies[0]
    assert replies[1]["error"]["code"] == -32601
    assert replies[2]["error"]["code"] == -32600
    assert replies[3]["error"]["code"] == -32600


def test_empty_batch_and_all_notification_batch(agent):
    with connect(agent) as sock:
        sock.sendall(b"[]")
        (reply,) = read_replies(sock, 1)
        assert reply["error"]["code"] == -32600 and reply["id"] is None
        sock.sendall(json.dumps([json.loads(req("framework_wait_init", req_id=None))])
                     .encode() + req("spdk_get_version", req_id=9))
        (reply,) = read_replies(sock, 1)
        assert reply["id"] == 9  # the batch of notifications got no reply


def test_notifications_get_no_reply_even_on_error(agent):
    with connect(agent) as sock:
        sock.sendall(req("no_such", req_id=None) + req("bdev_malloc_create", {},
                                                         req_id=None)
                     + req("bdev_malloc_create", {"name": "n", "num_blocks": 8,
                                                  "block_size": 512}, req_id=None)
                     + req("framework_wait_init", req_id="last"))
        (reply,) = read_replies(sock, 1)
    assert reply["id"] == "last"
    assert "n" in agent.engine.bdevs  # the notification was executed


def test_parse_error_replies_and_closes(agent):
    with connect(agent) as sock:
        sock.sendall(req("spdk_get_version", req_id=1) + b'{"jsonrpc": "2.0", tru}')
        replies = read_replies(sock, 2)
        assert replies[0]["id"] == 1
        assert replies[1]["id"] is None and replies[1]["error"]["code"] == -32700
        assert_closed(sock)
    with connect(agent) as sock:  # the server lives on
        sock.sendall(req("spdk_get_version"))
        assert read_replies(sock, 1)[0]["result"]


def test_garbage_bytes_parse_error(agent):
    with connect(agent) as sock:
        sock.sendall(b"}\xff\xfe not json")
        (reply,) = read_replies(sock, 1)
        assert reply["error"]["code"] == -32700
        assert_closed(sock)


def test_unknown_method_and_invalid_params_keep_connection(agent):
    with connect(agent) as sock:
        sock.sendall(req("nope", req_id=1))
        sock.sendall(req("bdev_null_create", {"name": "x"}, req_id=2))
        sock.sendall(req("spdk_get_version", req_id=3))
        replies = read_replies(sock, 3)
    assert replies[0]["error"]["code"] == -32601 and "nope" in replies[0]["error"]["message"]
    assert replies[1]["error"]["code"] == -32602
    assert "num_blocks" in replies[1]["error"]["message"]
    assert "result" in replies[2]


def test_engine_errors_are_negative_errno(agent):
    c = agent_client.AgentClient(agent.opts.rpc_socket, timeout=10)
    with c:
        c.call("bdev_malloc_create", name="a", num_blocks=8, block_size=512)
        with pytest.raises(Exception) as err:
            c.call("bdev_malloc_create", name="a", num_blocks=8, block_size=512)
        assert err.value.code == -17 and "already exists" in str(err.value)
        with pytest.raises(Exception) as err:
            c.call("bdev_malloc_create", name="b", num_blocks=8, block_size=520)
        assert err.value.code == -22
        with pytest.raises(Exception) as err:
            c.call("bdev_get_bdevs", name="zzz")
        assert err.value.code == -19 and "zzz" in str(err.value)


def test_get_bdevs_timeout_waits_without_blocking_others(agent):
    c = agent_client.AgentClient(agent.opts.rpc_socket, timeout=10)
    result = {}

    def waiter():
        with agent_client.AgentClient(agent.opts.rpc_socket, timeout=10) as w:
            result["r"] = w.call("bdev_get_bdevs", name="late", timeout=3000)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    with c:
        # The worker thread is free while the first call waits.
        c.call("bdev_malloc_create", name="late", num_blocks=8, block_size=512)
    t.join(10)
    assert result["r"][0]["name"] == "late"
    with agent_client.AgentClient(agent.opts.rpc_socket, timeout=10) as c2:
        start = time.monotonic()
        with pytest.raises(Exception) as err:
            c2.call("bdev_get_bdevs", name="never", timeout=200)
        assert err.value.code == -19 and time.monotonic() - start >= 0.2


def test_slow_engine_call_does_not_block_inline_methods(agent):
    agent.engine.block.clear()
    try:
        t = threading.Thread(target=lambda: agent_client.AgentClient(
            agent.opts.rpc_socket, timeout=20).call("bdev_get_bdevs"))
        t.start()
        time.sleep(0.2)
        with agent_client.AgentClient(agent.opts.rpc_socket, timeout=5) as c:
            start = time.monotonic()
            assert c.call("rpc_get_methods")
            assert time.monotonic() - start < 2
    finally:
        agent.engine.block.set()
        t.join(10)


def test_client_that_never_reads_is_dropped_and_others_served(short_tmp):
    with fake_engine.InProcessAgent(short_tmp, rpc_send_timeout=1) as running:
        c = agent_client.AgentClient(running.opts.rpc_socket, timeout=10)
        for i in range(200):
            c.call("bdev_malloc_create", name="m%03d" % i, num_blocks=8, block_size=512)
        bad = connect(running)
        bad.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        bad.settimeout(0.5)
        sent = 0
        try:
            for _ in range(200):  # each reply is ~100 KiB; never read them
                sent += bad.send(req("bdev_get_bdevs"))
        except (socket.timeout, BlockingIOError, ConnectionError):
            pass
        start = time.monotonic()
        assert len(c.call("bdev_get_bdevs")) == 200
        assert time.monotonic() - start < 2
        time.sleep(2.5)
        # Dropped: reading now hits EOF/reset after what was buffered.
        bad.settimeout(5)
        total = 0
        try:
            while True:
                chunk = bad.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
        except ConnectionResetError:
            pass
        bad.close()
        assert total < 200 * 100000
        c.close()


def test_concurrent_clients(agent):
    errors = []

    def worker(n):
        try:
            with agent_client.AgentClient(agent.opts.rpc_socket, timeout=20) as c:
                for i in range(20):
                    name = "w%d_%d" % (n, i)
                    assert c.call("bdev_null_create", name=name, num_blocks=8,
                                  block_size=512) == name
                    assert c.call("bdev_get_bdevs", name=name)[0]["name"] == name
                    assert c.call("bdev_null_delete", name=name) is True
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert agent.engine.bdevs == {}


def test_handler_bug_is_internal_error_and_server_survives(agent, monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(agent.engine, "reactors", broken)
    with connect(agent) as sock:
        sock.sendall(req("framework_get_reactors", req_id=1) + req("spdk_get_version",
                                                                   req_id=2))
        replies = read_replies(sock, 2)
    assert replies[0]["error"]["code"] == -32603 and "boom" in replies[0]["error"]["message"]
    assert "result" in replies[1]
