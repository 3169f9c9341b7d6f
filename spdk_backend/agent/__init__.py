"""spdk-backend-agent: the daemon that owns the engine and serves JSON-RPC."""
