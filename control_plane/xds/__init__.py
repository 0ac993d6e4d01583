"""control_plane/xds package."""
