"""The contract between the control plane and the data path (filter and workers).

It imports no service and no CLI: the control plane writes what is declared here, the
filter and the workers read it. See docs/architecture.md for the layering.
"""
