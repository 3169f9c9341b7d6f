"""SPDK's parameter rules for the methods spdk-backend's clients send.

Written down by hand from SPDK's sources (github.com/spdk/spdk, read at
commit 3230130e6a; nothing of them is copied here):

- ``schema/schema.yaml``: each method's params, their type and whether
  they are ``required``; ``include/spdk_internal/rpc_autogen.h.jinja2``
  turns it into the decoder table of most handlers (a param without
  ``required`` is optional).
- handlers with their own tables (``*_decoders_manual``), which win over
  the schema where they differ: ``module/bdev/rbd/bdev_rbd_rpc.c``
  (``bdev_rbd_create``: ``block_size`` required, ``config`` an object of
  string values; ``bdev_rbd_register_cluster``: ``config_param`` likewise).
- ``lib/json/json_util.c``: a decoder table rejects a key it does not list
  (``spdk_json_decode_object``) unless the handler decodes "relaxed"
  (``spdk_json_decode_object_relaxed``, which skips unknown keys), a
  repeated key, and a missing required one; strings must be JSON strings
  without NUL, booleans ``true``/``false``, unsigned integers non-negative
  whole numbers in range; a handler that decodes ``params`` without first
  checking it is there fails when the request has none.
- ``lib/vhost/vhost_rpc.c`` and ``lib/vhost/vhost_blk.c``:
  ``vhost_create_blk_controller`` decodes relaxed, twice (the method's
  keys, then the vhost-user-blk transport's ``readonly`` and
  ``packed_ring``), so SPDK ignores any other key; ``vhost_delete_controller``
  decodes strictly (``ctrlr`` only: SPDK has no ``force``).
- ``lib/rpc/rpc.c``, ``lib/bdev/bdev_rpc.c``, ``lib/event/app_rpc.c``,
  ``lib/init/subsystem_rpc.c``: which handlers refuse any params
  (``spdk_get_version``, ``bdev_wait_for_examine``,
  ``framework_get_reactors``, ``framework_get_subsystems``...) and which
  take them optionally (``if (params ...)`` before decoding:
  ``rpc_get_methods``, ``bdev_get_bdevs``, ``bdev_get_iostat``,
  ``vhost_get_controllers``, ``bdev_rbd_get_clusters_info``).
"""

import collections
import re

# Parameter types, as SPDK's decoders check them.
STRING = "string"
BOOL = "boolean"
UINT32 = "uint32"
UINT64 = "uint64"
UUID = "uuid"
STRING_MAP = "object of strings"     # bdev_rbd_decode_config (null allowed)
STRING_ARRAY = "array of strings"
ENUM = "enum"                        # a string out of a fixed set

# Whether a request may, must or must not have ``params``.
PARAMS_OBJECT = "object"     # decoded without a check: params must be an object
PARAMS_OPTIONAL = "optional"  # decoded only when present
PARAMS_NONE = "none"          # any params are refused

Rule = collections.namedtuple("Rule", "required optional params relaxed enums source")


def rule(source, required=(), optional=(), params=PARAMS_OBJECT, relaxed=False,
         enums=None):
    return Rule(dict(required), dict(optional), params, relaxed, enums or {}, source)


_RBD = "module/bdev/rbd/bdev_rbd_rpc.c"
_VHOST = "lib/vhost/vhost_rpc.c"
_SCHEMA = "schema/schema.yaml"

