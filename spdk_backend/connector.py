"""What every user of an agent asks it: one place for the Nova driver, the
volume backends (and so the Cinder driver) and the CLI.

- bdevs and controllers by exact name (:func:`get_bdev`, :func:`get_controller`);
- which controllers serve a bdev, and refusing to take away one a guest
  uses (:func:`controllers_of`, :func:`refuse_in_use`);
- a controller created, or adopted when an earlier attempt made it for
  the same bdev (:func:`create_or_adopt_controller`);
- a controller deleted while QEMU lets go of its socket
  (:func:`delete_controller`: retried through :func:`spdk_backend.utils.retry`);
- a Ceph cluster registered once per agent (:func:`register_cluster`).

Requests carry SPDK's parameters only, so an SPDK target serves them too.
The agent's extension parameters (:data:`EXTENSION_PARAMS`) and methods
(:data:`OUR_METHODS`) are sent only to an agent whose ``rpc_get_methods``
lists :data:`EXTENSIONS_METHOD`, a method of ours that SPDK does not have
(:func:`has_extensions`); for an SPDK target :func:`spdk_params` drops them.
"""

import errno
import hashlib
import json

from spdk_backend import exception
from spdk_backend import utils

#: A method only spdk-backend's agent serves: the agent that lists it takes
#: the extension parameters docs/agent.md names.
EXTENSIONS_METHOD = "framework_get_process"

#: Parameters the agent takes beyond SPDK's, by method (docs/agent.md,
#: "extension").  Each is dropped for an SPDK target, which has no such
#: feature: ``shared`` (a shared flock, for live migration: SPDK locks
#: nothing), ``max_queues`` (SPDK offers its own number of queues),
#: ``serial``, ``hugepages``, ``force`` (SPDK waits for the front-end).
EXTENSION_PARAMS = {
    "bdev_malloc_create": ("hugepages",),
    "bdev_uring_create": ("shared",),
    "bdev_aio_create": ("shared",),
    "vhost_create_blk_controller": ("max_queues", "serial"),
    "vhost_delete_controller": ("force",),
}

#: Methods of the agent that SPDK does not have, and why a client may do
#: without them on an SPDK target.
OUR_METHODS = {
    "framework_upgrade": "hands the agent over to a new process",
    "framework_get_process": "the agent process, after an upgrade",
    "bdev_rbd_rescan": "SPDK's rbd bdev watches its image and sees a resize itself",
}


def has_extensions(client):
    """Whether ``client``'s agent takes our extension parameters.

    Asked when an extension would be sent; an agent that cannot say (an
    error, an answer that is no list) is taken for SPDK.
    """
    try:
        methods = client.call("rpc_get_methods")
    except exception.AgentError:
        return False
    return isinstance(methods, list) and EXTENSIONS_METHOD in methods


def spdk_params(client, method, params):
    """``params`` of a call to ``method``, without the agent's extension
    parameters when ``client``'s agent does not take them."""
    ours = [k for k in EXTENSION_PARAMS.get(method, ()) if k in params]
    if not ours or has_extensions(client):
        return dict(params)
    return {k: v for k, v in params.items() if k not in ours}


def call(client, method, params):
    """Run ``method`` with :func:`spdk_params`; its result."""
    return client.call(method, **spdk_params(client, method, params))


# -- bdevs and controllers -------------------------------------------------------


def get_bdev(client, name, invalid_is_missing=False):
    """The agent's description of bdev ``name`` (exact name), or None.

    ``invalid_is_missing``: a name the agent refuses (-32602: it could never
    hold it) is missing too, rather than an error.
    """
    missing = (exception.AgentNotFound,)
    if invalid_is_missing:
        missing += (exception.AgentInvalidParams,)
    try:
        bdevs = client.call("bdev_get_bdevs", name=name)
    except missing:
        return None
    return next((b for b in bdevs or () if b.get("name") == name), None)


def controller_bdev(ctrlr):
    """The bdev a controller (from ``vhost_get_controllers``) serves."""
    return ((ctrlr or {}).get("backend_specific") or {}).get("block", {}).get("bdev")


def controllers(client):
    """Every controller of the agent, by name."""
    return {c["ctrlr"]: c for c in client.call("vhost_get_controllers") or ()}


def get_controller(client, name):
    """Controller ``name`` (from ``vhost_get_controllers``), or None."""
    try:
        found = client.call("vhost_get_controllers", name=name)
    except exception.AgentNotFound:
        return None
    return next((c for c in found or () if c.get("ctrlr") == name), None)


def controllers_of(client, bdev):
    """Names of the controllers that serve ``bdev``, sorted.

    The agent hot-removes a bdev from its controllers when it is deleted,
    so whoever deletes a volume asks this first.
    """
    return sorted(n for n, c in controllers(client).items() if controller_bdev(c) == bdev)


