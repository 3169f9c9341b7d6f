"""libvirt error mapping (the wrapper itself runs against libvirtd in
tests/e2e/test_libvirt_vhost.py)."""

import libvirt
import pytest

from spdk_backend import exception
from spdk_backend.virt.libvirt import guest


def libvirt_error(code, message):
    exc = libvirt.libvirtError(message)
    # What libvirt-python fills in from virGetLastError().
    exc.err = (code, libvirt.VIR_FROM_QEMU, message, libvirt.VIR_ERR_ERROR,
               None, None, None, 0, 0)
    return exc


def test_no_domain():
    exc = libvirt_error(libvirt.VIR_ERR_NO_DOMAIN,
                        "Domain not found: no domain with matching name 'x'")
    err = guest.map_libvirt_error(exc, "x")
    assert isinstance(err, exception.DomainNotFound)
    assert str(err) == "domain x does not exist"


@pytest.mark.parametrize("message", [
    "internal error: No more available PCI slots",
    "operation failed: Bus 'pci.0' does not support hotplugging.",
])
def test_no_slot(message):
    err = guest.map_libvirt_error(
        libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, message), "vm1",
        "attach")
    assert isinstance(err, exception.NoFreeHotplugSlot)
    assert "pcie-root-port" in str(err)
    assert message in str(err)


def test_shared_memory():
    err = guest.map_libvirt_error(
        libvirt_error(libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
                      "unsupported configuration: 'vhostuser' requires "
                      "shared memory"), "vm1", "attach")
    assert isinstance(err, exception.SharedMemoryRequired)
    assert "spdk-backend domain prepare vm1" in str(err)


def test_other_errors_keep_libvirt_message():
    err = guest.map_libvirt_error(
        libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                      "Requested operation is not valid: domain is not "
                      "running"), "vm1", "attach")
    assert type(err) is exception.LibvirtError
    assert str(err) == ("libvirt: attach on domain vm1: Requested operation "
                        "is not valid: domain is not running")


@pytest.mark.parametrize("reason", ["Permission denied",
                                    "No such file or directory",
                                    "Connection refused"])
def test_socket_unreachable(reason):
    message = ("internal error: unable to execute QEMU command "
               "'chardev-add': Failed to add chardev 'chr-vu-ua-sb-x': "
               "Failed to connect to '/tmp/d/x.sock': %s" % reason)
    err = guest.map_libvirt_error(
        libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, message), "vm1",
        "attach")
    assert isinstance(err, exception.VhostSocketUnreachable)
    assert err.kwargs["path"] == "/tmp/d/x.sock"
    assert err.kwargs["reason"] == reason
    assert "libvirt-qemu" in str(err)