#: Every SPDK method the agent serves, with SPDK's rules.
SPDK_METHODS = {
    # lib/rpc/rpc.c
    "rpc_get_methods": rule("lib/rpc/rpc.c", optional={"current": BOOL,
                                                       "include_aliases": BOOL},
                            params=PARAMS_OPTIONAL),
    "spdk_get_version": rule("lib/rpc/rpc.c", params=PARAMS_NONE),
    # lib/event, lib/init
    "framework_get_reactors": rule("lib/event/app_rpc.c", params=PARAMS_NONE),
    "framework_get_subsystems": rule("lib/init/subsystem_rpc.c", params=PARAMS_NONE),
    "framework_get_config": rule("lib/init/subsystem_rpc.c", required={"name": STRING},
                                 optional={"with_batches": BOOL}),
    "framework_start_init": rule("lib/event/app.c", params=PARAMS_NONE),
    "framework_wait_init": rule("lib/event/app.c", params=PARAMS_NONE),
    # lib/bdev/bdev_rpc.c
    "bdev_get_bdevs": rule("lib/bdev/bdev_rpc.c", optional={"name": STRING,
                                                           "timeout": UINT64},
                           params=PARAMS_OPTIONAL),
    "bdev_get_iostat": rule("lib/bdev/bdev_rpc.c",
                            optional={"names": STRING_ARRAY, "per_channel": BOOL,
                                      "reset_mode": ENUM},
                            params=PARAMS_OPTIONAL,
                            enums={"reset_mode": ("all", "maxmin", "error", "none")}),
    "bdev_set_qos_limit": rule("lib/bdev/bdev_rpc.c", required={"name": STRING},
                               optional={"rw_ios_per_sec": UINT64,
                                         "rw_mbytes_per_sec": UINT64,
                                         "r_mbytes_per_sec": UINT64,
                                         "w_mbytes_per_sec": UINT64}),
    "bdev_wait_for_examine": rule("lib/bdev/bdev_rpc.c", params=PARAMS_NONE),
    # module/bdev/malloc, null, uring, aio (schema-generated decoders)
    "bdev_malloc_create": rule(_SCHEMA, required={"block_size": UINT32,
                                                  "num_blocks": UINT64},
                               optional={"name": STRING, "uuid": UUID,
                                         "optimal_io_boundary": UINT32,
                                         "md_size": UINT32, "md_interleave": BOOL,
                                         "dif_type": "int32", "dif_is_head_of_md": BOOL,
                                         "physical_block_size": UINT32,
                                         "dif_pi_format": UINT32, "numa_id": "int32"}),
    "bdev_malloc_delete": rule(_SCHEMA, required={"name": STRING}),
    "bdev_null_create": rule(_SCHEMA, required={"name": STRING, "num_blocks": UINT64,
                                                "block_size": UINT32},
                             optional={"uuid": UUID, "physical_block_size": UINT32,
                                       "md_size": UINT32, "dif_type": "int32",
                                       "dif_is_head_of_md": BOOL,
                                       "dif_pi_format": UINT32,
                                       "preferred_write_granularity": UINT32,
                                       "preferred_write_alignment": UINT32,
                                       "optimal_write_size": UINT32,
                                       "preferred_unmap_granularity": UINT32,
                                       "preferred_unmap_alignment": UINT32}),
    "bdev_null_delete": rule(_SCHEMA, required={"name": STRING}),
    "bdev_null_resize": rule(_SCHEMA, required={"name": STRING, "new_size": UINT64}),
    "bdev_uring_create": rule(_SCHEMA, required={"filename": STRING, "name": STRING},
                              optional={"block_size": UINT32, "uuid": UUID}),
    "bdev_uring_delete": rule(_SCHEMA, required={"name": STRING}),
    "bdev_uring_rescan": rule(_SCHEMA, required={"name": STRING}),
    "bdev_aio_create": rule(_SCHEMA, required={"name": STRING, "filename": STRING},
                            optional={"block_size": UINT32, "readonly": BOOL,
                                      "fallocate": BOOL, "uuid": UUID, "nowait": BOOL}),
    "bdev_aio_delete": rule(_SCHEMA, required={"name": STRING}),
    "bdev_aio_rescan": rule(_SCHEMA, required={"name": STRING}),
    # module/bdev/rbd/bdev_rbd_rpc.c
    "bdev_rbd_register_cluster": rule(_RBD, required={"name": STRING},
                                      optional={"user_id": STRING,
                                                "config_param": STRING_MAP,
                                                "config_file": STRING,
                                                "key_file": STRING,
                                                "core_mask": STRING}),
    "bdev_rbd_unregister_cluster": rule(_RBD, required={"name": STRING}),
    "bdev_rbd_get_clusters_info": rule(_RBD, optional={"name": STRING},
                                       params=PARAMS_OPTIONAL),
    "bdev_rbd_create": rule(_RBD, required={"pool_name": STRING, "rbd_name": STRING,
                                            "block_size": UINT32},
                            optional={"name": STRING, "user_id": STRING,
                                      "config": STRING_MAP, "cluster_name": STRING,
                                      "uuid": UUID, "read_only": BOOL}),
    "bdev_rbd_delete": rule(_RBD, required={"name": STRING}),
    "bdev_rbd_resize": rule(_RBD, required={"name": STRING, "new_size": UINT64}),
    # lib/vhost
    "vhost_create_blk_controller": rule(_VHOST + ", lib/vhost/vhost_blk.c",
                                        required={"ctrlr": STRING, "dev_name": STRING},
                                        optional={"cpumask": STRING, "transport": STRING,
                                                  "readonly": BOOL, "packed_ring": BOOL},
                                        relaxed=True),
    "vhost_delete_controller": rule(_VHOST, required={"ctrlr": STRING}),
    "vhost_get_controllers": rule(_VHOST, optional={"name": STRING},
                                  params=PARAMS_OPTIONAL),
    "vhost_controller_set_coalescing": rule(_VHOST, required={"ctrlr": STRING,
                                                              "delay_base_us": UINT32,
                                                              "iops_threshold": UINT32}),
}

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _type_problem(ptype, value, enum=None):
    if ptype == STRING:
        ok = isinstance(value, str) and "\0" not in value
    elif ptype == BOOL:
        ok = isinstance(value, bool)
    elif ptype == UINT32:
        ok = _is_int(value) and 0 <= value < 1 << 32
    elif ptype == UINT64:
        ok = _is_int(value) and 0 <= value < 1 << 64
    elif ptype == "int32":
        ok = _is_int(value) and -(1 << 31) <= value < 1 << 31
    elif ptype == UUID:
        ok = isinstance(value, str) and bool(_UUID_RE.match(value))
    elif ptype == STRING_MAP:
        ok = value is None or (isinstance(value, dict) and all(
            isinstance(v, str) and "\0" not in v for v in value.values()))
    elif ptype == STRING_ARRAY:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif ptype == ENUM:
        ok = isinstance(value, str) and value in enum
    else:
        raise AssertionError("no rule for type %s" % ptype)
    return None if ok else "%r is not %s" % (value, ptype)


