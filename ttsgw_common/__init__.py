"""Shared plumbing that every service runs on: telemetry, the socket-bound server, the cache store.

Above the contract, below the services; it imports no service and no CLI.
"""
