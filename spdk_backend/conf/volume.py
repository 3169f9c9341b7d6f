"""Options of the volume backends (a Cinder backend section).

Only cinder-volume reads them: the Cinder driver appends them to its backend
section (falling back to ``[backend_defaults]``), so they carry the
``spdk_vhost_`` prefix Cinder's shared option namespace needs.  The agent
does not read them; :func:`spdk_backend.conf.cinder.list_opts` lists them
for cinder.conf's sample.
"""

from oslo_config import cfg

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
* ``rbd``: one Ceph RBD image per volume in ``spdk_vhost_rbd_pool``, served by
  the agent's rbd bdev (librbd); snapshots and clones are RBD snapshots and
  copy-on-write clones, and any host whose agent reaches the cluster can
  serve any volume.
* Any other name installed in the ``spdk_backend.volume_backends`` namespace.

Related options:

* ``spdk_vhost_volume_dir`` (``file``)
* ``spdk_vhost_rbd_pool`` and the other ``spdk_vhost_rbd_*`` options (``rbd``)
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
    cfg.BoolOpt(
        "spdk_vhost_volume_dir_shared",
        default=False,
        help="""
The volume directory is on storage that other compute hosts see too (NFS,
a cluster file system), so a guest with a file volume may live-migrate: the
agent then serves a volume's file with a shared lock, which the agent on
the destination host takes too.  When false (the default) the file is
locked for this agent alone and a second server is refused.

Related options:

* ``spdk_vhost_volume_dir``
"""),
    cfg.StrOpt(
        "spdk_vhost_rbd_pool",
        default="rbd",
        help="""
Ceph pool that holds the volumes' RBD images (``rbd`` backend).

Possible values:

* The name of an existing pool initialised with ``rbd pool init``.

Related options:

* ``spdk_vhost_volume_backend``
* ``spdk_vhost_rbd_user``
"""),
    cfg.StrOpt(
        "spdk_vhost_rbd_ceph_conf",
        default="",
        help="""
Path of the ceph.conf that names the cluster's monitors (``rbd`` backend).

cinder-volume reads it, and the agents are told the same path: compute
hosts need the file at that path too (or set ``[spdk_vhost] rbd_ceph_conf``
in nova.conf).

Possible values:

* An absolute path readable by cinder-volume and the agents.
* Empty: librados' default search (``$CEPH_CONF``, /etc/ceph/ceph.conf).

Related options:

* ``spdk_vhost_rbd_keyring``
"""),
    cfg.StrOpt(
        "spdk_vhost_rbd_user",
        default="admin",
        help="""
Ceph user (without ``client.``) that cinder-volume and the agents connect as
(``rbd`` backend).

Possible values:

* A user with ``profile rbd`` capabilities on ``spdk_vhost_rbd_pool``.

Related options:

* ``spdk_vhost_rbd_keyring``
"""),
    cfg.StrOpt(
        "spdk_vhost_rbd_keyring",
        default="",
        help="""
Keyring file holding the key of ``spdk_vhost_rbd_user`` (``rbd`` backend).

Possible values:

* An absolute path readable by cinder-volume and the agents.
* Empty: the keyring that ceph.conf names (or librados' default).

Related options:

* ``spdk_vhost_rbd_user``
* ``spdk_vhost_rbd_ceph_conf``
"""),
    cfg.StrOpt(
        "spdk_vhost_rbd_cluster_name",
        default="",
        help="""
Name under which the agents register the cluster connection
(``bdev_rbd_register_cluster``) and share it between every volume's bdev
(``rbd`` backend).

The agent of cinder-volume and of each compute host registers the cluster
under this name on first use, from ``spdk_vhost_rbd_ceph_conf``,
``spdk_vhost_rbd_user`` and ``spdk_vhost_rbd_keyring``, and every bdev
names it (``cluster_name``, as SPDK's ``bdev_rbd_create`` takes it).

Possible values:

* Empty: a name derived from those three settings
  (``spdk-backend-<hash>``), the same on every host.
* A name.

Related options:

* ``spdk_vhost_rbd_ceph_conf``
"""),
    cfg.IntOpt(
        "spdk_vhost_rbd_connect_timeout",
        default=20,
        min=1,
        help="""
Seconds cinder-volume waits for the Ceph monitors (``rbd`` backend).

Possible values:

* An integer >= 1.
"""),
]