def problems(method, params, allowed_extra=()):
    """What SPDK's handler of ``method`` refuses in ``params`` (the request's
    ``params``, None when it has none): a list of strings, empty when
    SPDK takes the request.  ``allowed_extra``: parameters of ours this
    request may carry beyond SPDK's (an agent that takes them)."""
    spec = SPDK_METHODS.get(method)
    if spec is None:
        return ["SPDK has no method %s" % method]
    if params is None:
        if spec.params == PARAMS_OBJECT:
            return ["%s: SPDK's handler needs a params object" % method]
        missing = sorted(spec.required)
        return ["%s: missing required %s" % (method, ", ".join(missing))] if missing else []
    if spec.params == PARAMS_NONE:
        return ["%s: SPDK's handler takes no params, got %r" % (method, params)]
    if not isinstance(params, dict):
        return ["%s: params must be an object, got %r" % (method, params)]
    out = []
    for key in sorted(set(spec.required) - set(params)):
        out.append("%s: missing required %s" % (method, key))
    for key, value in sorted(params.items()):
        ptype = spec.required.get(key) or spec.optional.get(key)
        if ptype is None:
            if key in allowed_extra:
                continue
            # A relaxed decoder skips it: no error, but SPDK ignores it.
            out.append("%s: SPDK %s %s" % (method, "ignores" if spec.relaxed
                                           else "refuses the unknown parameter", key))
            continue
        problem = _type_problem(ptype, value, spec.enums.get(key))
        if problem:
            out.append("%s: %s: %s" % (method, key, problem))
    return out


# -- what is ours -------------------------------------------------------------------

#: Methods of the agent that SPDK does not have.
OURS = {"framework_upgrade", "framework_get_process", "bdev_rbd_rescan"}

#: Parameters of SPDK methods that only the agent takes and that our
#: clients send (to an agent that advertises them).
EXTENSIONS = {
    "bdev_malloc_create": {"hugepages"},
    "bdev_uring_create": {"shared"},
    "bdev_aio_create": {"shared"},
    "vhost_create_blk_controller": {"max_queues", "serial"},
    "vhost_delete_controller": {"force"},
}

#: Parameters the agent accepts beyond SPDK's that our clients never send:
#: SPDK's older ``name`` of bdev_get_iostat, and the Ceph files of a
#: bdev_rbd_create of an earlier release's saved state.
ACCEPTED_ONLY = {
    "bdev_get_iostat": {"name"},
    "bdev_rbd_create": {"config_file", "key_file"},
}


def check_requests(requests, extensions):
    """Every problem SPDK (or, for ``extensions``, our agent's documented
    extensions) finds in ``requests`` (``(method, params)`` pairs)."""
    out = []
    for method, params in requests:
        if method in OURS:
            if not extensions:
                out.append("%s is ours, sent to an SPDK target" % method)
            continue
        allowed = EXTENSIONS.get(method, set()) if extensions else set()
        out.extend(problems(method, params, allowed))
    return out


class RequestRecorder:
    """Records every request any :class:`AgentClient` sends (the params as
    they go on the wire: None when the request has none).

    ``spdk_target``: the agent's ``rpc_get_methods`` answer loses the
    methods SPDK does not have, so the clients take it for SPDK.
    """

    def __init__(self, monkeypatch, spdk_target=False):
        from spdk_backend.agent import client as agent_client

        self.requests = []
        self.spdk_target = spdk_target
        original = agent_client.AgentClient.call
        recorder = self

        def call(client, method, _params=None, **params):
            if _params:
                params = dict(_params, **params)
            recorder.requests.append((method, dict(params) if params else None))
            result = original(client, method, None, **params)
            if method == "rpc_get_methods" and recorder.spdk_target:
                result = [m for m in result if m in SPDK_METHODS]
            return result

        monkeypatch.setattr(agent_client.AgentClient, "call", call)

    def methods(self):
        return [m for m, _ in self.requests]

    def sent(self, method):
        """The params of every ``method`` request."""
        return [p for m, p in self.requests if m == method]
