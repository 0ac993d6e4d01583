"""ttsgw: the command line and the one-command local stack."""
