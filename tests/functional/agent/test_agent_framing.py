"""JSON-RPC framing and concurrency against the real daemon."""

import json
import socket
import threading
import time

from spdk_backend.agent import client as agent_client


def connect(agent):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(agent.rpc_socket)
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
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk.decode()
        while True:
            buf = buf.lstrip()
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break
            out.append(obj)
            buf = buf[end:]
    return out


def test_one_byte_at_a_time(agent):
    data = req("bdev_malloc_create", {"name": "m0", "num_blocks": 64, "block_size": 512},
               req_id="x") + b"\n"
    with connect(agent) as sock:
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
        assert read_replies(sock, 1) == [{"jsonrpc": "2.0", "id": "x", "result": "m0"}]


def test_many_requests_in_one_write(agent):
    data = b"".join(req("bdev_null_create", {"name": "n%d" % i, "num_blocks": 8,
                                             "block_size": 512}, req_id=i)
                    for i in range(100))
    with connect(agent) as sock:
        sock.sendall(data)
        replies = read_replies(sock, 100)
    assert [(r["id"], r["result"]) for r in replies] == [(i, "n%d" % i) for i in range(100)]


def test_batch_and_notification(agent):
    batch = [json.loads(req("bdev_malloc_create", {"name": "b0", "num_blocks": 8,
                                                   "block_size": 512}, req_id=1)),
             json.loads(req("bdev_malloc_create", {"name": "b1", "num_blocks": 8,
                                                   "block_size": 512}, req_id=None)),
             json.loads(req("bdev_get_bdevs", {"name": "b0"}, req_id=3)),
             json.loads(req("bdev_get_bdevs", {"name": "zz"}, req_id=4))]
    with connect(agent) as sock:
        sock.sendall(json.dumps(batch).encode())
        (replies,) = read_replies(sock, 1)
        assert [r["id"] for r in replies] == [1, 3, 4]
        assert replies[0]["result"] == "b0"
        assert replies[1]["result"][0]["name"] == "b0"
        assert replies[2]["error"]["code"] == -19
        sock.sendall(req("bdev_get_bdevs", {"name": "b1"}, req_id=5))
        (reply,) = read_replies(sock, 1)
        assert reply["result"][0]["name"] == "b1"  # the notification ran


def test_parse_error_closes_connection_only(agent):
    with connect(agent) as sock:
        sock.sendall(b'{"jsonrpc":"2.0","method":"spdk_get_version","id":1}{oops}')
        replies = read_replies(sock, 3)
        assert replies[0]["id"] == 1 and replies[1]["error"]["code"] == -32700
        assert len(replies) == 2  # then EOF
    with agent.client() as c:
        assert c.call("spdk_get_version")


def test_invalid_request_keeps_connection(agent):
    with connect(agent) as sock:
        sock.sendall(b'{"jsonrpc":"1.0","method":"x","id":1} 42 '
                     + req("spdk_get_version", req_id=2))
        replies = read_replies(sock, 3)
    assert [r.get("error", {}).get("code") for r in replies] == [-32600, -32600, None]


def test_concurrent_clients_and_idle_connections(agent):
    idle = [connect(agent) for _ in range(20)]  # connected, never sending
    half = connect(agent)
    half.sendall(b'{"jsonrpc":"2.0","method":"spdk_get_ver')  # never finished
    errors = []

    def worker(n):
        try:
            with agent_client.AgentClient(agent.rpc_socket, timeout=60) as c:
                for i in range(25):
                    name = "t%d_%d" % (n, i)
                    c.call("bdev_malloc_create", name=name, num_blocks=8, block_size=512)
                    c.call("vhost_create_blk_controller", ctrlr="c" + name, dev_name=name)
                    assert c.call("vhost_get_controllers", name="c" + name)
                    c.call("vhost_delete_controller", ctrlr="c" + name)
                    c.call("bdev_malloc_delete", name=name)
        except Exception as exc:  # reported below
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert time.monotonic() - start < 120
    with agent.client() as c:
        assert c.call("bdev_get_bdevs") == [] and c.call("vhost_get_controllers") == []
    for s in idle + [half]:
        s.close()
