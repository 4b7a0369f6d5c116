"""The cost of running the local server with Redis on one EC2 instance instead (the smallest that carries
the workload), from bench/RESULTS.md: 14.2 KB of RSS per idle connection, ~65 MB for the process, and a
fan-out of several hundred thousand deliveries a second per core, far above any workload the report takes
(10 M deliveries a day is ~116 a second on average)."""

from __future__ import annotations

from dataclasses import dataclass

# us-east-1 on-demand Linux, Graviton (https://aws.amazon.com/ec2/pricing/on-demand/), 730 h a month.
INSTANCES: tuple[tuple[str, float, float], ...] = (  # (type, memory GB, $/hour)
    ("t4g.nano", 0.5, 0.0042),
    ("t4g.micro", 1.0, 0.0084),
    ("t4g.small", 2.0, 0.0168),
    ("t4g.medium", 4.0, 0.0336),
    ("t4g.large", 8.0, 0.0672),
)
HOURS = 730
EBS_GB_MONTH = 0.08  # gp3 (https://aws.amazon.com/ebs/pricing/), 8 GB root volume
IPV4_HOUR = 0.005  # a public IPv4 address (https://aws.amazon.com/vpc/pricing/)
DATA_OUT_GB = 0.09  # EC2 data transfer out to the internet, first 10 TB (https://aws.amazon.com/ec2/pricing/on-demand/)
RSS_PER_CONNECTION_KB = 14.2  # bench/RESULTS.md "idle 10000"
PROCESS_MB = 65
REDIS_MB = 30
REDIS_PER_CONNECTION_KB = 2.0  # the connection's hash and its channel sets


@dataclass(frozen=True)
class SelfHosted:
    instance: str
    usd: float


def self_hosted(connections: int, data_out_gb_month: float) -> SelfHosted:
    """The smallest instance whose memory holds the workload twice over (headroom for bursts and the OS)."""
    need_gb = (
        2 * (PROCESS_MB + REDIS_MB + connections * (RSS_PER_CONNECTION_KB + REDIS_PER_CONNECTION_KB) / 1024) / 1024
    )
    name, _memory, hourly = next((i for i in INSTANCES if i[1] >= need_gb), INSTANCES[-1])
    usd = hourly * HOURS + 8 * EBS_GB_MONTH + IPV4_HOUR * HOURS + DATA_OUT_GB * data_out_gb_month
    return SelfHosted(name, usd)
