"""The ops CLI: `ttsgw models|backends|revisions|fleet|cache|priority-classes` over the admin API.

Layers, each in its own module: `arguments` (argparse), `client` (the admin API over
httpx, with a transport seam for tests), `views` and `table` (human output), `runner`
(wires them and maps every error to one stderr line and an exit code). One module per
command under `commands/`, each with the `run(argv) -> int` that `ttsgw.cli` dispatches to.
"""
