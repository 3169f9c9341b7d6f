"""Imports every RPC area so its methods register (order = rpc_get_methods order)."""

from spdk_backend.agent import rpc_framework  # noqa: F401
from spdk_backend.agent import rpc_bdev  # noqa: F401
from spdk_backend.agent import rpc_bdev_malloc  # noqa: F401
from spdk_backend.agent import rpc_bdev_null  # noqa: F401
from spdk_backend.agent import rpc_bdev_uring  # noqa: F401
from spdk_backend.agent import rpc_bdev_rbd  # noqa: F401
from spdk_backend.agent import rpc_vhost  # noqa: F401
