"""Nova libvirt integration for vhost-user-blk volumes."""
