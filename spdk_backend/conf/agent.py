"""Options of the spdk-backend-agent daemon ([agent] group)."""

from oslo_config import cfg

agent_group = cfg.OptGroup(
    "agent",
    title="spdk-backend agent options",
    help="""
Options of spdk-backend-agent, the daemon that owns the polling engine on a
hypervisor host and serves SPDK-compatible JSON-RPC on a unix socket.
""")


def _octal_mode(value):
    """A file mode written in octal ("0660"), as chmod takes it."""
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise ValueError("%r is not an octal file mode such as 0660" % (value,))
    if not 0 <= mode <= 0o7777:
        raise ValueError("%r is out of range for a file mode" % (value,))
    return mode


agent_opts = [
    cfg.StrOpt(
        "core_mask",
        default="0x1",
        help="""
CPU cores the engine runs one polling reactor on each.

Possible values:

* A hexadecimal mask such as ``0x3`` (cores 0 and 1), or a list such as
  ``[0,2-3]``, as SPDK's ``-m`` option takes it.

Related options:

* ``max_delay_us``: how long an idle reactor may sleep.
"""),
    cfg.IntOpt(
        "max_delay_us",
        default=1000,
        min=0,
        help="""
Longest time, in microseconds, an idle reactor sleeps before it polls again.

Smaller values lower the latency of the first request after an idle period at
the cost of CPU time; 0 keeps reactors spinning.

Possible values:

* An integer >= 0.

Related options:

* ``core_mask``
"""),
    cfg.IntOpt(
        "spin_us",
        default=200,
        min=1,
        help="""
How long, in microseconds, a reactor keeps polling after its last piece of
work before it sleeps until the next event.

After 10 microseconds without work the reactor yields its CPU between
polls, so threads that share it (librbd's, guests' vCPUs) run first.  The
default suits cores given to the engine and cores it shares with librbd's
threads.  Where the engine shares its CPUs with other busy processes that
the scheduler keeps runnable anyway (Ceph OSDs and monitors on a
hyperconverged host), 1 makes the reactor sleep at once (bench/RESULTS.md,
Ceph RBD).

Possible values:

* An integer >= 1.

Related options:

* ``max_delay_us``
"""),
    cfg.BoolOpt(
        "no_pin",
        default=False,
        help="""
Do not pin reactor threads to the cores of ``core_mask``.

Useful in containers and test environments whose CPU set does not contain the
cores of the mask.

Related options:

* ``core_mask``
"""),
    cfg.StrOpt(
        "rpc_socket",
        default="/var/run/spdk-backend/agent.sock",
        help="""
Path of the unix socket on which the agent serves JSON-RPC.

Possible values:

* An absolute path; its directory is created if missing.

Related options:

* ``rpc_socket_mode``, ``rpc_socket_group``: who may connect.
"""),
    cfg.Opt(
        "rpc_socket_mode",
        type=_octal_mode,
        default="0660",
        sample_default="0660",
        help="""
File mode of the RPC socket, in octal.

Anyone who can connect can create and delete disks, so keep it restricted.

Possible values:

* An octal mode such as ``0660`` or ``0600``.

Related options:

* ``rpc_socket_group``
"""),
    cfg.StrOpt(
        "rpc_socket_group",
        help="""
Group that owns the RPC socket.

Possible values:

* A group name or numeric gid (for example the group nova-compute or
  cinder-volume run as); unset keeps the agent's own group.

Related options:

* ``rpc_socket_mode``
"""),
    cfg.IntOpt(
        "rpc_send_timeout",
        default=30,
        min=1,
        help="""
Seconds a client may leave a reply unread before the agent drops its
connection.

A client that stops reading its replies never blocks other clients; this
bounds the memory it can hold on to.

Possible values:

* An integer >= 1.
"""),
    cfg.StrOpt(
        "vhost_socket_dir",
        default="/var/run/spdk-backend/vhost",
        help="""
Directory of the vhost-user sockets of the controllers.

The socket of controller ``NAME`` is ``<vhost_socket_dir>/NAME``; QEMU
connects to it.

Possible values:

* An absolute path; created if missing.

Related options:

* ``rpc_socket``
"""),
    cfg.Opt(
        "vhost_socket_mode",
        type=_octal_mode,
        default="0660",
        sample_default="0660",
        help="""
File mode of each controller's vhost-user socket, in octal, set right after
the controller is created (also when the agent restores it at start).

QEMU must be able to connect(): libvirt runs it as its own user (on Debian
``libvirt-qemu``, group ``kvm``), so either let that group in with
``vhost_socket_group`` or open the socket to everyone (``0666``).  The
socket directory gets search permission for the same classes of users;
its parent directories must already allow it.

Possible values:

* An octal mode such as ``0660``, ``0666`` or ``0600``.

Related options:

* ``vhost_socket_group``, ``vhost_socket_dir``
"""),
    cfg.StrOpt(
        "vhost_socket_group",
        help="""
Group that owns each controller's vhost-user socket (and its directory).

Possible values:

* A group name or numeric gid, for example ``kvm`` (the group libvirt's QEMU
  runs in on Debian); unset keeps the agent's own group.

Related options:

* ``vhost_socket_mode``
"""),
    cfg.ListOpt(
        "allowed_backing_dirs",
        default=["/var/lib/spdk-backend/volumes"],
        help="""
Directories whose files ``bdev_uring_create`` and ``bdev_aio_create`` may
serve.

Anyone who can reach the RPC socket can ask the agent (which runs as root)
to hand a file to a guest; a backing file must therefore resolve (after
symbolic links, ``..`` and the like) to a regular file inside one of these
directories.  The default matches the Cinder driver's
``spdk_vhost_volume_dir``.

Possible values:

* A comma-separated list of absolute directory paths; an empty list refuses
  every file.

Related options:

* ``allowed_block_devices``; ``spdk_vhost_volume_dir`` of the Cinder
  driver (in the backend's section of cinder.conf) must be one of these
  directories.
"""),
    cfg.ListOpt(
        "allowed_block_devices",
        default=[],
        help="""
Block devices ``bdev_uring_create`` and ``bdev_aio_create`` may serve, as
shell-style patterns matched against the device's resolved path.

Possible values:

* A comma-separated list of patterns such as ``/dev/nvme1n*`` or
  ``/dev/dm-*``; empty (the default) refuses every block device.

Related options:

* ``allowed_backing_dirs``
"""),
    cfg.StrOpt(
        "state_dir",
        default="/var/lib/spdk-backend",
        help="""
Directory of the agent's persistent state.

The agent keeps its configuration there: ``config.json`` (in the shape of
SPDK's ``save_config``) and ``config.wal``, the log of the changes made since
``config.json`` was last written (folded into it at every start and clean
stop); a change is on disk before its call is answered.  It replays them on
start, and holds a lock file (``agent.lock``) that stops a second agent from
using the same state.

Possible values:

* An absolute path; created if missing.
"""),
    cfg.StrOpt(
        "log_file",
        deprecated_for_removal=True,
        deprecated_reason="The agent logs with oslo.log: use [DEFAULT] log_file.",
        help="""
File the agent logs to, the engine's lines included.

Possible values:

* A path; unset, ``[DEFAULT] log_file`` (or ``log_dir``) decides.

Related options:

* ``[DEFAULT] log_file``: wins when both are set.
"""),
    cfg.BoolOpt(
        "debug",
        default=False,
        deprecated_for_removal=True,
        deprecated_reason="The agent logs with oslo.log: use [DEFAULT] debug.",
        help="""
Log at DEBUG level, as ``[DEFAULT] debug`` does: every RPC request, and the
engine's vhost-user message trace.

Related options:

* ``[DEFAULT] debug``: either of the two turns DEBUG on.
"""),
    cfg.BoolOpt(
        "fd_store",
        default=True,
        help="""
Keep every guest's vhost-user session (its fds and state) in the service
manager's file-descriptor store, so that an agent restarted after a crash
takes the sessions over and no guest sees a disconnect.

Used when the agent runs under systemd with ``Type=notify`` and
``FileDescriptorStoreMax=`` (``NOTIFY_SOCKET`` is set), as the shipped unit
does; without a store a restarted agent relies on QEMU reconnecting.

Related options:

* ``state_dir`` (the configuration replayed at every start)
"""),
    cfg.PortOpt(
        "metrics_port",
        min=1,
        help="""
TCP port of the agent's Prometheus exporter (``http://<metrics_address>:<port>/metrics``).

Unset (the default) turns the exporter off: the agent then listens on no
TCP port at all.  The metrics are read from the engine at each scrape (bdev
I/O counters and latency, controllers, reactor busy/idle time; docs/agent.md,
"Metrics").  After an upgrade the new process listens on the same port.

Possible values:

* A port number from 1 to 65535 (9500, for example), or unset.

Related options:

* ``metrics_address``
"""),
    cfg.HostAddressOpt(
        "metrics_address",
        default="127.0.0.1",
        help="""
Address the Prometheus exporter listens on, when ``metrics_port`` is set.

The metrics name every volume and controller of the host, so the default
answers local scrapes only; give the address of the management network (or
``0.0.0.0`` / ``::`` for every interface) for a Prometheus server on
another host.

Possible values:

* An IPv4 or IPv6 address, or a host name that resolves to one of this
  host's addresses.

Related options:

* ``metrics_port``
"""),
]


def register_opts(conf):
    conf.register_group(agent_group)
    conf.register_opts(agent_opts, group=agent_group)


def list_opts():
    return {agent_group: agent_opts}
