"""Nova libvirt volume driver for ``vhost_user_blk`` volumes.

``connect_volume`` asks this host's agent for the volume's bdev (creating it
from the description Cinder put in the connection info if the agent does not
have it) and for a vhost-user-blk controller named after the instance and
the volume; ``get_config`` returns the vhostuser disk that points QEMU at the
controller's socket; ``disconnect_volume`` deletes the controller.

Before any agent call the driver refuses an instance without shared guest
memory (:func:`shared_memory_refusal`) and agent calls in the connection
info other than those in :data:`BDEV_CALLS` and :data:`PREREQUISITE_CALLS`.
"""

import hashlib
import os
import typing

import libvirt
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import units

import nova.conf
from nova import exception as nova_exception
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt.volume import volume as libvirt_volume

from spdk_backend import connector
from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from spdk_backend.conf import nova as nova_conf
from spdk_backend.nova import config as sb_config
from spdk_backend.virt.libvirt import config as sb_vconfig
from spdk_backend.virt.libvirt import policy

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
nova_conf.register_opts(CONF)

DRIVER_VOLUME_TYPE = "vhost_user_blk"
#: The property of this host's volume connector that asks Cinder for
#: vhost_user_blk connection info (spdk_backend.cinder.driver reads it).
CONNECTOR_FLAG = "vhost_user_blk"


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


class BdevCalls(typing.NamedTuple):
    """The agent calls that delete and rescan the bdev a create call made."""
    delete: str
    rescan: str
    #: The call names Ceph files, which this host may keep elsewhere.
    ceph: bool


#: The create calls a connection info may name in ``data["bdev"]``: those the
#: Cinder driver's volume backends hand out (file, rbd), each with the calls
#: that delete and rescan its bdev.  Any other method is refused before the
#: agent hears of it.
BDEV_CALLS = {
    "bdev_uring_create": BdevCalls(delete="bdev_uring_delete",
                                   rescan="bdev_uring_rescan", ceph=False),
    "bdev_rbd_create": BdevCalls(delete="bdev_rbd_delete",
                                 rescan="bdev_rbd_rescan", ceph=True),
}

#: The calls ``data["bdev_requires"]`` may name (method: names Ceph files).
PREREQUISITE_CALLS = {
    "bdev_rbd_register_cluster": True,
}


def checked_call(call, allowed, what):
    """``call`` (``{"method": ..., "params": {...}}`` from a connection
    info) if its method is one of ``allowed``; InvalidInput if not."""
    if not isinstance(call, dict):
        raise exception.InvalidInput(
            reason="%s is not an agent call: %.80r" % (what, call))
    method = call.get("method")
    if not isinstance(method, str) or method not in allowed:
        raise exception.InvalidInput(
            reason="%s names agent method %.80r, which the vhost_user_blk volume "
                   "driver does not run (it runs %s)"
                   % (what, method, ", ".join(sorted(allowed))))
    params = call.get("params")
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise exception.InvalidInput(
            reason="%s (%s) has no params object: %.80r" % (what, method, params))
    if not isinstance(params.get("name"), str) or not params["name"]:
        raise exception.InvalidInput(
            reason="%s (%s) has no name: %.80r" % (what, method, params.get("name")))
    return call


def _checked_bdev_calls(data):
    """The checked bdev call and prerequisites of a connection's ``data``
    (None and [] when it has none)."""
    spec = data.get("bdev")
    if spec:
        checked_call(spec, BDEV_CALLS, "the connection's bdev call")
    requires = data.get("bdev_requires") or []
    if not isinstance(requires, (list, tuple)):
        raise exception.InvalidInput(
            reason="the connection's bdev_requires is not a list: %.80r" % (requires,))
    for call in requires:
        checked_call(call, PREREQUISITE_CALLS, "a call of the connection's bdev_requires")
    return spec or None, list(requires)


# -- shared guest memory ----------------------------------------------------------
#
# Nova (nova/virt/libvirt/driver.py, nova/virt/hardware.py) writes
# memAccess='shared' into the guest's NUMA cells when the instance's memory
# sits on pages larger than the host's smallest page size, and
# <access mode='shared'/> for every guest when [libvirt] file_backed_memory
# is above 0.  The page size comes from the flavor's hw:mem_page_size:
# "small" is the smallest page (private memory), "large" a huge page, "any"
# the largest size with room on the host (small pages when no huge page
# fits), a number or a size (2048, 2MB, 1GB; KiB without a unit) that page
# size.  An image's hw_mem_page_size counts only under a flavor that says
# "large" or "any" (Nova refuses to boot it under any other flavor).

