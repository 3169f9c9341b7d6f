from tests.support import openstack_groups

# Imports nova: collected only in the nova group's own process.
collect_ignore_glob = openstack_groups.collect_ignore_unless("nova")
