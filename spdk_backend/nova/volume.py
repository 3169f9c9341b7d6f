"""Nova libvirt volume driver for ``vhost_user_blk`` volumes.

``connect_volume`` asks this host's agent for the volume's bdev (creating it
from the description Cinder put in the connection info if the agent does not
have it) and for a vhost-user-blk controller named after the instance and
the volume; ``get_config`` returns the vhostuser disk that points QEMU at the
controller's socket; ``disconnect_volume`` deletes the controller.
"""

import hashlib

import libvirt
from oslo_log import log as logging

import nova.conf
from nova import exception as nova_exception
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt.volume import volume as libvirt_volume

from spdk_backend import exception
from spdk_backend import utils
from spdk_backend.agent import client as agent_client
from spdk_backend.conf import nova as nova_conf
from spdk_backend.nova import config as sb_config
from spdk_backend.virt.libvirt import config as sb_vconfig
from spdk_backend.virt.libvirt import policy

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
nova_conf.register_opts(CONF)

DRIVER_VOLUME_TYPE = "vhost_user_blk"


def controller_name(instance, volume_id):
    """``vhu-<instance uuid prefix>-<volume id>``: one controller per attachment.

    Short enough for a unix socket path under any sane vhost_socket_dir, and
    still readable by an operator who lists the agent's controllers.
    """
    name = "vhu-%s-%s" % (instance.uuid[:8], volume_id)
    if len(name) > 60:  # a volume id that is not a uuid: keep it bounded
        name = "vhu-%s-%s" % (instance.uuid[:8],
                              hashlib.sha256(volume_id.encode()).hexdigest()[:32])
    return name


def has_shared_memory(instance):
    """Whether libvirt will give the guest shared memory (vhost-user needs it).

    Nova writes ``memAccess='shared'`` for hugepage guests
    (``hw:mem_page_size`` in the flavor or image) and backs all guests with
    shared files when ``[libvirt] file_backed_memory`` is set.
    """
    if CONF.libvirt.file_backed_memory:
        return True
    specs = getattr(instance.flavor, "extra_specs", None) or {}
    if specs.get("hw:mem_page_size"):
        return True
    try:
        props = instance.image_meta.properties
        if props.obj_attr_is_set("hw_mem_page_size") and props.hw_mem_page_size:
            return True
    except (AttributeError, NotImplementedError):
        pass
    return False


def _local_params(call):
    """The params of an agent call, with this host's Ceph files for rbd calls.

    The connection info names cinder-volume's ceph.conf and keyring; a
    compute host that keeps them elsewhere says so in ``[spdk_vhost]``.
    """
    params = dict(call["params"])
    # A bdev that names a registered cluster takes its files from the cluster.
    if call["method"].startswith("bdev_rbd_") and "cluster_name" not in params:
        if CONF.spdk_vhost.rbd_ceph_conf:
            params["config_file"] = CONF.spdk_vhost.rbd_ceph_conf
        if CONF.spdk_vhost.rbd_keyring:
            params["key_file"] = CONF.spdk_vhost.rbd_keyring
    return params


