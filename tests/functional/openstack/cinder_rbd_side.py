"""The Cinder side of an rbd attach, in its own process (cinder and nova
cannot share one): ``python cinder_rbd_side.py ACTION JSON_OPTIONS VOLUME_ID``.

JSON_OPTIONS are the backend section's options (``spdk_vhost_agent_socket``,
``spdk_vhost_rbd_pool``, ...).  ACTION is ``create`` (create, export,
initialize_connection; prints the connection info as JSON), ``connect``
(initialize_connection for another host, e.g. a live migration's
destination; prints it) or ``delete`` (remove the export and the volume).
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

SECTION = "spdk-rbd-e2e"


def main(action, options, volume_id):
    objects.register_all()
    config = configuration.Configuration(cinder_driver.volume_opts, config_group=SECTION)
    drv = driver.SpdkVhostDriver(configuration=config, host="e2e@%s" % SECTION)
    options = dict(json.loads(options), spdk_vhost_volume_backend="rbd")
    for key, value in options.items():
        cfg.CONF.set_override(key, value, group=SECTION)
    drv.do_setup(None)
    drv.check_for_setup_error()
    ctx = context.get_admin_context()
    vol = fake_volume.fake_volume_obj(ctx, id=volume_id, size=1)
    try:
        if action == "create":
            drv.create_volume(vol)
            drv.create_export(ctx, vol, COMPUTE)
            print(json.dumps(drv.initialize_connection(vol, COMPUTE)))
        elif action == "connect":
            print(json.dumps(drv.initialize_connection(vol, DEST)))
        elif action == "delete":
            drv.remove_export(ctx, vol)
            drv.delete_volume(vol)
        else:
            raise SystemExit("unknown action %s" % action)
    finally:
        drv.backend.close()
        drv.client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
