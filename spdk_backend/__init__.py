"""spdk-backend: a userspace polling vhost-user-blk backend for KVM guests."""

__version__ = "0.1.0"
