"""What the control plane reads back from the fleet: per-cluster traffic over a window."""