def refuse_in_use(client, bdev, reason="served by vhost controller(s) %(users)s"):
    """:class:`~spdk_backend.exception.Busy` when a controller serves ``bdev``;
    ``reason`` is formatted with ``users`` (their names) and ``bdev``."""
    users = controllers_of(client, bdev)
    if users:
        raise exception.Busy(op="volume %s" % bdev, errno=errno.EBUSY,
                             reason=reason % {"users": ", ".join(users), "bdev": bdev})


def create_or_adopt_controller(client, ctrlr, bdev, readonly=False, max_queues=None):
    """Controller ``ctrlr`` serving ``bdev``: ``(description, created)``.

    One that exists for the same bdev (a retried attach, an earlier run cut
    short) is adopted (``created`` False); one that serves another bdev is
    an :class:`~spdk_backend.exception.AlreadyExists`.  ``max_queues`` is
    an extension (see the module's doc): an SPDK target picks the queues
    itself.
    """
    params = {"ctrlr": ctrlr, "dev_name": bdev}
    if readonly:
        params["readonly"] = True
    if max_queues:
        params["max_queues"] = int(max_queues)
    created = True
    try:
        call(client, "vhost_create_blk_controller", params)
    except exception.AgentAlreadyExists:
        created = False
    found = get_controller(client, ctrlr)
    if found is None:
        raise exception.AgentNotFound(code=-errno.ENODEV,
                                      reason="controller %s vanished" % ctrlr)
    if not created and controller_bdev(found) != bdev:
        raise exception.AlreadyExists(
            op="controller %s" % ctrlr, errno=errno.EEXIST,
            reason="it exists and serves bdev %s, not %s" % (controller_bdev(found), bdev))
    return found, created


def delete_controller(client, ctrlr, attempts=10, interval=0.1, backoff=2.0,
                      max_interval=1.0, timeout=None, force=False):
    """Delete controller ``ctrlr``; False if it was gone already.

    QEMU closes the socket when the disk is gone from the guest, which may
    lag a detach: a busy controller is asked again (``attempts``, back-off
    and ``timeout`` as :func:`spdk_backend.utils.retry`).  Still busy then,
    it is deleted with ``force`` when that is asked for and the agent has
    it (SPDK has no ``force``: there the busy error stands).
    """
    @utils.retry(exception.AgentBusy, attempts=attempts, interval=interval,
                 backoff=backoff, max_interval=max_interval, timeout=timeout)
    def delete():
        client.call("vhost_delete_controller", ctrlr=ctrlr)

    try:
        delete()
    except exception.AgentNotFound:
        return False                    # already gone: the state we want
    except exception.AgentBusy:
        if not (force and has_extensions(client)):
            raise
        try:
            client.call("vhost_delete_controller", ctrlr=ctrlr, force=True)
        except exception.AgentNotFound:
            return False
    return True


# -- rbd clusters -----------------------------------------------------------------

#: The parameters of ``bdev_rbd_create`` that name the cluster connection
#: itself; with ``cluster_name`` the registered cluster says them instead.
RBD_CONNECTION_PARAMS = ("user_id", "config_file", "key_file", "config")


def rbd_cluster_name(user_id=None, config_file=None, key_file=None, config=None):
    """A cluster name for these connection settings: the same settings give
    the same name on every host, other settings another name."""
    text = json.dumps([user_id, config_file, key_file, config or {}], sort_keys=True)
    return "spdk-backend-%s" % hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def rbd_cluster_call(name, user_id=None, config_file=None, key_file=None, config=None):
    """The ``bdev_rbd_register_cluster`` call of cluster ``name``."""
    params = {"name": name}
    for key, value in (("user_id", user_id), ("config_param", config or None),
                       ("config_file", config_file), ("key_file", key_file)):
        if value:
            params[key] = value
    return {"method": "bdev_rbd_register_cluster", "params": params}


def split_rbd_create(params):
    """``(cluster call, create params)`` for the params of a
    ``bdev_rbd_create`` that names its connection itself (as connection
    infos made before the drivers registered clusters do): the create
    names a cluster of those settings instead.  ``(None, params)`` when it
    names a cluster already."""
    if params.get("cluster_name"):
        return None, dict(params)
    conn = {k: params.get(k) for k in RBD_CONNECTION_PARAMS}
    name = rbd_cluster_name(**conn)
    create = {k: v for k, v in params.items() if k not in RBD_CONNECTION_PARAMS}
    create["cluster_name"] = name
    return rbd_cluster_call(name, **conn), create


def cluster_exists(client, name):
    try:
        info = client.call("bdev_rbd_get_clusters_info", name=name)
    except exception.AgentError:
        return False
    return bool(info)


def register_cluster(client, params):
    """Run a ``bdev_rbd_register_cluster`` (its params); False if the
    agent had the cluster already.

    Our agent answers a name it has with -17, SPDK with a bare error: then
    the cluster's existence is asked for, and only a cluster that is not
    there makes the error stand.
    """
    try:
        client.call("bdev_rbd_register_cluster", **params)
    except exception.AgentAlreadyExists:
        return False
    except exception.AgentError:
        if cluster_exists(client, params["name"]):
            return False
        raise
    return True
