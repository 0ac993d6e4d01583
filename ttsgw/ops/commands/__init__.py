"""One module per ops command; each has the `run(argv) -> int` that `ttsgw.cli` dispatches to."""