class LibvirtVhostUserBlkVolumeDriver(libvirt_volume.LibvirtBaseVolumeDriver):
    """A Cinder volume as a vhost-user-blk disk served by the local agent."""

    def __init__(self, host):
        super().__init__(host, is_block_dev=False)

    def _client(self):
        timeout = CONF.spdk_vhost.agent_timeout
        return agent_client.AgentClient(CONF.spdk_vhost.agent_socket, timeout=timeout,
                                        connect_timeout=timeout)

    # -- connect ----------------------------------------------------------------

    def connect_volume(self, connection_info, instance):
        data = connection_info["data"]
        volume_id = data["volume_id"]
        if not has_shared_memory(instance):
            raise nova_exception.VolumeAttachFailed(
                volume_id=volume_id,
                reason="instance %s has no shared guest memory, which a vhost-user "
                       "disk needs: use a flavor with hw:mem_page_size (for example "
                       "'large' or '2048') or set [libvirt] file_backed_memory"
                       % instance.uuid)
        bdev = data["bdev_name"]
        ctrlr = controller_name(instance, volume_id)
        bdev_made = False
        with self._client() as client:
            try:
                if self._get_bdev(client, bdev) is None:
                    spec = data.get("bdev")
                    if not spec:
                        raise nova_exception.VolumeAttachFailed(
                            volume_id=volume_id,
                            reason="the agent has no bdev %s and the volume's "
                                   "backend cannot recreate it" % bdev)
                    for call in data.get("bdev_requires") or ():
                        try:
                            client.call(call["method"], **_local_params(call))
                        except exception.AgentAlreadyExists:
                            pass  # e.g. the cluster is registered already
                    client.call(spec["method"], **_local_params(spec))
                    data["bdev_created"] = bdev_made = True
                ctrlr_made = self._create_controller(client, ctrlr, bdev, data)
                socket = self._controller(client, ctrlr)["socket"]
                denied = self._qemu_cannot_connect(instance, socket)
                if denied:
                    # Undo only what this call made (a retried attach may
                    # find both in use).
                    if ctrlr_made:
                        self._delete_controller(client, ctrlr, force=True)
                        if bdev_made:
                            self._delete_bdev(client, data["bdev"])
                    raise nova_exception.VolumeAttachFailed(
                        volume_id=volume_id,
                        reason="QEMU of instance %s cannot connect to the vhost-user "
                               "socket %s: Permission denied: %s; set [agent] "
                               "vhost_socket_group/vhost_socket_mode so that QEMU's "
                               "user may connect" % (instance.uuid, socket, denied))
            except exception.SpdkBackendException as exc:
                LOG.error("attaching volume %s: %s", volume_id, exc, instance=instance)
                raise nova_exception.VolumeAttachFailed(volume_id=volume_id,
                                                        reason=str(exc)) from exc
        data["vhost_ctrlr"] = ctrlr
        data["vhost_socket"] = socket
        LOG.info("volume %s served by controller %s on %s", volume_id, ctrlr, socket,
                 instance=instance)

    def _qemu_cannot_connect(self, instance, socket):
        """Why the running instance's QEMU may not connect to ``socket``
        (policy.qemu_access_denied), or None.

        libvirt 11.3 hot-plugs the disk with a reconnecting chardev, and QEMU
        10 then retries an unreachable socket inside device_add for ever,
        holding the domain's job: refuse here what the permissions forbid.
        An instance that does not run yet (boot) gets its disk at start,
        where QEMU fails at once.
        """
        if self.host is None:
            return None         # no libvirt here (a driver for agent-side use)
        try:
            guest = self.host.get_guest(instance)
            if not guest.is_active():
                return None
            dom = sb_vconfig.Domain.from_xml(guest.get_xml_desc())
        except (nova_exception.InstanceNotFound, nova_exception.InternalError,
                libvirt.libvirtError, exception.InvalidInput) as exc:
            LOG.debug("no permission check for instance %s: %s", instance.uuid, exc)
            return None
        return policy.qemu_access_denied(dom, socket)

    @staticmethod
    def _get_bdev(client, name):
        try:
            bdevs = client.call("bdev_get_bdevs", name=name)
        except exception.AgentNotFound:
            return None
        return next((b for b in bdevs or () if b.get("name") == name), None)

    @staticmethod
    def _controller(client, ctrlr):
        ctrlrs = client.call("vhost_get_controllers", name=ctrlr)
        found = next((c for c in ctrlrs or () if c.get("ctrlr") == ctrlr), None)
        if found is None:
            raise exception.AgentNotFound(code=-19, reason="controller %s vanished" % ctrlr)
        return found

    def _create_controller(self, client, ctrlr, bdev, data):
        """Create controller ``ctrlr`` for ``bdev``; True if this call made
        it, False if it existed for the same bdev (a retried attach)."""
        params = {"ctrlr": ctrlr, "dev_name": bdev,
                  "readonly": data.get("access_mode") == "ro"}
        if data.get("num_queues"):
            params["max_queues"] = int(data["num_queues"])
        try:
            client.call("vhost_create_blk_controller", **params)
            return True
        except exception.AgentAlreadyExists:
            # A retried attach: fine if it is the same bdev, an error if not.
            existing = self._controller(client, ctrlr)
            serves = existing.get("backend_specific", {}).get("block", {}).get("bdev")
            if serves != bdev:
                raise exception.AgentAlreadyExists(
                    code=-17, reason="controller %s already serves bdev %s, not %s"
                                     % (ctrlr, serves, bdev))
            return False

    # -- config -------------------------------------------------------------------

    def get_config(self, connection_info, disk_info):
        data = connection_info["data"]
        if disk_info.get("bus", "virtio") != "virtio":
            raise nova_exception.InvalidVolume(
                reason="a vhost-user-blk disk is a virtio disk, not %s" % disk_info["bus"])
        if not data.get("vhost_socket"):
            raise nova_exception.InvalidVolume(
                reason="volume %s is not connected (no vhost socket)" % data.get("volume_id"))
        conf = sb_config.LibvirtConfigGuestVhostUserDisk()
        conf.source_device = disk_info.get("type", "disk")
        conf.source_path = data["vhost_socket"]
        conf.target_dev = disk_info["dev"]
        conf.target_bus = "virtio"
        conf.driver_queues = data.get("num_queues") or None
        conf.reconnect_timeout = CONF.spdk_vhost.reconnect_timeout
        conf.alias = vconfig.make_libvirt_device_alias(data.get("volume_id"))
        return conf

    # -- disconnect and extend -------------------------------------------------------

    def disconnect_volume(self, connection_info, instance, force=False):
        data = connection_info["data"]
        ctrlr = data.get("vhost_ctrlr") or controller_name(instance, data["volume_id"])
        with self._client() as client:
            try:
                self._delete_controller(client, ctrlr, force)
                if data.get("bdev_created") and data.get("bdev"):
                    self._delete_bdev(client, data["bdev"])
            except exception.SpdkBackendException as exc:
                LOG.error("detaching volume %s: %s", data.get("volume_id"), exc,
                          instance=instance)
                raise nova_exception.InternalError(
                    "cannot delete vhost controller %s: %s" % (ctrlr, exc)) from exc

    @staticmethod
    def _delete_controller(client, ctrlr, force):
        # QEMU closes the socket when libvirt has removed the disk, which may
        # lag the detach a little: retry while the controller is busy.
        @utils.retry(exception.AgentBusy, attempts=10, interval=0.1, max_interval=1.0)
        def delete():
            client.call("vhost_delete_controller", ctrlr=ctrlr)

        try:
            delete()
        except exception.AgentNotFound:
            pass  # already gone: the state we want
        except exception.AgentBusy:
            if not force:
                raise
            client.call("vhost_delete_controller", ctrlr=ctrlr, force=True)

    @staticmethod
    def _delete_bdev(client, spec):
        method = spec["method"].replace("_create", "_delete")
        try:
            client.call(method, name=spec["params"]["name"])
        except exception.AgentNotFound:
            pass

    def extend_volume(self, connection_info, instance, requested_size):
        data = connection_info["data"]
        spec = data.get("bdev")
        if not spec:
            raise NotImplementedError()
        bdev = data["bdev_name"]
        with self._client() as client:
            try:
                # Cinder grew the file; the rescan makes the bdev pick up the
                # size and the controller tell the guest (config change).
                client.call(spec["method"].replace("_create", "_rescan"), name=bdev)
                info = self._get_bdev(client, bdev)
            except exception.SpdkBackendException as exc:
                raise nova_exception.VolumeExtendFailed(volume_id=data["volume_id"],
                                                        reason=str(exc)) from exc
        if info is None:
            raise nova_exception.VolumeExtendFailed(
                volume_id=data["volume_id"], reason="the agent has no bdev %s" % bdev)
        return info["num_blocks"] * info["block_size"]
