"""The ``spdk-backend`` command line: one module per command group."""
