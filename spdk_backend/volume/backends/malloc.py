"""Volumes in the agent's memory (malloc bdevs): for tests and demos.

Their data lives only as long as the agent process; snapshots and clones are
not supported.
"""

from spdk_backend import exception
from spdk_backend.volume.backends import base


class MallocBackend(base.VolumeBackend):
    """Volume ``NAME`` is the malloc bdev ``NAME`` of the agent.

    :param capacity_bytes: what the backend reports as its capacity (the
        agent's memory is not something it can measure).
    """

    name = "malloc"

    def __init__(self, client, block_size=512, capacity_bytes=1 << 30, **kwargs):
        super().__init__(client, block_size=block_size)
        self.capacity_bytes = capacity_bytes

    def check(self):
        # Any agent call proves the agent is there and speaks our protocol.
        self.client.call("bdev_get_bdevs")

    def _malloc_bdevs(self):
        return [b for b in self.client.call("bdev_get_bdevs") or ()
                if b.get("module") == "malloc"
                or b.get("product_name", "").lower().startswith("malloc")]

    def capacity(self):
        used = self.provisioned_bytes()
        return self.capacity_bytes, max(0, self.capacity_bytes - used)

    def provisioned_bytes(self):
        return sum(b["num_blocks"] * b["block_size"] for b in self._malloc_bdevs())

    def exists(self, name):
        return self.get_bdev(name) is not None

    def size(self, name):
        bdev = self.get_bdev(name)
        if bdev is None:
            raise exception.NotFound(op="volume %s" % name, reason="no such bdev")
        return bdev["num_blocks"] * bdev["block_size"]

    def create(self, name, size):
        if size <= 0 or size % self.block_size:
            raise exception.InvalidInput(
                reason="size %d is not a positive multiple of the block size %d"
                       % (size, self.block_size))
        self.client.call("bdev_malloc_create", name=name, num_blocks=size // self.block_size,
                         block_size=self.block_size)

    def delete(self, name):
        self.unexport(name)

    def extend(self, name, size):
        raise exception.InvalidInput(reason="malloc volumes cannot be extended")

    def bdev_spec(self, name):
        raise exception.InvalidInput(
            reason="malloc volume %s cannot be recreated: its data lived in the agent" % name)

    def export(self, name):
        bdev = self.get_bdev(name)
        if bdev is None:
            raise exception.NotFound(op="export %s" % name,
                                     reason="the malloc bdev is gone (agent restarted?)")
        return bdev

    def unexport(self, name):
        self._refuse_if_in_use(name)
        try:
            self.client.call("bdev_malloc_delete", name=name)
        except exception.AgentNotFound:
            pass
