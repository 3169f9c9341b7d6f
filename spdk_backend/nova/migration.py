"""Live migration of instances with ``vhost_user_blk`` volumes.

Each compute host has its own agent; a volume migrates when the
destination's agent can serve it too (an RBD image, a file on storage both
hosts see).  What Nova does (nova/compute/manager.py, nova/virt/libvirt/
driver.py) and what is added here:

source ``check_can_live_migrate_source``
    :func:`check_volumes` refuses a volume the destination's agent cannot
    serve (a file volume without ``spdk_vhost_volume_dir_shared``) with a
    ``MigrationPreCheckError`` that names the volume and the option.
destination ``pre_live_migration``
    Nova connects every volume: ``connect_volume`` makes the bdev (from
    the connection info) and the controller ``vhu-<uuid8>-<volume id>`` on
    this host's agent, the name the source uses too.  The connection info
    goes back to the source in ``migrate_data.bdms`` with this host's
    socket.
source ``_live_migration_operation``
    Nova rewrites a volume's disk in the migrated XML only when it finds it
    by its ``<serial>``, which libvirt forbids on a vhostuser disk:
    :class:`DestinationSocketsGuest` points every vhostuser disk at the
    destination's socket (:func:`update_xml`) before Nova's own updates.
source ``post_live_migration``
    Nova disconnects every volume: the controller goes, and the bdev if
    this host's agent made it for the attachment.
destination, after a failure
    Nova's ``remove_volume_connection`` (``detach_volume``, then
    ``disconnect_volume``) deletes what ``pre_live_migration`` made; the
    guest goes on on the source.
"""

from lxml import etree

from nova import exception as nova_exception
from nova.virt import driver as virt_driver
from nova.virt.libvirt import guest as libvirt_guest

from spdk_backend.nova import volume as sb_volume
from spdk_backend.virt.libvirt import config as sb_vconfig

#: Backends whose volumes every host's agent may serve at once.
_SHARED_BACKENDS = ("rbd",)


def supports_live_migration(connection_info):
    """Whether another host's agent may serve the volume of ``connection_info``.

    Cinder says so (``supports_live_migration``); for a connection made
    before it did, the bdev call tells: an rbd bdev, or a file opened
    ``shared``.
    """
    data = connection_info.get("data") or {}
    said = data.get("supports_live_migration")
    if said is not None:
        return bool(said)
    if data.get("backend") in _SHARED_BACKENDS:
        return True
    spec = data.get("bdev") or {}
    return (spec.get("method") == "bdev_uring_create" and
            bool((spec.get("params") or {}).get("shared")))


def refusal(connection_info):
    """Why the volume of ``connection_info`` cannot live-migrate, or None."""
    if connection_info.get("driver_volume_type") != sb_volume.DRIVER_VOLUME_TYPE:
        return None
    if supports_live_migration(connection_info):
        return None
    data = connection_info.get("data") or {}
    volume_id = data.get("volume_id") or connection_info.get("serial")
    backend = data.get("backend") or "unknown"
    if backend == "file":
        return ("volume %s is a file volume on storage only its host's agent may "
                "serve (the file is locked for it): keep the volume directory on "
                "storage every compute host mounts at the same path and set "
                "spdk_vhost_volume_dir_shared = true in the Cinder backend's section "
                "('spdk-backend volume create --shared' for a CLI volume), then "
                "detach and attach the volume again" % volume_id)
    return ("volume %s (%s volume backend) lives in one agent and cannot be served "
            "by another host's agent; only rbd volumes and file volumes with "
            "spdk_vhost_volume_dir_shared = true migrate" % (volume_id, backend))


def check_volumes(instance, block_device_info):
    """Raise MigrationPreCheckError for the volumes that cannot migrate."""
    reasons = [r for r in (refusal(bdm["connection_info"] or {})
                           for bdm in virt_driver.block_device_info_get_mapping(
                               block_device_info))
               if r]
    if reasons:
        raise nova_exception.MigrationPreCheckError(
            reason="instance %s cannot live-migrate: %s"
                   % (instance.uuid, "; ".join(reasons)))


def destination_sockets(migrate_data):
    """``{controller name: socket}`` on the destination, from the
    connection info its ``pre_live_migration`` put in ``migrate_data.bdms``."""
    sockets = {}
    if migrate_data is None or "bdms" not in migrate_data:
        return sockets
    for bdmi in migrate_data.bdms or ():
        info = bdmi.connection_info or {}
        if info.get("driver_volume_type") != sb_volume.DRIVER_VOLUME_TYPE:
            continue
        data = info.get("data") or {}
        if data.get("vhost_ctrlr") and data.get("vhost_socket"):
            sockets[data["vhost_ctrlr"]] = data["vhost_socket"]
    return sockets


def update_xml(xml, sockets):
    """Domain ``xml`` with the vhostuser disk of each controller in
    ``sockets`` on that socket; a disk of another controller is left alone."""
    root = sb_vconfig.parse_xml(xml)
    for ctrlr, path in sockets.items():
        disk = sb_vconfig.find_vhost_disk_element(root, ctrlr)
        if disk is not None:
            disk.find("source").set("path", path)
    return etree.tostring(root, encoding="unicode")


class DestinationSocketsGuest(libvirt_guest.Guest):
    """The migrating guest, whose migratable XML (which Nova's
    ``get_updated_guest_xml`` starts from) has the destination's sockets."""

    def __init__(self, guest, sockets):
        super().__init__(guest._domain)
        self._guest = guest
        self._sockets = sockets

    def get_xml_desc(self, dump_inactive=False, dump_sensitive=False,
                     dump_migratable=False):
        xml = self._guest.get_xml_desc(dump_inactive=dump_inactive,
                                       dump_sensitive=dump_sensitive,
                                       dump_migratable=dump_migratable)
        if not dump_migratable:
            return xml
        return update_xml(xml, self._sockets)
