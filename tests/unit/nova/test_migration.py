"""Live-migration logic of the Nova driver (spdk_backend/nova/migration.py).

The pre-flight refusal runs through the real LibvirtDriver subclass (it
refuses before Nova's own checks, which need libvirt); the destination's
sockets and the XML rewrite go through Nova's own objects
(LibvirtLiveMigrateData, LibvirtLiveMigrateBDMInfo) and Nova's own XML
updater (nova.virt.libvirt.migration.get_updated_guest_xml).  The whole flow
with real agents and two libvirtds: tests/functional/openstack/nova_migration.
"""

import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

from lxml import etree  # noqa: E402
from nova import context  # noqa: E402
from nova import exception as nova_exception  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.unit import fake_instance  # noqa: E402
from nova.virt.libvirt import guest as nova_guest  # noqa: E402
from nova.virt.libvirt import migration as nova_migration  # noqa: E402

from spdk_backend.nova import driver  # noqa: E402
from spdk_backend.nova import migration  # noqa: E402
from spdk_backend.nova import volume  # noqa: E402

objects.register_all()


def _info(backend="file", shared=None, said=None, volume_id=None):
    volume_id = volume_id or str(uuid.uuid4())
    name = "volume-%s" % volume_id
    if backend == "file":
        params = {"name": name, "filename": "/v/%s" % name, "block_size": 512}
        if shared:
            params["shared"] = True
        spec = {"method": "bdev_uring_create", "params": params}
    elif backend == "rbd":
        spec = {"method": "bdev_rbd_create",
                "params": {"name": name, "pool_name": "volumes", "rbd_name": name}}
    else:
        spec = None                 # malloc: the compute host cannot recreate it
    data = {"volume_id": volume_id, "bdev_name": name, "bdev": spec, "backend": backend}
    if said is not None:
        data["supports_live_migration"] = said
    return {"driver_volume_type": "vhost_user_blk", "data": data, "serial": volume_id}


def _bdi(*infos):
    return {"block_device_mapping": [{"connection_info": i, "mount_device": "/dev/vd%s" % c}
                                     for i, c in zip(infos, "bcdefg")]}


def _instance():
    inst = fake_instance.fake_instance_obj(context.get_admin_context())
    inst.system_metadata = {}
    return inst


@pytest.mark.parametrize("info, migrates", [
    (_info("rbd"), True),
    (_info("file", shared=True), True),
    (_info("file"), False),
    (_info("malloc"), False),
    # What Cinder says wins over what the bdev call suggests.
    (_info("file", said=True), True),
    (_info("file", shared=True, said=False), False),
    (_info("rbd", said=False), False),
])
def test_supports_live_migration(info, migrates):
    assert migration.supports_live_migration(info) is migrates
    assert (migration.refusal(info) is None) is migrates


def test_other_volume_types_are_not_ours_to_refuse():
    assert migration.refusal({"driver_volume_type": "iscsi", "data": {}}) is None


def test_refusal_names_the_volume_and_the_option():
    info = _info("file")
    reason = migration.refusal(info)
    assert info["data"]["volume_id"] in reason
    assert "spdk_vhost_volume_dir_shared = true" in reason
    assert "volume create --shared" in reason
    reason = migration.refusal(_info("malloc"))
    assert "malloc volume backend" in reason and "cannot be served" in reason


def test_source_check_refuses_a_local_file_volume_before_nova_checks():
    """check_can_live_migrate_source raises MigrationPreCheckError (what
    the conductor reports to the API caller) naming every volume that
    cannot migrate, and none that can."""
    drv = driver.LibvirtDriver(None, read_only=True)
    inst = _instance()
    local, shared, rbd = _info("file"), _info("file", shared=True), _info("rbd")
    # No libvirt here: reaching Nova's own checks would fail differently.
    dest_check_data = objects.LibvirtLiveMigrateData()
    with pytest.raises(nova_exception.MigrationPreCheckError) as err:
        drv.check_can_live_migrate_source(None, inst, dest_check_data,
                                          block_device_info=_bdi(shared, local, rbd))
    msg = str(err.value)
    assert inst.uuid in msg and local["data"]["volume_id"] in msg
    assert shared["data"]["volume_id"] not in msg and rbd["data"]["volume_id"] not in msg
    assert "spdk_vhost_volume_dir_shared" in msg
    # Volumes that migrate pass this check (Nova's checks follow).
    migration.check_volumes(inst, _bdi(shared, rbd))
    migration.check_volumes(inst, None)


