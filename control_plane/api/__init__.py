"""control_plane/api package."""
