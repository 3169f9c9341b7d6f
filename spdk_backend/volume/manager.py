"""Loads volume backends from the ``spdk_backend.volume_backends`` namespace."""

import logging

from stevedore import driver as stevedore_driver
from stevedore import exception as stevedore_exception
from stevedore import extension

from spdk_backend import exception

LOG = logging.getLogger(__name__)
NAMESPACE = "spdk_backend.volume_backends"


def available_backends():
    """Names of the installed volume backends, sorted."""
    return sorted(extension.ExtensionManager(NAMESPACE).names())


def load_backend(name, client, **kwargs):
    """An instance of volume backend ``name`` over agent ``client``.

    :raises VolumeBackendNotFound: no backend of that name is installed.
    :raises ConfigurationError: the backend failed to load or to start.
    """
    try:
        mgr = stevedore_driver.DriverManager(
            NAMESPACE, name, invoke_on_load=True, invoke_args=(client,),
            invoke_kwds=kwargs, on_load_failure_callback=_load_failed)
    except stevedore_exception.NoMatches:
        raise exception.VolumeBackendNotFound(
            name=name, known=", ".join(available_backends()) or "none")
    except exception.SpdkBackendException:
        raise
    except Exception as exc:
        LOG.exception("volume backend %s failed to load", name)
        raise exception.ConfigurationError(
            reason="volume backend %s failed to load: %s" % (name, exc))
    return mgr.driver


def _load_failed(manager, entrypoint, exc):
    # Re-raised to load_backend, which logs it with its traceback and wraps it.
    raise exc
