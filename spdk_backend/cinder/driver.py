"""Cinder volume driver: volumes served to guests as vhost-user-blk disks.

cinder-volume keeps the volumes in a volume backend (see
:mod:`spdk_backend.volume`) and exports each one as an agent bdev named
``volume-<id>``; ``initialize_connection`` tells the compute host which bdev
that is and how to recreate it, and Nova's
:class:`spdk_backend.nova.volume.LibvirtVhostUserBlkVolumeDriver` puts a
vhost-user-blk controller in front of it.

Unlike Cinder's in-tree SPDK driver, names are looked up exactly, snapshots
never inflate the volume, the backend name comes from configuration, and an
agent error is a typed exception turned into the matching Cinder exception.
"""

import contextlib
import math
import threading

from oslo_log import log as logging
from oslo_utils import units

from cinder import exception as cinder_exception
from cinder.image import image_utils
from cinder import interface
from cinder.volume import driver
from cinder.volume import volume_utils

from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from spdk_backend.conf import cinder as cinder_conf
from spdk_backend.conf import volume as volume_conf
from spdk_backend.volume import manager

LOG = logging.getLogger(__name__)

DRIVER_VOLUME_TYPE = "vhost_user_blk"
#: The connector property of a host that can attach ``vhost_user_blk``
#: volumes (Nova's subclass adds it to ``get_volume_connector``).
CONNECTOR_FLAG = "vhost_user_blk"
#: ``storage_protocol`` in the style of ``cinder.common.constants``.
STORAGE_PROTOCOL = "vhost-user-blk"


def wants_vhost(connector):
    """Whether ``connector`` says its host attaches vhost-user-blk disks."""
    return bool(connector and connector.get(CONNECTOR_FLAG))


def refuse_encryption(volume):
    """libvirt rejects ``<encryption>`` on a vhostuser disk: an encrypted
    volume could never be attached, so it is not created."""
    if volume.obj_attr_is_set("encryption_key_id") and volume.encryption_key_id:
        raise cinder_exception.VolumeDriverException(
            message="volume %s has an encrypted volume type, which vhost-user-blk "
                    "volumes do not support (libvirt refuses <encryption> on a "
                    "vhostuser disk); use a volume type without encryption"
                    % volume.id)


def volume_bdev_name(volume):
    """Agent bdev (and backend) name of a Cinder volume: ``volume-<name_id>``.

    ``name_id`` is the volume's id, except after a migration, when it is the
    id whose storage the volume took over.
    """
    return "volume-%s" % volume.name_id


def snapshot_name(snapshot):
    return "snapshot-%s" % snapshot.id


class SerializedClient:
    """One agent connection shared by every operation of cinder-volume.

    cinder-volume runs requests concurrently (green threads); replies on one
    connection must not be read by the wrong caller, so calls take turns.
    """

    def __init__(self, client):
        self._client = client
        self._lock = threading.Lock()

    def call(self, method, _params=None, **params):
        with self._lock:
            return self._client.call(method, _params, **params)

    def close(self):
        with self._lock:
            self._client.close()

    @property
    def socket_path(self):
        return self._client.socket_path


