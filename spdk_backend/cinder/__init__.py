"""Cinder volume driver for volumes served as vhost-user-blk disks."""
