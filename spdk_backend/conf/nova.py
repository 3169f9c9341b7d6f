"""Options of the Nova libvirt volume driver ([spdk_vhost] group of nova.conf)."""

from oslo_config import cfg

nova_group = cfg.OptGroup(
    "spdk_vhost",
    title="spdk-backend Nova volume driver options",
    help="""
Options of ``spdk_backend.nova.volume.LibvirtVhostUserBlkVolumeDriver``, the
driver nova-compute uses for ``vhost_user_blk`` volumes when
``[DEFAULT] compute_driver = spdk_backend.nova.driver.LibvirtDriver``.
""")

nova_opts = [
    cfg.StrOpt(
        "agent_socket",
        default="/var/run/spdk-backend/agent.sock",
        help="""
RPC socket of this compute host's spdk-backend-agent.

Possible values:

* A path; nova-compute's user must be able to connect.
"""),
    cfg.IntOpt(
        "agent_timeout",
        default=60,
        min=1,
        help="""
Seconds to wait for the agent to answer one call.
"""),
    cfg.IntOpt(
        "reconnect_timeout",
        default=10,
        min=1,
        help="""
Seconds after which QEMU tries again to connect to a disk's socket after the
agent went away (``<reconnect enabled='yes' timeout='N'/>``), so an agent
restart does not cost the guest its disk.

Possible values:

* An integer >= 1 (libvirt refuses 0 with reconnection enabled).
"""),
    cfg.StrOpt(
        "rbd_ceph_conf",
        default="",
        help="""
This host's ceph.conf for rbd volumes, used instead of the path the Cinder
backend names (``spdk_vhost_rbd_ceph_conf`` in cinder.conf) when this host
keeps its copy elsewhere.

Possible values:

* Empty: use the path from the connection info.
* An absolute path readable by this host's agent.

Related options:

* ``rbd_keyring``
"""),
    cfg.StrOpt(
        "rbd_keyring",
        default="",
        help="""
This host's Ceph keyring for rbd volumes, used instead of the path the
Cinder backend names (``spdk_vhost_rbd_keyring`` in cinder.conf).

Possible values:

* Empty: use the path from the connection info.
* An absolute path readable by this host's agent.

Related options:

* ``rbd_ceph_conf``
"""),
]


def register_opts(conf):
    conf.register_group(nova_group)
    conf.register_opts(nova_opts, group=nova_group)


def list_opts():
    return {nova_group: nova_opts}