@interface.volumedriver
class SpdkVhostDriver(driver.VolumeDriver):
    """Volumes served by spdk-backend-agent as vhost-user-blk disks."""

    VERSION = "1.0.0"
    CI_WIKI_NAME = "spdk-backend_CI"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(cinder_conf.cinder_opts)
        self.configuration.append_config_values(volume_conf.volume_opts)
        self.client = None
        self.backend = None

    @staticmethod
    def get_driver_options():
        return cinder_conf.cinder_opts + volume_conf.volume_opts

    # -- helpers -------------------------------------------------------------------

    @property
    def backend_name(self):
        """The configured volume_backend_name, else the backend section's name."""
        return (self.configuration.safe_get("volume_backend_name")
                or self.configuration.config_group
                or self.__class__.__name__)

    @contextlib.contextmanager
    def _errors(self, what, volume=None, snapshot=None):
        """Turn spdk-backend exceptions into the Cinder exception that fits."""
        try:
            yield
        # The agent's typed errors are these classes too (AgentNotFound is a
        # NotFound, AgentBusy a Busy).
        except exception.NotFound as exc:
            LOG.error("%s: %s", what, exc)
            if snapshot is not None:
                raise cinder_exception.SnapshotNotFound(snapshot_id=snapshot.id) from exc
            if volume is not None:
                raise cinder_exception.VolumeNotFound(volume_id=volume.id) from exc
            raise cinder_exception.VolumeBackendAPIException(
                data="%s: %s" % (what, exc)) from exc
        except exception.Busy as exc:
            LOG.error("%s: %s", what, exc)
            name = volume_bdev_name(volume) if volume is not None else what
            raise cinder_exception.VolumeIsBusy(volume_name=name) from exc
        except exception.SpdkBackendException as exc:
            LOG.error("%s: %s", what, exc)
            raise cinder_exception.VolumeBackendAPIException(
                data="%s: %s" % (what, exc)) from exc
        except OSError as exc:
            LOG.error("%s: %s", what, exc)
            raise cinder_exception.VolumeBackendAPIException(
                data="%s: %s" % (what, exc)) from exc

    def _backend(self):
        if self.backend is None:
            raise cinder_exception.VolumeDriverException(
                message="the spdk_vhost driver is not set up (do_setup failed?)")
        return self.backend

    # -- setup ---------------------------------------------------------------------

    def do_setup(self, context):
        cfg = self.configuration
        timeout = cfg.spdk_vhost_agent_timeout
        self.client = SerializedClient(agent_client.AgentClient(
            cfg.spdk_vhost_agent_socket, timeout=timeout, connect_timeout=timeout))
        try:
            self.backend = manager.load_backend(
                cfg.spdk_vhost_volume_backend, self.client,
                volume_dir=cfg.spdk_vhost_volume_dir,
                block_size=cfg.spdk_vhost_block_size,
                reflink=cfg.spdk_vhost_reflink,
                shared=cfg.spdk_vhost_volume_dir_shared,
                # rbd backend; the other backends ignore them.
                pool=cfg.spdk_vhost_rbd_pool,
                ceph_conf=cfg.spdk_vhost_rbd_ceph_conf or None,
                user_id=cfg.spdk_vhost_rbd_user,
                keyring=cfg.spdk_vhost_rbd_keyring or None,
                cluster_name=cfg.spdk_vhost_rbd_cluster_name or None,
                connect_timeout=cfg.spdk_vhost_rbd_connect_timeout)
        except exception.SpdkBackendException as exc:
            raise cinder_exception.InvalidConfigurationValue(
                option="spdk_vhost_volume_backend",
                value="%s (%s)" % (cfg.spdk_vhost_volume_backend, exc)) from exc

    def check_for_setup_error(self):
        backend = self._backend()
        with self._errors("checking the agent at %s"
                          % self.configuration.spdk_vhost_agent_socket):
            self.client.call("spdk_get_version")
        with self._errors("checking the %s volume backend" % backend.name):
            backend.check()

    # -- volumes -------------------------------------------------------------------

    def create_volume(self, volume):
        refuse_encryption(volume)
        name = volume_bdev_name(volume)
        with self._errors("create volume %s" % name):
            self._backend().create(name, volume.size * units.Gi)
        return {}

    def delete_volume(self, volume):
        name = volume_bdev_name(volume)
        with self._errors("delete volume %s" % name, volume=volume):
            # The backend treats a volume that is already gone as deleted.
            self._backend().delete(name)

    def extend_volume(self, volume, new_size):
        name = volume_bdev_name(volume)
        with self._errors("extend volume %s" % name, volume=volume):
            self._backend().extend(name, new_size * units.Gi)

    def create_snapshot(self, snapshot):
        src = volume_bdev_name(snapshot.volume)
        with self._errors("snapshot %s" % src, volume=snapshot.volume):
            self._backend().create_snapshot(src, snapshot_name(snapshot))

    def delete_snapshot(self, snapshot):
        with self._errors("delete snapshot %s" % snapshot.id):
            self._backend().delete_snapshot(snapshot_name(snapshot))

    def create_volume_from_snapshot(self, volume, snapshot):
        refuse_encryption(volume)
        with self._errors("create volume from snapshot %s" % snapshot.id,
                          snapshot=snapshot):
            self._backend().create_from_snapshot(
                snapshot_name(snapshot), volume_bdev_name(volume),
                volume.size * units.Gi)
        return {}

    def create_cloned_volume(self, volume, src_vref):
        refuse_encryption(volume)
        with self._errors("clone volume %s" % src_vref.id, volume=src_vref):
            self._backend().clone(volume_bdev_name(src_vref), volume_bdev_name(volume),
                                  volume.size * units.Gi)
        return {}

    # -- images ------------------------------------------------------------------------

    def _local_path(self, volume):
        path = self._backend().local_path(volume_bdev_name(volume))
        if path is None:
            raise cinder_exception.VolumeBackendAPIException(
                data="the %s volume backend has no local path for image copies"
                     % self._backend().name)
        return path

    def local_path(self, volume):
        return self._local_path(volume)

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        name = volume_bdev_name(volume)
        backend = self._backend()
        path = backend.local_path(name)
        if path is None:
            # No path to convert into (rbd): convert into a temporary raw
            # file and have the backend write it, as Cinder's RBD driver
            # imports one.
            with image_utils.temporary_file(prefix="image_download_%s_" % image_id) as tmp:
                self._fetch_to_raw(context, image_service, image_id, tmp, volume,
                                   disable_sparse)
                with self._errors("write image %s into volume %s" % (image_id, name),
                                  volume=volume):
                    backend.import_raw(name, tmp)
            return
        self._fetch_to_raw(context, image_service, image_id, path, volume, disable_sparse)
        # qemu-img convert truncates its target to the image's size: give the
        # volume its own size back (a hole, so nothing is written).
        with self._errors("resize volume %s after the image copy" % name, volume=volume):
            backend.extend(name, volume.size * units.Gi)

    def _fetch_to_raw(self, context, image_service, image_id, path, volume,
                      disable_sparse):
        image_utils.fetch_to_raw(
            context, image_service, image_id, path,
            self.configuration.volume_dd_blocksize, size=volume.size,
            run_as_root=False, disable_sparse=disable_sparse)

    def copy_volume_to_image(self, context, volume, image_service, image_meta):
        name = volume_bdev_name(volume)
        backend = self._backend()
        path = backend.local_path(name)
        if path is not None:
            volume_utils.upload_volume(context, image_service, image_meta, path, volume,
                                       run_as_root=False)
            return
        with image_utils.temporary_file(prefix="volume_upload_%s_" % volume.id) as tmp:
            with self._errors("read volume %s for an image" % name, volume=volume):
                backend.export_raw(name, tmp)
            volume_utils.upload_volume(context, image_service, image_meta, tmp, volume,
                                       run_as_root=False)

    def clone_image(self, context, volume, image_location, image_meta, image_service):
        """A copy-on-write clone of a raw Glance image stored in the volume
        backend's own storage (an RBD image of the same Ceph cluster);
        ``({}, False)`` lets Cinder copy the image instead."""
        refuse_encryption(volume)
        if not image_location or image_meta.get("disk_format") != "raw":
            return {}, False
        direct_url, locations = image_location
        urls = [loc["url"] for loc in locations] if locations else [direct_url]
        name = volume_bdev_name(volume)
        backend = self._backend()
        for url in urls:
            if not url:
                continue
            with self._errors("clone image %s into volume %s"
                              % (image_meta.get("id"), name)):
                if backend.clone_from_location(url, name, volume.size * units.Gi):
                    return {"provider_location": None}, True
        return {}, False

    # -- exports and connections --------------------------------------------------------

    def create_export(self, context, volume, connector):
        if connector is not None and not wants_vhost(connector):
            # os-brick reaches the storage itself: no agent bdev needed.
            return {}
        name = volume_bdev_name(volume)
        with self._errors("export volume %s" % name, volume=volume):
            self._backend().export(name)
        return {}

    def ensure_export(self, context, volume):
        # An agent that restarted without its state lost the bdev: export
        # creates it again; one that kept it is left alone.
        return self.create_export(context, volume, None)

    def remove_export(self, context, volume):
        name = volume_bdev_name(volume)
        with self._errors("remove export of volume %s" % name, volume=volume):
            self._backend().unexport(name)

    def initialize_connection(self, volume, connector, initiator_data=None):
        if not wants_vhost(connector):
            return self._native_connection(volume, connector)
        name = volume_bdev_name(volume)
        backend = self._backend()
        with self._errors("connect volume %s" % name, volume=volume):
            bdev = backend.export(name)
            try:
                spec = backend.bdev_spec(name)
                requires = backend.bdev_prerequisites(name)
            except exception.InvalidInput:
                spec = None  # e.g. malloc: the compute host cannot recreate it
                requires = []
            extras = backend.connection_extras(name)
        readonly = False
        if volume.obj_attr_is_set("admin_metadata"):
            readonly = str(volume.admin_metadata.get("readonly", "False")).lower() == "true"
        data = {
            "volume_id": volume.id,
            "name": name,
            "bdev_name": name,
            "bdev": spec,
            # Agent calls the compute host runs before ``bdev`` (e.g. the
            # registration of the Ceph cluster the rbd bdev names).
            "bdev_requires": requires,
            "backend": backend.name,
            "block_size": bdev.get("block_size", backend.block_size),
            "num_blocks": bdev.get("num_blocks"),
            "num_queues": self.configuration.spdk_vhost_queues,
            "access_mode": "ro" if readonly else "rw",
            "discard": False,
            "host": self.host,
            # Whether another host's agent may serve the volume too, as the
            # destination of a live migration does (Nova refuses to migrate
            # an instance with a volume that cannot).
            "supports_live_migration": backend.supports_live_migration(),
        }
        data.update(extras)
        return {"driver_volume_type": DRIVER_VOLUME_TYPE, "data": data}

    def _native_connection(self, volume, connector):
        """Connection info for os-brick's own connector of the volume's
        storage, for a host that does not attach vhost-user-blk disks:
        cinder-volume or cinder-backup moving data themselves."""
        name = volume_bdev_name(volume)
        backend = self._backend()
        with self._errors("connect volume %s" % name, volume=volume):
            native = backend.native_connection(name)
            if native is None:
                raise cinder_exception.VolumeBackendAPIException(
                    data="volume %s: the %s volume backend has no os-brick connector; "
                         "only a host whose connector has %s: True can attach it"
                         % (volume.id, backend.name, CONNECTOR_FLAG))
            volume_type, data = native
            data = dict(data, volume_id=volume.id)
        if volume.obj_attr_is_set("admin_metadata"):
            readonly = str(volume.admin_metadata.get("readonly", "False")).lower() == "true"
            data["access_mode"] = "ro" if readonly else "rw"
        return {"driver_volume_type": volume_type, "data": data}

    def terminate_connection(self, volume, connector, **kwargs):
        # The compute host deletes its controller in disconnect_volume; the
        # bdev stays until remove_export, which Cinder calls when the last
        # attachment is gone.
        pass

    # -- snapshots attached by Cinder (backups from a snapshot) -------------------------

    def backup_use_temp_snapshot(self):
        """``backup_use_temp_snapshot`` where the backend lets os-brick read
        a snapshot in place (file); otherwise (rbd: os-brick's rbd connector
        opens images, not snapshots) Cinder's temporary clone, as
        ``BaseVD.backup_use_temp_snapshot`` asks of a driver that cannot."""
        wanted = super().backup_use_temp_snapshot()
        if wanted and not self._backend().snapshot_connections:
            LOG.warning("backup_use_temp_snapshot is set, but snapshots of the %s "
                        "volume backend cannot be attached: Cinder backs up a "
                        "temporary volume instead",
                        self._backend().name)
            return False
        return bool(wanted)

    def create_export_snapshot(self, context, snapshot, connector):
        # os-brick reads the snapshot's storage itself: nothing to export.
        return None

    def remove_export_snapshot(self, context, snapshot):
        return None

    def initialize_connection_snapshot(self, snapshot, connector, **kwargs):
        """os-brick's connection info for reading ``snapshot`` in place (a
        backup from a snapshot); read only."""
        name = snapshot_name(snapshot)
        if wants_vhost(connector):
            # Only Cinder's data paths attach snapshots; no agent bdev serves one.
            raise cinder_exception.VolumeBackendAPIException(
                data="snapshot %s: snapshots are attached through os-brick only, "
                     "not as vhost_user_blk disks" % snapshot.id)
        backend = self._backend()
        with self._errors("connect snapshot %s" % snapshot.id, snapshot=snapshot):
            native = backend.native_snapshot_connection(name)
        if native is None:
            raise cinder_exception.VolumeBackendAPIException(
                data="snapshot %s: the %s volume backend cannot attach snapshots "
                     "(backup_use_temp_snapshot is not used with it)"
                     % (snapshot.id, backend.name))
        volume_type, data = native
        data = dict(data, snapshot_id=snapshot.id, volume_id=snapshot.volume_id,
                    access_mode="ro")
        return {"driver_volume_type": volume_type, "data": data}

    def terminate_connection_snapshot(self, snapshot, connector, **kwargs):
        # Nothing was exported: os-brick's disconnect is all there is.
        pass

    # -- stats ---------------------------------------------------------------------------

    def _update_volume_stats(self):
        backend = self._backend()
        try:
            total, free = backend.capacity()
            provisioned = backend.provisioned_bytes()
            location = backend.location_info()
        except (exception.SpdkBackendException, OSError) as exc:
            # Reported as a down backend (the scheduler skips it), as
            # Cinder's drivers do, rather than failing the stats report.
            LOG.error("volume stats of the %s volume backend: %s", backend.name, exc)
            state, capacity, location = "down", {
                "total_capacity_gb": "unknown", "free_capacity_gb": "unknown"}, None
        else:
            state, capacity = "up", {
                "total_capacity_gb": _gib(total),
                "free_capacity_gb": _gib(free),
                "provisioned_capacity_gb": _gib(provisioned)}
        cfg = self.configuration
        pool = {
            "pool_name": self.backend_name,
            "reserved_percentage": cfg.safe_get("reserved_percentage") or 0,
            "max_over_subscription_ratio": volume_utils.get_max_over_subscription_ratio(
                cfg.safe_get("max_over_subscription_ratio") or 20.0,
                supports_auto=False),
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "QoS_support": False,
            "multiattach": False,
            "backend_state": state,
        }
        pool.update(capacity)
        if location:
            pool["location_info"] = location
        self._stats = {
            "volume_backend_name": self.backend_name,
            "vendor_name": "spdk-backend",
            "driver_version": self.VERSION,
            "storage_protocol": STORAGE_PROTOCOL,
            "sparse_copy_volume": True,
            "backend_state": state,
            "pools": [pool],
        }
        if location:
            self._stats["location_info"] = location


def _gib(nbytes):
    """Bytes in GiB, rounded down to 2 decimals (never report more than there is)."""
    return math.floor(nbytes * 100 / units.Gi) / 100