def _page_size_request(instance):
    """``(request, where)``: Nova's effective page size request of the
    instance ("small", "large", "any", a size in KiB, or None) and the
    property it comes from.  ValueError for a value Nova does not accept."""
    specs = getattr(instance.flavor, "extra_specs", None) or {}
    flavor_value = specs.get("hw:mem_page_size")
    if not flavor_value:
        return None, None
    where = "hw:mem_page_size=%s" % flavor_value
    value = flavor_value
    if flavor_value in ("large", "any"):
        image_value = _image_page_size(instance)
        if image_value:
            value = image_value
            where = "%s with image property hw_mem_page_size=%s" % (where, image_value)
    if value in ("small", "large", "any"):
        return value, where
    if value.isdigit():
        return int(value), where
    try:
        return strutils.string_to_bytes(value, return_int=True) // units.Ki, where
    except ValueError:
        raise ValueError("%s is not a page size" % where) from None


def _image_page_size(instance):
    try:
        props = instance.image_meta.properties
        if props.obj_attr_is_set("hw_mem_page_size"):
            return props.hw_mem_page_size
    except (AttributeError, NotImplementedError):
        pass
    return None


def _small_page_kib():
    return os.sysconf("SC_PAGE_SIZE") // units.Ki


def _placed_page_size(instance):
    """The largest page size (KiB) Nova placed the instance's NUMA cells on,
    or None when that is not known."""
    try:
        topology = instance.numa_topology
    except Exception as exc:  # a lazy load that cannot reach the database
        LOG.debug("no NUMA topology for instance %s: %s", instance.uuid, exc)
        return None
    sizes = [cell.pagesize for cell in getattr(topology, "cells", None) or ()
             if cell.obj_attr_is_set("pagesize") and cell.pagesize
             and cell.pagesize > 0]
    return max(sizes) if sizes else None


def shared_memory_refusal(instance):
    """Why libvirt will not give the guest shared memory (vhost-user needs
    it), or None when it will; see the rule above."""
    if CONF.libvirt.file_backed_memory > 0:
        return None
    try:
        request, where = _page_size_request(instance)
    except ValueError as exc:
        return str(exc)
    if request is None:
        return "its flavor has no hw:mem_page_size"
    if request == "small":
        return "%s: Nova keeps small pages private" % where
    if request == "large":
        return None
    if request == "any":
        request = _placed_page_size(instance)
        if request is None:
            return None     # Nova takes huge pages when the host has room
        where += ", placed on %d KiB pages" % request
    if request <= _small_page_kib():
        return ("%s: %d KiB is the host's small page size, which Nova keeps private"
                % (where, request))
    return None


def has_shared_memory(instance):
    """Whether libvirt will give the guest shared memory (vhost-user needs it)."""
    return shared_memory_refusal(instance) is None


def _local_params(call):
    """The params of an agent call, with this host's Ceph files for rbd calls.

    The connection info names cinder-volume's ceph.conf and keyring; a
    compute host that keeps them elsewhere says so in ``[spdk_vhost]``.
    ``call`` has been checked (:func:`checked_call`).
    """
    params = dict(call["params"])
    method = call["method"]
    ceph = (BDEV_CALLS[method].ceph if method in BDEV_CALLS
            else PREREQUISITE_CALLS[method])
    # A bdev that names a registered cluster takes its files from the cluster.
    if ceph and "cluster_name" not in params:
        if CONF.spdk_vhost.rbd_ceph_conf:
            params["config_file"] = CONF.spdk_vhost.rbd_ceph_conf
        if CONF.spdk_vhost.rbd_keyring:
            params["key_file"] = CONF.spdk_vhost.rbd_keyring
    return params


