"""Options of the volume backends ([volume] group, or a Cinder backend section).

The Cinder driver appends these options to its backend section, so they carry
the ``spdk_vhost_`` prefix Cinder's shared option namespace needs.
"""

from oslo_config import cfg

volume_group = cfg.OptGroup(
    "volume",
    title="spdk-backend volume options",
    help="""
Where volumes served as vhost-user-blk disks live, and how the agent serves
them.  In cinder.conf these options go in the backend's own section.
""")

volume_opts = [
    cfg.StrOpt(
        "spdk_vhost_volume_backend",
        default="file",
        help="""
Volume backend that stores the volumes.

Possible values:

* ``file``: one sparse file per volume in ``spdk_vhost_volume_dir``, served by
  the agent's uring bdev; snapshots and clones are reflinks where the file
  system supports them, sparse copies otherwise.
* ``malloc``: volumes in the agent's memory, lost when it stops (tests only).
* Any other name installed in the ``spdk_backend.volume_backends`` namespace.

Related options:

* ``spdk_vhost_volume_dir``
"""),
    cfg.StrOpt(
        "spdk_vhost_volume_dir",
        default="/var/lib/spdk-backend/volumes",
        help="""
Directory of the volume and snapshot files of the ``file`` backend.

Compute hosts open the same paths through their own agent, so a deployment
with more than one host needs this directory on shared storage at the same
path everywhere.

Possible values:

* An absolute path to an existing directory writable by cinder-volume and
  readable and writable by the agents.

Related options:

* ``spdk_vhost_volume_backend``
"""),
    cfg.IntOpt(
        "spdk_vhost_block_size",
        default=512,
        choices=[512, 4096],
        help="""
Logical block size of the volumes as the guest sees them, in bytes.

Possible values:

* 512 or 4096.
"""),
    cfg.BoolOpt(
        "spdk_vhost_reflink",
        default=True,
        help="""
Take snapshots and clones of file volumes as reflinks (FICLONE) when the file
system supports them; otherwise, or when disabled, copy only the data extents.

Related options:

* ``spdk_vhost_volume_dir``
"""),
]


def register_opts(conf):
    conf.register_group(volume_group)
    conf.register_opts(volume_opts, group=volume_group)


def list_opts():
    return {volume_group: volume_opts}
