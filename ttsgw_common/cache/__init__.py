"""The Redis implementation of the contract's CacheStore, shared by filter and control plane."""
