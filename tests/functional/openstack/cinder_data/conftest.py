from tests.support import openstack_groups

# Imports cinder: collected only in the cinder group's own process.
collect_ignore_glob = openstack_groups.collect_ignore_unless("cinder")