SOURCE_XML = """<domain type='qemu'>
  <name>inst</name>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/nova/instances/x/disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw' queues='2'/>
      <source type='unix' path='/run/a/vhost/{c1}'>
        <reconnect enabled='yes' timeout='10'/>
      </source>
      <target dev='vdb' bus='virtio'/>
      <alias name='ua-v1'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
    </disk>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw'/>
      <source type='unix' path='/run/a/vhost/other'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
  </devices>
</domain>
"""


def test_update_xml_points_the_disks_at_the_destination():
    c1 = "vhu-12345678-v1"
    out = etree.fromstring(migration.update_xml(SOURCE_XML.format(c1=c1),
                                                {c1: "/run/b/vhost/%s" % c1,
                                                 "vhu-gone": "/run/b/vhost/vhu-gone"}))
    disks = out.findall("devices/disk")
    assert disks[0].find("source").get("file") == "/var/lib/nova/instances/x/disk"
    assert disks[1].find("source").get("path") == "/run/b/vhost/%s" % c1
    # The rest of the disk is the source's: queues, reconnect, alias, address.
    assert disks[1].find("driver").get("queues") == "2"
    assert disks[1].find("source/reconnect").get("timeout") == "10"
    assert disks[1].find("address").get("slot") == "0x07"
    assert disks[2].find("source").get("path") == "/run/a/vhost/other"


def _bdm_info(info, dev="vdb"):
    bdmi = objects.LibvirtLiveMigrateBDMInfo(serial=info["serial"], bus="virtio",
                                             dev=dev, type="disk", format=None,
                                             boot_index=None)
    bdmi.connection_info = info
    return bdmi


class _FakeDomain:
    """libvirt's virDomain as far as Nova's XML updater reads it."""

    def __init__(self, xml):
        self.xml = xml
        self.flags = []

    def XMLDesc(self, flags=0):
        self.flags.append(flags)
        return self.xml


def test_nova_xml_update_gets_the_destination_sockets():
    """The guest the driver hands to Nova's _live_migration_operation: Nova's
    get_updated_guest_xml (which skips vhostuser disks: no <serial>) starts
    from XML that already names the destination's sockets."""
    inst = _instance()
    vol = _info("file", shared=True)
    ctrlr = volume.controller_name(inst, vol["data"]["volume_id"])
    dest = dict(vol, data=dict(vol["data"], vhost_ctrlr=ctrlr,
                               vhost_socket="/run/b/vhost/%s" % ctrlr))
    other = {"driver_volume_type": "iscsi", "serial": "x",
             "data": {"vhost_ctrlr": "a", "vhost_socket": "/nope"}}
    md = objects.LibvirtLiveMigrateData(bdms=[_bdm_info(dest), _bdm_info(other, "vdc")],
                                        serial_listen_addr=None,
                                        serial_listen_ports=[],
                                        supported_perf_events=[],
                                        target_connect_addr=None)
    sockets = migration.destination_sockets(md)
    assert sockets == {ctrlr: "/run/b/vhost/%s" % ctrlr}
    assert migration.destination_sockets(objects.LibvirtLiveMigrateData()) == {}

    dom = _FakeDomain(SOURCE_XML.format(c1=ctrlr))
    guest = migration.DestinationSocketsGuest(nova_guest.Guest(dom), sockets)
    assert guest._domain is dom
    drv = driver.LibvirtDriver(None, read_only=True)
    xml = nova_migration.get_updated_guest_xml(inst, guest, md, drv._get_volume_config)
    disk = etree.fromstring(xml).findall("devices/disk")[1]
    assert disk.find("source").get("path") == "/run/b/vhost/%s" % ctrlr
    # Non-migratable dumps (Nova's other uses of the guest) are left alone.
    assert "/run/a/vhost/%s" % ctrlr in guest.get_xml_desc()
