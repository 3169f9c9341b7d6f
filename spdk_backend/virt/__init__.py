"""Hypervisor integration: libvirt (plain virsh-managed VMs, and Nova's)."""
