"""libvirt integration in three layers (STYLE.md rule 10).

- :mod:`.config`: XML config classes; each converts one element to and from
  XML and nothing else.
- :mod:`.host` / :mod:`.guest`: the only modules that call libvirt-python
  (connection, events, host facts / one domain's attach and detach).
- :mod:`.policy`: what to change and when (prepare a domain for vhost-user,
  attach and detach vhost-user disks).
"""
