"""Volume backends: where a Cinder volume's bytes live and how the agent serves them."""
