"""The Cinder side of an attach, run in its own process (cinder and nova
cannot share one): ``python cinder_side.py ACTION SOCKET VOLDIR VOLUME_ID [SIZE_GB]
[shared]``.

ACTION is ``create`` (create, export, initialize_connection; prints the
connection info as JSON), ``connect`` (initialize_connection for another
host, e.g. a live migration's destination; prints it), ``extend`` (to
SIZE_GB) or ``delete`` (remove the export and the volume).  ``shared``:
the backend has ``spdk_vhost_volume_dir_shared = true``.
"""

import json
import pathlib
import sys
import warnings

warnings.simplefilter("ignore")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))

from cinder import context  # noqa: E402
from cinder import objects  # noqa: E402
from cinder.tests.unit import fake_volume  # noqa: E402
from cinder.volume import configuration  # noqa: E402
from cinder.volume import driver as cinder_driver  # noqa: E402
from oslo_config import cfg  # noqa: E402

from spdk_backend.cinder import driver  # noqa: E402

# Connectors of compute hosts (Nova's get_volume_connector says they attach
# vhost_user_blk volumes).
COMPUTE = {"host": "e2e", "vhost_user_blk": True}
DEST = {"host": "e2e-dest", "vhost_user_blk": True}


def main(action, socket, voldir, volume_id, size_gb="1", shared=""):
    objects.register_all()
    config = configuration.Configuration(cinder_driver.volume_opts, config_group="spdk-e2e")
    drv = driver.SpdkVhostDriver(configuration=config, host="e2e@spdk-e2e")
    cfg.CONF.set_override("spdk_vhost_agent_socket", socket, group="spdk-e2e")
    cfg.CONF.set_override("spdk_vhost_volume_dir", voldir, group="spdk-e2e")
    if shared == "shared":
        cfg.CONF.set_override("spdk_vhost_volume_dir_shared", True, group="spdk-e2e")
    elif shared:
        raise SystemExit("unknown option %r (shared or nothing)" % shared)
    drv.do_setup(None)
    drv.check_for_setup_error()
    ctx = context.get_admin_context()
    vol = fake_volume.fake_volume_obj(ctx, id=volume_id, size=int(size_gb))
    if action == "create":
        drv.create_volume(vol)
        drv.create_export(ctx, vol, COMPUTE)
        print(json.dumps(drv.initialize_connection(vol, COMPUTE)))
    elif action == "connect":
        print(json.dumps(drv.initialize_connection(vol, DEST)))
    elif action == "extend":
        drv.extend_volume(vol, int(size_gb))
    elif action == "delete":
        drv.terminate_connection(vol, {"host": "e2e"})
        drv.remove_export(ctx, vol)
        drv.delete_volume(vol)
    else:
        raise SystemExit("unknown action %s" % action)


if __name__ == "__main__":
    main(*sys.argv[1:])
