"""The gateway's limits and timings, as one value that tests and the bench can change."""

from dataclasses import dataclass

# Nodes reserve counter blocks of 64 across reboots, so a legitimate step between two accepted
# counters is at most a few blocks. A larger jump would burn the device's 32-bit counter space.
MAX_COUNTER_JUMP = 2**20


@dataclass(frozen=True)
class Settings:
    """Limits of one gateway. Rates are frames per second, bursts are frames."""

    # A node sends a state change at most every few seconds and a heartbeat a minute, plus
    # retransmissions; 5 frames/s with a burst of 20 leaves room for a backlog after an outage.
    device_rate: float = 5.0
    device_burst: float = 20.0
    # One source address normally carries one node; a flood from one address must not starve
    # the others, so its budget is a few nodes' worth.
    source_rate: float = 50.0
    source_burst: float = 100.0
    # Buckets kept in memory; the least recently used are dropped past this (bounds memory when
    # datagrams come from many spoofed addresses).
    max_buckets: int = 65536
    max_counter_jump: int = MAX_COUNTER_JUMP
    # Reports committed in one SQLite transaction at most; one fsync covers them all.
    max_batch: int = 2048
    # How often the registry is checked for new, rotated or revoked keys (seconds); a device
    # provisioned after start must be accepted within about a second.
    registry_poll_s: float = 0.25
    # How often rejection tallies are written when no report is committed (seconds).
    stats_flush_s: float = 1.0
    # Log lines per rejection reason per window, then one summary line for the rest.
    log_burst: int = 5
    log_window_s: float = 10.0
    # Kernel receive buffer requested for the socket (bytes), so datagrams arriving during a
    # commit wait there. Linux caps it at net.core.rmem_max.
    receive_buffer: int = 4 * 1024 * 1024
