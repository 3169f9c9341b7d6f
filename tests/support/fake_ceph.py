"""In-memory stand-ins for python3-rados and python3-rbd: the calls the rbd
volume backend makes, enough to drive its agent calls without a cluster."""

import types


class _Error(Exception):
    def __init__(self, message="", errno=None):
        super().__init__(message)
        self.errno = errno


def modules():
    """``(rados, rbd)`` module objects sharing one pool of images."""
    images = {}     # name -> {"size": bytes, "snaps": {name: protected}}

    rados = types.SimpleNamespace()
    rbd = types.SimpleNamespace()
    rados.Error = type("Error", (_Error,), {})
    rados.ObjectNotFound = type("ObjectNotFound", (rados.Error,), {})
    rbd.Error = type("Error", (_Error,), {})
    rbd.ImageNotFound = type("ImageNotFound", (rbd.Error,), {})
    rbd.ImageExists = type("ImageExists", (rbd.Error,), {})
    rbd.ImageBusy = type("ImageBusy", (rbd.Error,), {})
    rbd.RBD_FEATURE_LAYERING = 1

    class Ioctx:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Rados:
        def __init__(self, rados_id=None, conffile=None, conf=None):
            pass

        def connect(self, timeout=None):
            pass

        def shutdown(self):
            pass

        def open_ioctx(self, pool):
            return Ioctx()

        def get_cluster_stats(self):
            return {"kb": 1 << 30, "kb_avail": 1 << 29}

        def get_fsid(self):
            return "00000000-0000-4000-8000-000000000000"

    class RBD:
        def list(self, ioctx):
            return list(images)

        def create(self, ioctx, name, size, old_format=False):
            if name in images:
                raise rbd.ImageExists(name)
            images[name] = {"size": size, "snaps": {}}

        def remove(self, ioctx, name):
            images.pop(name, None)

    class Image:
        def __init__(self, ioctx, name, snapshot=None, read_only=False):
            if name not in images:
                raise rbd.ImageNotFound(name)
            self.image = images[name]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def size(self):
            return self.image["size"]

        def resize(self, size):
            self.image["size"] = size

        def list_snaps(self):
            return [{"name": n, "size": self.image["size"]} for n in self.image["snaps"]]

        def parent_info(self):
            raise rbd.ImageNotFound("no parent")

    rados.Rados = Rados
    rbd.RBD = RBD
    rbd.Image = Image
    return rados, rbd
