"""Isolation: a guest reaches only its own memory and its own disk.

Data path (a real engine, front-ends built by hand with
tests/support/vhost_frontend.py): descriptors that point outside the
guest's memory, into another controller's guest memory (valid there, not
here) or at the backend's own memory are refused - the request never
completes, no byte of the other memory or of the disk changes, the
controller is marked broken and serves the next session; one front-end per
controller socket at a time.

Control path (a real agent): the RPC socket, the vhost socket directory,
the controller sockets and the state are created with restrictive modes;
bdev_uring_create / bdev_aio_create serve only files under
``allowed_backing_dirs`` (no symlink or ``..`` escape) and block devices
only when ``allowed_block_devices`` names them.
"""

import errno
import os
import re
import shutil
import socket
import stat
import struct
import tempfile

import pytest

from spdk_backend.conf import agent as agent_conf
from spdk_backend.conf import volume as volume_conf
from tests.support import agent_proc
from tests.support import vhost_frontend as vf
from tests.support.vhost_frontend import (DATA, Frontend, VIRTIO_BLK_T_IN,
                                          VIRTIO_BLK_T_OUT)

pytestmark = pytest.mark.timeout(300)

MB = 1 << 20
GPA_A = 0              # guest A's RAM: [0, 1 MiB)
GPA_B = 16 * MB        # guest B's RAM: [16 MiB, 17 MiB)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    from spdk_backend.engine import Engine

    sock_dir = tmp_path_factory.mktemp("iso")
    eng = Engine(core_mask="0x1", vhost_socket_dir=str(sock_dir), max_delay_us=1000,
                 no_pin=True)
    eng.start()
    try:
        eng.bdev_malloc_create("ma", 4 * MB // 512, 512)
        eng.bdev_malloc_create("mb", 4 * MB // 512, 512)
        eng.vhost_create_blk_controller("a", "ma")
        eng.vhost_create_blk_controller("b", "mb")
        yield eng, sock_dir
    finally:
        eng.stop()


def _info(eng, name):
    (info,) = eng.vhost_get_controllers(name)
    return info


def _assert_refused(eng, fe, rtype, gpa, why):
    """The request never completes and the engine says why."""
    eng.log_clear()
    status = fe.request(rtype, 0, gpa, 512, wait=1.5)
    assert status is None, "request on gpa %#x completed with status %r" % (gpa, status)
    assert _info(eng, "a")["broken"]
    assert re.search(why, eng.log_recent()), eng.log_recent()


def _fresh_session_works(sock):
    """After a refusal the controller serves the next, well-behaved session."""
    with Frontend(sock, gpa=GPA_A) as fe:
        fe.connect()
        fe.fill(DATA, b"\x42" * 512)
        assert fe.request(VIRTIO_BLK_T_OUT, 8, GPA_A + DATA, 512) == 0
        assert fe.request(VIRTIO_BLK_T_IN, 8, GPA_A + DATA + 0x1000, 512) == 0
        assert fe.read(DATA + 0x1000, 512) == b"\x42" * 512


def test_descriptor_outside_guest_memory(target):
    eng, sock_dir = target
    with Frontend(sock_dir / "a", gpa=GPA_A) as fe:
        fe.connect()
        # Right after the region, far away, and straddling its end.
        _assert_refused(eng, fe, VIRTIO_BLK_T_IN, GPA_A + MB, "outside guest memory")
    for gpa in (0x40000000, GPA_A + MB - 256):
        with Frontend(sock_dir / "a", gpa=GPA_A) as fe:
            fe.connect()
            _assert_refused(eng, fe, VIRTIO_BLK_T_IN, gpa, "outside guest memory")
    _fresh_session_works(sock_dir / "a")


def _not_engine_written(ram):
    """A guest's RAM but its used ring's page: the engine writes that page
    for B itself at any time (the used ring's NO_NOTIFY flag while its
    reactor is awake, cleared before it sleeps)."""
    return ram[:vf.USED] + ram[vf.HDR:]


def test_descriptor_into_another_guests_memory(target):
    """gpa valid in B's memory table, not in A's: A can neither read B's
    memory (a write request whose data is there) nor write it (a read)."""
    eng, sock_dir = target
    with Frontend(sock_dir / "a", gpa=GPA_A) as fe_a:
        # (The controller claims its bdev: the pattern goes in through it.)
        fe_a.connect()
        fe_a.fill(DATA, b"\xaa" * 512)
        assert fe_a.request(VIRTIO_BLK_T_OUT, 0, GPA_A + DATA, 512) == 0
    with Frontend(sock_dir / "b", gpa=GPA_B) as fe_b:
        fe_b.connect()
        fe_b.fill(DATA, b"\xbb" * (MB // 2))
        before = _not_engine_written(fe_b.read(0, MB))
        for rtype in (VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT):
            with Frontend(sock_dir / "a", gpa=GPA_A) as fe_a:
                fe_a.connect()
                _assert_refused(eng, fe_a, rtype, GPA_B + DATA, "outside guest memory")
        # B's memory untouched, A's disk did not get B's bytes.
        assert _not_engine_written(fe_b.read(0, MB)) == before
        assert eng.bdev_io("ma", "read", offset=0, length=512) == b"\xaa" * 512
        # B was not disturbed: its session still does I/O.
        assert fe_b.request(VIRTIO_BLK_T_OUT, 0, GPA_B + DATA, 512) == 0
        assert not _info(eng, "b")["broken"]
    assert eng.bdev_io("mb", "read", offset=0, length=512) == b"\xbb" * 512
    _fresh_session_works(sock_dir / "a")


_SECRET = b"backend secret" * 64


def _own_mappings():
    """Addresses of the backend's own memory (the engine runs in this process):
    a live object of ours, its heap and stack, and its mapping of a guest's RAM."""
    addrs = [("object", id(_SECRET))]
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            start = int(fields[0].split("-")[0], 16)
            name = fields[5] if len(fields) > 5 else ""
            if name in ("[heap]", "[stack]") or "sb-fe-ram" in name:
                addrs.append((name, start))
    return addrs


def test_descriptor_at_backend_memory(target):
    eng, sock_dir = target
    with Frontend(sock_dir / "a", gpa=GPA_A) as fe:
        fe.connect()
        targets = _own_mappings()
    assert len(targets) >= 3, targets
    for name, addr in targets[:5]:
        with Frontend(sock_dir / "a", gpa=GPA_A) as fe:
            fe.connect()
            # A read would make the device write the disk's bytes there.
            _assert_refused(eng, fe, VIRTIO_BLK_T_IN, addr, "outside guest memory")
    _fresh_session_works(sock_dir / "a")


def test_one_frontend_per_socket(target):
    eng, sock_dir = target
    with Frontend(sock_dir / "a", gpa=GPA_A) as first:
        first.connect()
        second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        second.settimeout(5)
        try:
            second.connect(str(sock_dir / "a"))
            # The device closes the extra connection without a word.
            try:
                second.sendall(struct.pack("<III", 1, 1, 0))
                assert second.recv(64) == b""
            except (BrokenPipeError, ConnectionResetError):
                pass
        finally:
            second.close()
        assert first.alive()
        assert first.request(VIRTIO_BLK_T_OUT, 0, GPA_A + DATA, 512) == 0
        assert _info(eng, "a")["connected"]


# ---- control path: modes and allowed backing files (a real agent) ----


@pytest.fixture
def short_tmp():
    """A short temp dir (unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="sbi-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(short_tmp, tmp_path):
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    proc = agent_proc.AgentProcess(short_tmp, allowed_backing_dirs=str(volumes))
    proc.volumes = volumes
    with proc:
        yield proc


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_modes(agent):
    with agent.client() as c:
        c.call("bdev_malloc_create", name="m0", num_blocks=2048, block_size=512)
        c.call("vhost_create_blk_controller", ctrlr="c0", dev_name="m0")
    # Nobody but the owner (and its group, for QEMU) may connect or look.
    assert _mode(agent.rpc_socket) == 0o660
    assert _mode(os.path.join(agent.vhost_socket_dir, "c0")) == 0o660
    assert _mode(agent.vhost_socket_dir) & 0o007 == 0
    assert _mode(agent.state_dir) & 0o027 == 0
    assert _mode(agent.state_file) & 0o077 == 0


def test_allowed_backing_dirs_default_matches_volume_dir():
    (opt,) = [o for o in agent_conf.agent_opts if o.name == "allowed_backing_dirs"]
    (vol,) = [o for o in volume_conf.volume_opts if o.name == "spdk_vhost_volume_dir"]
    assert opt.default == [vol.default]
    (dev,) = [o for o in agent_conf.agent_opts if o.name == "allowed_block_devices"]
    assert dev.default == []


def _refused(agent, method, filename, why):
    with agent.client() as c:
        with pytest.raises(Exception) as err:
            c.call(method, name="x", filename=str(filename))
        assert why in str(err.value), str(err.value)
        assert "error %d:" % -errno.EACCES in str(err.value), str(err.value)
        assert "x" not in [b["name"] for b in c.call("bdev_get_bdevs")]


def test_backing_file_inside_allowed_dir(agent):
    img = agent.volumes / "v0.img"
    img.write_bytes(b"\0" * MB)
    with agent.client() as c:
        for method in ("bdev_uring_create", "bdev_aio_create"):
            name = method.split("_")[1]
            assert c.call(method, name=name, filename=str(img)) == name
            c.call(method.replace("create", "delete"), name=name)


@pytest.mark.parametrize("method", ["bdev_uring_create", "bdev_aio_create"])
def test_backing_file_escapes_refused(agent, tmp_path, method):
    outside = tmp_path / "outside.img"
    outside.write_bytes(b"\0" * MB)
    _refused(agent, method, outside, "outside allowed_backing_dirs")
    # ".." and a symbolic link inside the allowed directory both resolve out.
    _refused(agent, method, str(agent.volumes) + "/../outside.img",
             "outside allowed_backing_dirs")
    link = agent.volumes / "link.img"
    link.symlink_to(outside)
    _refused(agent, method, link, "outside allowed_backing_dirs")
    # A directory link: volumes/sub -> tmp_path.
    (agent.volumes / "sub").symlink_to(tmp_path)
    _refused(agent, method, agent.volumes / "sub" / "outside.img",
             "outside allowed_backing_dirs")
    # The allowed directory itself, and a character device.
    _refused(agent, method, agent.volumes, "neither a regular file nor a block device")
    _refused(agent, method, "/dev/null", "neither a regular file nor a block device")


def _block_device(where):
    """A block device node: made with mknod (loop7) or an existing one."""
    node = where / "blk0"
    try:
        os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(7, 7))
        return node
    except PermissionError:
        pass
    for name in sorted(os.listdir("/dev")):
        path = os.path.join("/dev", name)
        if stat.S_ISBLK(os.stat(path).st_mode):
            return path
    raise AssertionError("no block device node available")


def test_block_devices_only_when_configured(short_tmp, tmp_path):
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    dev = _block_device(volumes)
    real = os.path.realpath(dev)
    with agent_proc.AgentProcess(short_tmp, allowed_backing_dirs=str(volumes)) as agent:
        # Even inside an allowed directory: a disk is not a file.
        _refused(agent, "bdev_uring_create", dev, "not in allowed_block_devices")
    with agent_proc.AgentProcess(short_tmp, allowed_backing_dirs=str(volumes),
                                 allowed_block_devices=real) as agent:
        with agent.client() as c:
            try:
                c.call("bdev_uring_create", name="d0", filename=str(dev))
                c.call("bdev_uring_delete", name="d0")
            except Exception as exc:
                # The node may lead nowhere (no loop device behind it): the
                # engine's open fails, but the policy let it through.
                assert "allowed_block_devices" not in str(exc), str(exc)
