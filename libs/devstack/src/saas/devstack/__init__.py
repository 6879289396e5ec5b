"""Development only: the embedded local stack and `saas dev`.

`saas.devstack.servers` starts PostgreSQL, NATS with JetStream, Valkey and the Temporal dev server
from PyPI wheels; `saas.devstack.supervisor` runs the processes that installed services declare;
`saas.devstack.command` is `saas dev`, added to the `saas` command through the `saas.commands`
entry-point group. This package is in the workspace's dev dependency group only: no service
imports it and no production image contains it.
"""
