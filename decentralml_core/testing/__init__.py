"""Scaffolding for demos, tests and benchmarks — never imported by the library itself.

- ``devnet_process.DevnetProcess``: a real ``decentralml devnet`` subprocess on a free loopback port
  (what ``decentralml demo`` and the test suite start); ``free_port()``.
- ``testnet.TestNetwork``: test hosts in network namespaces on a private bridge (needs root and
  iproute2), for the farm-across-hosts test and benchmark.

They live here, not beside the code they start, so that the library's modules stay free of
process and host management; an import-linter contract in pyproject.toml keeps it that way.
"""
