"""vhost_socket_group / vhost_socket_mode: who may connect to controller sockets.

libvirt runs QEMU as its own user (libvirt-qemu:kvm on Debian), so the
agent opens each controller socket to a group (or to everyone) right after
creating it, and again when it restores its controllers at start.
"""

import grp
import os
import stat

import pytest

from tests.support import agent_proc

pytestmark = pytest.mark.timeout(120)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_group_and_mode_applied_at_create_and_after_restart(base_dir):
    kvm = grp.getgrnam("kvm").gr_gid
    with agent_proc.AgentProcess(base_dir, vhost_socket_group="kvm",
                                 vhost_socket_mode="0660") as agent:
        vdir = agent.vhost_socket_dir
        assert os.stat(vdir).st_gid == kvm and _mode(vdir) & 0o010
        with agent.client() as c:
            c.call("bdev_malloc_create", name="m0", num_blocks=2048, block_size=512)
            c.call("vhost_create_blk_controller", ctrlr="c0", dev_name="m0")
            sock = c.call("vhost_get_controllers", name="c0")[0]["socket"]
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode)
        assert st.st_gid == kvm and _mode(sock) == 0o660

        # The controller is restored at start (malloc data aside): same access.
        agent.stop()
        os.chmod(vdir, 0o700)
        agent.start()
        with agent.client() as c:
            c.call("vhost_get_controllers", name="c0")
        assert os.stat(sock).st_gid == kvm and _mode(sock) == 0o660
        assert _mode(vdir) & 0o010


def test_world_mode_opens_the_directory_too(base_dir):
    with agent_proc.AgentProcess(base_dir, vhost_socket_mode="0666") as agent:
        with agent.client() as c:
            c.call("bdev_malloc_create", name="m0", num_blocks=2048, block_size=512)
            c.call("vhost_create_blk_controller", ctrlr="c0", dev_name="m0")
        assert _mode(os.path.join(agent.vhost_socket_dir, "c0")) == 0o666
        assert _mode(agent.vhost_socket_dir) & 0o001


def test_default_mode_is_0660_without_group(base_dir):
    with agent_proc.AgentProcess(base_dir) as agent:
        with agent.client() as c:
            c.call("bdev_malloc_create", name="m0", num_blocks=2048, block_size=512)
            c.call("vhost_create_blk_controller", ctrlr="c0", dev_name="m0")
        sock = os.path.join(agent.vhost_socket_dir, "c0")
        assert _mode(sock) == 0o660
        assert os.stat(sock).st_gid == os.getgid()


def test_unknown_group_stops_the_agent_with_a_clear_error(base_dir):
    agent = agent_proc.AgentProcess(base_dir, vhost_socket_group="no-such-group-sb")
    with pytest.raises(RuntimeError) as err:
        agent.start()
    assert "no-such-group-sb" in str(err.value) and "not a known group" in str(err.value)
