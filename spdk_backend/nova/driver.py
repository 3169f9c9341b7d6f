"""A LibvirtDriver that knows ``vhost_user_blk`` volumes.

Nova's table of libvirt volume drivers is a hard-coded dict, so the way in is
a driver subclass the operator names in nova.conf::

    [DEFAULT]
    compute_driver = spdk_backend.nova.driver.LibvirtDriver

Live migration is Nova's, with two additions for these volumes (see
:mod:`spdk_backend.nova.migration`): the source refuses a volume the
destination's agent cannot serve, and the migrated XML names the
destination's vhost-user sockets.
"""

from nova import exception as nova_exception
from nova.virt.libvirt import driver as libvirt_driver

from spdk_backend.nova import migration as sb_migration
from spdk_backend.nova import volume as sb_volume


class LibvirtDriver(libvirt_driver.LibvirtDriver):
    """Nova's libvirt driver plus the vhost-user-blk volume driver."""

    #: driver_volume_type -> volume driver class, on top of Nova's own table.
    EXTRA_VOLUME_DRIVERS = {
        sb_volume.DRIVER_VOLUME_TYPE: sb_volume.LibvirtVhostUserBlkVolumeDriver,
    }

    def _get_volume_driver(self, connection_info):
        driver_type = connection_info.get("driver_volume_type")
        cls = self.EXTRA_VOLUME_DRIVERS.get(driver_type)
        if cls is None:
            return super()._get_volume_driver(connection_info)
        drv = self.volume_drivers.get(driver_type)
        if drv is None:
            drv = self.volume_drivers.setdefault(driver_type, cls(self._host))
        return drv

    def get_volume_connector(self, instance):
        # Cinder hands vhost_user_blk connection info only to a host that
        # says it can attach it; any other host (cinder-volume, cinder-backup
        # moving data through os-brick) gets os-brick's own kind.
        props = super().get_volume_connector(instance)
        props[sb_volume.CONNECTOR_FLAG] = True
        return props

    def extend_volume(self, context, connection_info, instance, requested_size):
        if connection_info.get("driver_volume_type") not in self.EXTRA_VOLUME_DRIVERS:
            return super().extend_volume(context, connection_info, instance,
                                         requested_size)
        # No QEMU block_resize: QEMU has no block node for a vhost-user disk.
        # The agent's rescan resizes the bdev and the controller sends the
        # guest a config-change notification.
        try:
            new_size = self._extend_volume(connection_info, instance, requested_size)
        except NotImplementedError:
            raise nova_exception.ExtendVolumeNotSupported()
        if new_size is None:
            raise nova_exception.VolumeExtendFailed(
                volume_id=connection_info["data"].get("volume_id"),
                reason="the agent reported no size")
        return new_size

    # -- live migration ---------------------------------------------------------------

    def check_can_live_migrate_source(self, context, instance, dest_check_data,
                                      block_device_info=None):
        # Before Nova's own checks: a volume that cannot migrate is the
        # clearest reason to give.
        sb_migration.check_volumes(instance, block_device_info)
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data, block_device_info=block_device_info)

    def _live_migration_operation(self, context, instance, dest, block_migration,
                                  migrate_data, guest, device_names):
        # Nova updates a volume's disk in the migrated XML by its <serial>,
        # which a vhostuser disk cannot have: the destination's sockets
        # (from its pre_live_migration) go in here.
        sockets = sb_migration.destination_sockets(migrate_data)
        if sockets:
            guest = sb_migration.DestinationSocketsGuest(guest, sockets)
        return super()._live_migration_operation(
            context, instance, dest, block_migration, migrate_data, guest,
            device_names)
