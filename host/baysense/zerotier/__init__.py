"""ZeroTier integration: the local ZeroTier One service, a self-hosted network controller
and ZeroTier Central, through their documented HTTP APIs and the standard library only.

- `service.LocalService`: node status, joined networks, join and leave.
- `members.ControllerMembers`, `members.CentralMembers` and `members.authorize_member`.
- `listen.resolve_listen`: `HOST:PORT` or `zt:NETWORK_ID:PORT` to a (host, port) pair.
- `tokens`: where tokens come from (files and environment variables, never argv).
- `fake`: loopback fakes of the three APIs for tests.
"""
