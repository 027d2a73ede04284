"""Driver contracts, plugin registry and the supervisor that runs driver instances."""