def _local_calls(spec, requires):
    """The agent calls that make the bdev on this host: ``requires`` then
    ``spec``, each with :func:`_local_params`.

    An rbd bdev call that names its Ceph files itself (connection infos
    from before the Cinder driver registered clusters) becomes the
    registration of a cluster with those files and a ``bdev_rbd_create``
    that names it: SPDK's ``bdev_rbd_create`` has no ``config_file`` or
    ``key_file``.
    """
    calls = [{"method": c["method"], "params": _local_params(c)} for c in requires]
    params = _local_params(spec)
    if spec["method"] == "bdev_rbd_create":
        cluster, params = connector.split_rbd_create(params)
        if cluster is not None:
            calls.append(cluster)
    calls.append({"method": spec["method"], "params": params})
    return calls


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
        refusal = shared_memory_refusal(instance)
        if refusal:
            raise nova_exception.VolumeAttachFailed(
                volume_id=volume_id,
                reason="instance %s has no shared guest memory, which a vhost-user "
                       "disk needs (%s): use a flavor with hw:mem_page_size=large "
                       "(or a huge page size such as 2048 or 1GB) or set [libvirt] "
                       "file_backed_memory" % (instance.uuid, refusal))
        # Nothing from the connection info reaches the agent unchecked.
        try:
            spec, requires = _checked_bdev_calls(data)
        except exception.InvalidInput as exc:
            raise nova_exception.VolumeAttachFailed(volume_id=volume_id,
                                                    reason=str(exc)) from exc
        bdev = data["bdev_name"]
        ctrlr = controller_name(instance, volume_id)
        bdev_made = False
        with self._client() as client:
            try:
                if self._get_bdev(client, bdev) is None:
                    if not spec:
                        raise nova_exception.VolumeAttachFailed(
                            volume_id=volume_id,
                            reason="the agent has no bdev %s and the volume's "
                                   "backend cannot recreate it" % bdev)
                    *prerequisites, create = _local_calls(spec, requires)
                    for call in prerequisites:
                        # The only prerequisite: a cluster, kept once registered.
                        connector.register_cluster(client, call["params"])
                    connector.call(client, create["method"], create["params"])
                    data["bdev_created"] = bdev_made = True
                found, ctrlr_made = connector.create_or_adopt_controller(
                    client, ctrlr, bdev, readonly=data.get("access_mode") == "ro",
                    max_queues=data.get("num_queues"))
                socket = found["socket"]
                denied = self._qemu_cannot_connect(instance, socket)
                if denied:
                    # Undo only what this call made (a retried attach may
                    # find both in use).
                    if ctrlr_made:
                        self._delete_controller(client, ctrlr, force=True)
                        if bdev_made:
                            self._delete_bdev(client, spec)
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
        return connector.get_bdev(client, name)

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
        spec = None
        if data.get("bdev_created") and data.get("bdev"):
            try:
                spec = checked_call(data["bdev"], BDEV_CALLS, "the connection's bdev call")
            except exception.InvalidInput as exc:
                raise nova_exception.InvalidVolume(reason=str(exc)) from exc
        with self._client() as client:
            try:
                self._delete_controller(client, ctrlr, force)
                if spec:
                    self._delete_bdev(client, spec)
            except exception.SpdkBackendException as exc:
                LOG.error("detaching volume %s: %s", data.get("volume_id"), exc,
                          instance=instance)
                raise nova_exception.InternalError(
                    "cannot delete vhost controller %s: %s" % (ctrlr, exc)) from exc

    @staticmethod
    def _delete_controller(client, ctrlr, force):
        # QEMU closes the socket when libvirt has removed the disk, which may
        # lag the detach a little: retried while the controller is busy.
        connector.delete_controller(client, ctrlr, attempts=10, interval=0.1,
                                    max_interval=1.0, force=force)

    @staticmethod
    def _delete_bdev(client, spec):
        """Delete the bdev of ``spec`` (a checked create call)."""
        try:
            client.call(BDEV_CALLS[spec["method"]].delete, name=spec["params"]["name"])
        except exception.AgentNotFound:
            pass

    def extend_volume(self, connection_info, instance, requested_size):
        data = connection_info["data"]
        spec = data.get("bdev")
        if not spec:
            raise NotImplementedError()
        try:
            rescan = BDEV_CALLS[checked_call(
                spec, BDEV_CALLS, "the connection's bdev call")["method"]].rescan
        except exception.InvalidInput as exc:
            raise nova_exception.VolumeExtendFailed(volume_id=data["volume_id"],
                                                    reason=str(exc)) from exc
        bdev = data["bdev_name"]
        with self._client() as client:
            try:
                # Cinder grew the file; the rescan makes the bdev pick up the
                # size and the controller tell the guest (config change).  An
                # SPDK target's rbd bdev has no rescan: it watches the image.
                if rescan not in connector.OUR_METHODS or connector.has_extensions(client):
                    client.call(rescan, name=bdev)
                info = self._get_bdev(client, bdev)
            except exception.SpdkBackendException as exc:
                raise nova_exception.VolumeExtendFailed(volume_id=data["volume_id"],
                                                        reason=str(exc)) from exc
        if info is None:
            raise nova_exception.VolumeExtendFailed(
                volume_id=data["volume_id"], reason="the agent has no bdev %s" % bdev)
        return info["num_blocks"] * info["block_size"]
