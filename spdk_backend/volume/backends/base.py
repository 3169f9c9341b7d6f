"""The interface every volume backend implements.

A backend owns the storage of volumes and snapshots (a directory of files, a
Ceph pool, the agent's memory) and knows which agent bdev serves a volume.
It does not know Cinder: the Cinder driver maps Cinder objects to the names
and sizes used here, so the same backends serve the CLI and tests.

Names are exact: a volume ``NAME`` is served by the agent bdev ``NAME``;
nothing is ever looked up by prefix or substring.
"""

import abc

from spdk_backend import connector
from spdk_backend import exception


class VolumeBackend(abc.ABC):
    """A place where volumes live, served through an agent.

    :param client: an :class:`spdk_backend.agent.client.AgentClient` (or
        anything with its ``call(method, **params)``).
    :param block_size: logical block size of the bdevs, in bytes.
    """

    #: The name of the backend in the ``spdk_backend.volume_backends`` namespace.
    name = None
    #: Whether :meth:`native_snapshot_connection` answers (os-brick can
    #: read a snapshot of this backend in place).
    snapshot_connections = False

    def __init__(self, client, block_size=512, **kwargs):
        if block_size not in (512, 4096):
            raise exception.ConfigurationError(
                reason="block size %r is not 512 or 4096" % (block_size,))
        self.client = client
        self.block_size = block_size

    # -- checks and capacity -------------------------------------------------

    @abc.abstractmethod
    def check(self):
        """Raise :class:`spdk_backend.exception.ConfigurationError` if unusable."""

    @abc.abstractmethod
    def capacity(self):
        """``(total_bytes, free_bytes)`` of the storage behind the volumes."""

    @abc.abstractmethod
    def provisioned_bytes(self):
        """Sum of the apparent sizes of every volume and snapshot."""

    # -- volumes ---------------------------------------------------------------

    @abc.abstractmethod
    def exists(self, name):
        """Whether volume or snapshot ``name`` exists in the backend's storage."""

    @abc.abstractmethod
    def create(self, name, size):
        """Create an empty volume of ``size`` bytes (a multiple of the block size)."""

    @abc.abstractmethod
    def delete(self, name):
        """Delete volume ``name`` and stop serving it; a missing volume is fine."""

    @abc.abstractmethod
    def extend(self, name, size):
        """Grow volume ``name`` to ``size`` bytes; a served bdev sees the new size."""

    @abc.abstractmethod
    def size(self, name):
        """Apparent size of volume ``name`` in bytes."""

    def local_path(self, name):
        """A path on this host holding the volume's bytes, or ``None``."""
        return None

    # -- raw data in and out (image copies without a local path) ------------------

    def import_raw(self, name, path):
        """Write the raw file ``path`` into volume ``name`` from offset 0."""
        raise exception.InvalidInput(
            reason="the %s volume backend cannot import raw data" % self.name)

    def export_raw(self, name, path):
        """Volume ``name``'s bytes into the new (sparse) file ``path``."""
        raise exception.InvalidInput(
            reason="the %s volume backend cannot export raw data" % self.name)

    def clone_from_location(self, location, volume_name, size):
        """Make volume ``volume_name`` (``size`` bytes) a copy-on-write clone
        of the raw image stored at ``location`` (an image store's URL, such
        as Glance's ``rbd://<fsid>/<pool>/<image>/<snapshot>``) if that
        storage is this backend's own; ``False`` (nothing done) otherwise."""
        return False

    # -- snapshots and clones ----------------------------------------------------

    def create_snapshot(self, volume_name, snapshot_name):
        """A point-in-time copy of a volume that does not inflate it."""
        raise exception.InvalidInput(
            reason="the %s volume backend does not support snapshots" % self.name)

    def delete_snapshot(self, snapshot_name):
        raise exception.InvalidInput(
            reason="the %s volume backend does not support snapshots" % self.name)

    def create_from_snapshot(self, snapshot_name, volume_name, size):
        raise exception.InvalidInput(
            reason="the %s volume backend does not support snapshots" % self.name)

    def clone(self, src_name, volume_name, size):
        raise exception.InvalidInput(
            reason="the %s volume backend does not support clones" % self.name)

    # -- serving ------------------------------------------------------------------

    def supports_live_migration(self):
        """Whether another host's agent can serve these volumes too (the
        destination of a live migration): storage both hosts see."""
        return False

    @abc.abstractmethod
    def bdev_spec(self, name):
        """``{"method": ..., "params": {...}}``: the agent call that creates the bdev.

        The Cinder driver hands it to the compute host in the connection info,
        so an agent that lost the bdev (restart without state, another host
        on shared storage) can recreate exactly the same one.
        """

    def bdev_prerequisites(self, name):
        """Agent calls (like :meth:`bdev_spec`) that must succeed before it.

        Things the bdev refers to and an agent may lack: a registered
        cluster connection (``bdev_rbd_register_cluster``, the only kind),
        which an agent that has it keeps.  The compute host runs them too.
        """
        return []

    def connection_extras(self, name):
        """Backend facts for the connection info (e.g. the pool and image)."""
        return {}

    def native_connection(self, name):
        """``(driver_volume_type, data)`` for an os-brick connector that
        reaches volume ``name``'s storage itself, without the agent, or
        ``None`` when os-brick has no connector for it.

        Cinder moves data itself (backups, host-assisted migration, generic
        revert to snapshot, image copies) through os-brick, which has no
        vhost-user-blk connector.
        """
        return None

    def native_snapshot_connection(self, snapshot_name):
        """Like :meth:`native_connection`, for snapshot ``snapshot_name``
        (read only), or ``None`` when os-brick cannot reach a snapshot
        (Cinder then backs up a temporary volume made from it)."""
        return None

    def location_info(self):
        """A string naming the storage the volumes live in (for the
        scheduler's ``location_info`` capability), or ``None``."""
        return None

    def ensure_prerequisites(self, client, name):
        """Run :meth:`bdev_prerequisites` on ``client``'s agent."""
        for call in self.bdev_prerequisites(name):
            connector.register_cluster(client, call["params"])

    def export(self, name):
        """Make sure the agent serves volume ``name`` as bdev ``name``.

        Idempotent: an existing bdev is kept, a missing one (an agent restart
        that lost it) is created again.  Returns the bdev description from
        ``bdev_get_bdevs``.
        """
        bdev = self.get_bdev(name)
        if bdev is None:
            self.ensure_prerequisites(self.client, name)
            spec = self.bdev_spec(name)
            try:
                connector.call(self.client, spec["method"], spec["params"])
            except exception.AgentAlreadyExists:
                pass  # a concurrent export won the race; same bdev
            bdev = self.get_bdev(name)
            if bdev is None:
                raise exception.AgentError(
                    code=None, reason="bdev %s vanished right after its creation" % name)
        return bdev

    @abc.abstractmethod
    def unexport(self, name):
        """Stop serving volume ``name``; a bdev that is not there is fine."""

    def controllers_of(self, name):
        """Names of the agent's vhost controllers that serve bdev ``name``.

        The agent hot-removes a bdev from its controllers when it is deleted,
        so deleting a volume a guest still uses must be refused here.
        """
        return connector.controllers_of(self.client, name)

    def _refuse_if_in_use(self, name):
        connector.refuse_in_use(self.client, name)

    def get_bdev(self, name):
        """The agent's description of bdev ``name`` (exact name), or ``None``."""
        return connector.get_bdev(self.client, name)
