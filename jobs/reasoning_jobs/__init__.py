"""The stage jobs: plain Python CLIs that run the same in a container, a local process and the tests.

They depend on `reasoning_operator.api` only (enforced by import-linter), never on the operator itself.
"""
