"""Benchmark the gateway's ingest against a Mosquitto broker under the same load, then fuzz it.

Run: .venv/bin/python tools/bench_gateway.py [--devices 1000] [--reports 100] [--fuzz-seconds 15]

1. Gateway: a child process on one core runs the real Gateway over a fresh SQLite database.
   This process, on the other core, plays 1,000 nodes. Each node keeps one frame in flight,
   resends it after RESEND_AFTER_S without an ack, and accepts only an ack equal to the one
   built under its key before the run (expected_acks).
   Every report is verified, committed with synchronous=FULL, and only then acknowledged.
2. MQTT: the same frames, published with QoS 1 to a Mosquitto broker started here on loopback
   and pinned to the same core, one publish in flight per device: once with paho-mqtt, once
   with a minimal client that builds the packets itself, so the broker's own limit shows.
3. Fuzz: random and mutated datagrams against the ingest checks in this process, then against
   the running gateway, which must still accept a valid report afterwards.

Figures go to docs/benchmarks.md between the gateway-bench markers (--no-write skips that).
--gateway-runs N runs only step 1, N times, and prints the gateway's CPU per report split into
user and system time, which is how changes to the ingest path are judged on a shared machine.
--callgrind counts the gateway's user-space instructions per report under valgrind instead.
Linux only: it pins processes with os.sched_setaffinity.
"""

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import random
import resource
import select
import selectors
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from baysense import protocol
from baysense.gateway.ingest import REJECTED, Ingest
from baysense.gateway.keys import FixedKeyRing
from baysense.gateway.server import Gateway
from baysense.gateway.settings import Settings
from baysense.gateway.store import Store
from baysense.registry import Registry

import benchdoc  # noqa: E402 - tools/ is on the path when run as a script

PROJECT_DIR = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = PROJECT_DIR / "docs" / "benchmarks.md"
SECTION_START = "<!-- gateway-bench:start -->"
SECTION_END = "<!-- gateway-bench:end -->"

# Seconds a simulated node waits for an ack before it resends.
RESEND_AFTER_S = 1.0
# Seconds the whole load may take before the bench gives up on a run.
LOAD_TIMEOUT_S = 300
# Seconds to wait for a server (gateway child or broker) to start listening.
START_TIMEOUT_S = 15
# MQTT connections that carry the devices' publishes, each for an equal share of the devices.
# A gateway-side MQTT bridge would multiplex its nodes like this; the one-connection-per-device
# run below is the load of nodes that are MQTT clients themselves.
MQTT_CLIENTS = 4
# File descriptors the bench needs beyond one per device and connection (broker, gateway, files).
SPARE_FILES = 256

# One load generator on loopback stands for all nodes, so the per-source and per-device limits
# are raised far above the load. They are still checked for every datagram.
BENCH_SETTINGS = Settings(source_rate=1e7, source_burst=1e7, device_rate=1e4, device_burst=1e4)

GATEWAY_CORE = 0
LOAD_CORE = 1


def percentile(samples, fraction):
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def pin(pid, core):
    """Pin a process to one core; return False where the machine has too few cores."""
    if os.cpu_count() < 2:
        return False
    os.sched_setaffinity(pid, {core})
    return True


def make_devices(count):
    return [("bay-%04d" % number, os.urandom(protocol.KEY_SIZE)) for number in range(count)]


def provision_all(registry_path, devices):
    with Registry(registry_path) as registry:
        for device_id, key in devices:
            registry.put_device(device_id, key)


def frames_for(devices, reports):
    """Return {device_id: [frame for counters 1..reports]}; states alternate."""
    frames = {}
    for device_id, key in devices:
        frames[device_id] = [
            protocol.encode(key, protocol.FRAME_STATE, device_id, counter, protocol.state_body(counter % 2, 0, counter, counter))
            for counter in range(1, reports + 1)
        ]
    return frames


# ---- the gateway child process ----


def serve_gateway(db_path, registry_path, connection):
    """Run a Gateway for the parent: it sends "cpu" (answered with this process's CPU seconds so
    far, in total, user and system, and the receive-to-ack times since the last "cpu"), then "stop"."""
    pin(0, GATEWAY_CORE)

    async def main():
        gateway = Gateway(db_path, registry_path, BENCH_SETTINGS)
        address = await gateway.start("127.0.0.1", 0)
        connection.send(address)
        stopping = asyncio.Event()

        def on_request():
            request = connection.recv()
            if request == "cpu":
                latencies = list(gateway.latencies)
                gateway.latencies.clear()
                usage = resource.getrusage(resource.RUSAGE_SELF)
                connection.send(
                    {
                        "cpu_s": usage.ru_utime + usage.ru_stime,
                        "user_s": usage.ru_utime,
                        "system_s": usage.ru_stime,
                        "p50": percentile(latencies, 0.50),
                        "p99": percentile(latencies, 0.99),
                    }
                )
            else:
                stopping.set()

        asyncio.get_running_loop().add_reader(connection.fileno(), on_request)
        await stopping.wait()
        await gateway.stop()

    asyncio.run(main())
    connection.send("stopped")


def ask_gateway(connection, request):
    connection.send(request)
    return connection.recv()


# ---- the simulated nodes over UDP ----


def expected_acks(devices, reports):
    """Return {ack frame: (device_id, counter)} of every ack the gateway may send for the load.

    The ack of a report is a fixed frame: built here under the device's key, it carries the tag
    that verifies. So a received ack equal to one of these, byte for byte, is authentic, and the
    load generator checks each ack by a lookup instead of an HMAC during the run.
    """
    acks = {}
    body = protocol.ack_body(protocol.ACK_STORED)
    for device_id, key in devices:
        for counter in range(1, reports + 1):
            acks[protocol.encode(key, protocol.FRAME_ACK, device_id, counter, body)] = (device_id, counter)
    return acks


def load_figures(reports, elapsed, round_trips, **figures):
    """Return the figures of one load run: the rate and the round-trip percentiles, plus `figures`."""
    return {
        "reports": reports,
        "elapsed_s": elapsed,
        "rate": reports / elapsed,
        "rtt_p50": percentile(round_trips, 0.50),
        "rtt_p99": percentile(round_trips, 0.99),
        **figures,
    }


def run_udp_load(address, devices, frames, acks, reports, resend_after_s=RESEND_AFTER_S):
    """Deliver every frame of every device, one in flight per device; return measurements."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    receive = sock.recv
    clock = time.perf_counter

    position = {device_id: 0 for device_id, _ in devices}
    sent_at = {}
    round_trips = []
    resends = 0
    bad_acks = 0
    total = len(devices) * reports
    done = 0

    def send(device_id, now):
        sent_at[device_id] = now
        try:
            sock.sendto(frames[device_id][position[device_id]], address)
        except BlockingIOError:
            pass  # the resend scan sends it again

    started = clock()
    for device_id, _ in devices:
        send(device_id, started)
    last_scan = started

    while done < total:
        if clock() - started > LOAD_TIMEOUT_S:
            raise TimeoutError("UDP load did not finish in %d s (%d of %d acked)" % (LOAD_TIMEOUT_S, done, total))
        selector.select(0.05)
        while True:
            try:
                datagram = receive(512)
            except BlockingIOError:
                break
            now = clock()
            acked = acks.get(datagram)
            if acked is None:
                bad_acks += 1
                continue
            device_id, counter = acked
            index = position[device_id]
            if counter != index + 1:
                continue  # an ack for a resend of a frame already acked
            round_trips.append(now - sent_at[device_id])
            done += 1
            position[device_id] = index + 1
            if index + 1 < reports:
                send(device_id, now)
        now = clock()
        if now - last_scan > resend_after_s / 4:
            last_scan = now
            for device_id, index in position.items():
                if index < reports and now - sent_at[device_id] > resend_after_s:
                    resends += 1
                    send(device_id, now)

    elapsed = clock() - started
    sock.close()
    return load_figures(total, elapsed, round_trips, resends=resends, bad_acks=bad_acks)


def bench_gateway(workdir, devices, frames, acks, reports, fuzz_after=True):
    """Run the UDP load against a gateway child and return its figures and the live fuzz's.

    Without `fuzz_after`, no fuzz runs and its figures are 0 datagrams, not alive.
    """
    registry_path = workdir / "registry.db"
    db_path = workdir / "gateway.db"
    provision_all(registry_path, devices)

    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=serve_gateway, args=(db_path, registry_path, child_end), daemon=True)
    child.start()
    if not parent_end.poll(START_TIMEOUT_S):
        child.kill()
        raise RuntimeError("the gateway child did not start within %d s" % START_TIMEOUT_S)
    address = parent_end.recv()

    server_before = ask_gateway(parent_end, "cpu")
    before = load_cpu_s()
    load = run_udp_load(address, devices, frames, acks, reports)
    load["client_cpu_s"] = load_cpu_s() - before
    server_after = ask_gateway(parent_end, "cpu")
    fuzz = fuzz_live_gateway(address, devices, frames, reports) if fuzz_after else {"datagrams": 0, "alive": False}

    ask_gateway(parent_end, "stop")
    child.join(START_TIMEOUT_S)

    with Store(db_path) as store:
        stored = len(store.reports())
    for name in ("cpu_s", "user_s", "system_s"):
        load[name] = server_after[name] - server_before[name]
    load["p50"] = server_after["p50"]
    load["p99"] = server_after["p99"]
    # The probe report sent after the fuzz is stored too.
    load["stored"] = stored - (1 if fuzz["alive"] else 0)
    return load, fuzz


# ---- instructions per report under callgrind ----

# Reports per device in the two callgrind runs. The instructions per report are the difference
# between the runs over the difference in reports, so start-up and shutdown cancel out.
CALLGRIND_REPORTS = (10, 30)
# Seconds a node waits before it resends under callgrind. The gateway runs tens of times slower
# there, and a resend would count a report twice.
CALLGRIND_RESEND_AFTER_S = 120


def serve_gateway_on_stdio(db_path, registry_path):
    """Run a Gateway in this process, print its UDP port, and stop when standard input closes."""

    async def main():
        gateway = Gateway(db_path, registry_path, BENCH_SETTINGS)
        _, port = await gateway.start("127.0.0.1", 0)
        print(port, flush=True)
        closed = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), lambda: os.read(sys.stdin.fileno(), 4096) or closed.set())
        await closed.wait()
        await gateway.stop()

    asyncio.run(main())


def callgrind_instructions(workdir, devices, reports):
    """Run the UDP load against a gateway under callgrind; return the instructions it executed."""
    registry_path = workdir / "registry.db"
    provision_all(registry_path, devices)
    frames = frames_for(devices, reports)
    acks = expected_acks(devices, reports)

    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=%s" % (workdir / "callgrind.out"),
        sys.executable,
        __file__,
        "--serve-gateway",
        str(workdir / "gateway.db"),
        str(registry_path),
    ]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Before the gateway starts its writer thread, which inherits the core.
    pin(server.pid, GATEWAY_CORE)
    try:
        port = int(server.stdout.readline())
        load = run_udp_load(("127.0.0.1", port), devices, frames, acks, reports, CALLGRIND_RESEND_AFTER_S)
    finally:
        server.stdin.close()
        errors = server.stderr.read()
        server.wait()

    collected = [line for line in errors.splitlines() if "Collected :" in line]
    if not collected:
        raise RuntimeError("callgrind printed no instruction count; its output ends:\n%s" % errors[-2000:])
    if load["resends"]:
        raise RuntimeError("%d resends under callgrind: raise CALLGRIND_RESEND_AFTER_S" % load["resends"])
    return int(collected[-1].split()[-1])


def callgrind_per_report(devices):
    """Print the gateway's user-space instructions per report under callgrind; return the exit status."""
    if shutil.which("valgrind") is None:
        print("bench_gateway: valgrind not found: install Debian's valgrind package", file=sys.stderr)
        return 1
    counts = []
    for reports in CALLGRIND_REPORTS:
        with tempfile.TemporaryDirectory(prefix="baysense-bench-") as directory:
            counts.append(callgrind_instructions(Path(directory), devices, reports))
    extra_reports = len(devices) * (CALLGRIND_REPORTS[1] - CALLGRIND_REPORTS[0])
    print(
        "callgrind: %.0f instructions a report in the gateway process (user space; %d devices, %d and %d reports each)"
        % ((counts[1] - counts[0]) / extra_reports, len(devices), *CALLGRIND_REPORTS)
    )
    return 0


# ---- MQTT QoS 1 to Mosquitto ----


def find_mosquitto():
    """Return the mosquitto binary, installing Debian's package with apt-get when it is missing."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if found:
        return found
    if not shutil.which("apt-get"):
        print("mosquitto not found and apt-get is not available: skipping the MQTT comparison")
        return None
    print("mosquitto not found: installing the Debian package `mosquitto` with apt-get")
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "mosquitto"]
    if subprocess.run(install, env=environment, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], env=environment, stdout=subprocess.DEVNULL, check=False)
        if subprocess.run(install, env=environment, stdout=subprocess.DEVNULL).returncode != 0:
            print("installing mosquitto failed: skipping the MQTT comparison")
            return None
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_tcp_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_broker(binary, workdir):
    port = free_tcp_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_queued_messages 0\n" % port
    )
    broker = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pin(broker.pid, GATEWAY_CORE)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker, port
        except OSError:
            time.sleep(0.05)
    broker.kill()
    raise RuntimeError("mosquitto did not listen on 127.0.0.1:%d within %d s" % (port, START_TIMEOUT_S))


class MqttGroup:
    """One MQTT connection publishing the frames of a group of devices, one in flight each.

    Driven from one thread by run_mqtt_groups(), so a PUBACK is handled only after publish()
    returned its message id.
    """

    def __init__(self, name, port, device_ids, frames, reports):
        import paho.mqtt.client as mqtt

        self.frames = frames
        self.reports = reports
        self.position = {device_id: 0 for device_id in device_ids}
        self.in_flight = {}  # message id -> (device_id, sent at)
        self.round_trips = []
        self.remaining = len(device_ids) * reports
        self.connected = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(len(device_ids))
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connected = True

    def publish_all(self):
        for device_id in self.position:
            self._publish(device_id)

    def _publish(self, device_id):
        payload = self.frames[device_id][self.position[device_id]]
        info = self.client.publish("baysense/%s/state" % device_id, payload, qos=1)
        self.in_flight[info.mid] = (device_id, time.perf_counter())

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        now = time.perf_counter()
        device_id, sent = self.in_flight.pop(mid)
        self.round_trips.append(now - sent)
        self.position[device_id] += 1
        self.remaining -= 1
        if self.position[device_id] < self.reports:
            self._publish(device_id)


def run_mqtt_groups(groups, until):
    """Run the groups' network I/O on this thread until `until()` is true."""
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    by_socket = {}
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("MQTT load did not finish in %d s" % LOAD_TIMEOUT_S)
        by_socket = {group.client.socket(): group for group in groups}
        writers = [sock for sock, group in by_socket.items() if group.client.want_write()]
        readable, writable, _ = select.select(list(by_socket), writers, [], 0.1)
        for sock in writable:
            by_socket[sock].client.loop_write()
        for sock in readable:
            by_socket[sock].client.loop_read()
        for group in groups:
            group.client.loop_misc()


def bench_broker(binary, workdir, devices, reports, connect, publish, disconnect):
    """Time one MQTT load against a fresh broker; return its figures.

    connect(port) returns the clients, each with a `round_trips` list, publish(clients) runs the
    whole load and disconnect(clients) ends it. Only publish() is timed.
    """
    broker, port = start_broker(binary, workdir)
    try:
        clients = connect(port)
        started = time.perf_counter()
        client_cpu = load_cpu_s()
        broker_user, broker_system = _process_cpu_s(broker.pid)
        publish(clients)
        elapsed = time.perf_counter() - started
        client_cpu = load_cpu_s() - client_cpu
        user, system = _process_cpu_s(broker.pid)
        broker_user = user - broker_user
        broker_system = system - broker_system
        disconnect(clients)
    finally:
        broker.terminate()
        broker.wait(START_TIMEOUT_S)

    round_trips = [sample for client in clients for sample in client.round_trips]
    return load_figures(
        len(devices) * reports,
        elapsed,
        round_trips,
        cpu_s=broker_user + broker_system,
        user_s=broker_user,
        system_s=broker_system,
        client_cpu_s=client_cpu,
    )


def device_groups(devices, connections=MQTT_CLIENTS):
    """Split the device ids into `connections` groups of equal size, one per connection."""
    device_ids = [device_id for device_id, _ in devices]
    return [device_ids[number::connections] for number in range(connections)]


def bench_mqtt(binary, workdir, devices, frames, reports):
    """Run the load through paho-mqtt clients."""

    def connect(port):
        groups = [
            MqttGroup("bench-%d" % number, port, device_ids, frames, reports)
            for number, device_ids in enumerate(device_groups(devices))
        ]
        run_mqtt_groups(groups, lambda: all(group.connected for group in groups))
        return groups

    def publish(groups):
        for group in groups:
            group.publish_all()
        run_mqtt_groups(groups, lambda: all(group.remaining == 0 for group in groups))

    def disconnect(groups):
        for group in groups:
            group.client.disconnect()

    return bench_broker(binary, workdir, devices, reports, connect, publish, disconnect)


def mqtt_packet(first_byte, body):
    """Frame an MQTT 3.1.1 control packet: fixed header with variable-length remaining length."""
    length = len(body)
    encoded = bytearray()
    while True:
        digit = length % 128
        length //= 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes([first_byte]) + bytes(encoded) + body


def mqtt_string(text):
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


class RawMqttConnection:
    """A minimal MQTT 3.1.1 publisher (CONNECT, PUBLISH QoS 1, PUBACK) with pre-built packets.

    It does only what the load needs, so the broker, not the client, limits the rate. The
    packet id of a device's publish is its index in the connection plus one, which is unique
    because each device has one publish in flight.
    """

    def __init__(self, name, port, device_ids, frames, reports):
        self.device_ids = device_ids
        self.frames = frames
        self.reports = reports
        self.position = [0] * len(device_ids)
        self.sent_at = [0.0] * len(device_ids)
        self.round_trips = []
        self.remaining = len(device_ids) * reports
        self.buffer = b""
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connect = mqtt_string("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big") + mqtt_string(name)
        self.sock.sendall(mqtt_packet(0x10, connect))
        connack = self.sock.recv(4)
        if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
            raise RuntimeError("broker refused the MQTT connection: %r" % connack)
        self.topics = [mqtt_string("baysense/%s/state" % device_id) for device_id in device_ids]

    def publish(self, index, now):
        payload = self.frames[self.device_ids[index]][self.position[index]]
        self.sent_at[index] = now
        return mqtt_packet(0x32, self.topics[index] + (index + 1).to_bytes(2, "big") + payload)

    def publish_all(self):
        now = time.perf_counter()
        self.sock.sendall(b"".join(self.publish(index, now) for index in range(len(self.device_ids))))

    def on_readable(self):
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("the broker closed the MQTT connection")
        now = time.perf_counter()
        self.buffer += data
        replies = []
        # Every packet the broker sends here is a PUBACK: 0x40, length 2, packet id.
        while len(self.buffer) >= 4:
            if self.buffer[0] != 0x40:
                raise RuntimeError("unexpected MQTT packet type 0x%02x" % self.buffer[0])
            index = int.from_bytes(self.buffer[2:4], "big") - 1
            self.buffer = self.buffer[4:]
            self.round_trips.append(now - self.sent_at[index])
            self.position[index] += 1
            self.remaining -= 1
            if self.position[index] < self.reports:
                replies.append(self.publish(index, now))
        if replies:
            self.sock.sendall(b"".join(replies))


def bench_raw_mqtt(binary, workdir, devices, frames, reports, connections=MQTT_CLIENTS):
    """Run the load through `connections` RawMqttConnection clients."""

    def connect(port):
        return [
            RawMqttConnection("raw-%d" % number, port, device_ids, frames, reports)
            for number, device_ids in enumerate(device_groups(devices, connections))
        ]

    def publish(connections):
        selector = selectors.DefaultSelector()
        for connection in connections:
            selector.register(connection.sock, selectors.EVENT_READ, connection)
        for connection in connections:
            connection.publish_all()
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while any(connection.remaining for connection in connections):
            if time.monotonic() > deadline:
                raise TimeoutError("MQTT load did not finish in %d s" % LOAD_TIMEOUT_S)
            for key, _ in selector.select(0.1):
                key.data.on_readable()

    def disconnect(connections):
        for connection in connections:
            connection.sock.sendall(b"\xe0\x00")  # DISCONNECT
            connection.sock.close()

    return bench_broker(binary, workdir, devices, reports, connect, publish, disconnect)


def load_cpu_s():
    """Return the CPU time (user plus system) this process, the load generator, has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid):
    """Return (user, system) CPU seconds of process `pid`, from /proc in clock ticks."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


# ---- fuzzing ----


def mutate(generator, frame):
    data = bytearray(frame)
    choice = generator.randrange(5)
    if choice == 0:
        return bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 300)))
    if choice == 1:
        for _ in range(generator.randrange(1, 5)):
            data[generator.randrange(len(data))] = generator.getrandbits(8)
    elif choice == 2:
        del data[generator.randrange(len(data)) :]
    elif choice == 3:
        data += bytes(generator.getrandbits(8) for _ in range(generator.randrange(1, 120)))
    else:
        index = generator.randrange(len(data))
        data[index : index + 1] = bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 4)))
    return bytes(data)


def fuzz_ingest(devices, frames, seconds, seed):
    """Feed mutated frames to the ingest checks for `seconds`; return counts. Raises on a broken invariant."""
    generator = random.Random(seed)
    ingest = Ingest(FixedKeyRing(devices), {}, BENCH_SETTINGS)
    keys = dict(devices)
    sample = [frame for device_id, _ in devices[:50] for frame in frames[device_id][:5]]
    cases = 0
    passed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(1000):
            datagram = mutate(generator, generator.choice(sample))
            decision = ingest.receive(datagram, ("127.0.0.1", 9))
            cases += 1
            if decision.kind == REJECTED:
                continue
            passed += 1
            frame = protocol.decode(datagram)
            if not frame.verify(keys[frame.device_id]):
                raise AssertionError("ingest passed a frame whose tag does not verify: %s" % datagram.hex())
    return {"cases": cases, "passed": passed, "seed": seed}


def fuzz_live_gateway(address, devices, frames, reports, count=50_000, seed=1):
    """Send mutated datagrams to a running gateway, then check that it still accepts a report."""
    generator = random.Random(seed)
    sample = [frame for device_id, _ in devices[:50] for frame in frames[device_id]]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for number in range(count):
            try:
                sock.sendto(mutate(generator, generator.choice(sample)), address)
            except OSError:
                pass
            if number % 500 == 0:
                time.sleep(0.001)  # keep the gateway's socket buffer from overflowing

    device_id, key = devices[0]
    counter = reports + 1
    probe = protocol.encode(key, protocol.FRAME_STATE, device_id, counter, protocol.state_body(2, 0, 0, 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(RESEND_AFTER_S)
        for _ in range(10):
            sock.sendto(probe, address)
            try:
                ack = protocol.decode(sock.recv(512))
            except (socket.timeout, protocol.FrameError):
                continue
            if ack.counter == counter and ack.verify(key):
                return {"datagrams": count, "alive": True}
    return {"datagrams": count, "alive": False}


# ---- report ----


def machine_description():
    # The load average shows how much else ran on the machine, which moves these figures.
    return "%s, %d cores, Linux %s, Python %s, SQLite %s, load average %.1f at the start" % (
        benchdoc.cpu_model(),
        os.cpu_count(),
        platform.release(),
        platform.python_version(),
        sqlite3.sqlite_version,
        os.getloadavg()[0],
    )


def milliseconds(seconds):
    return "%.2f ms" % (seconds * 1000)


def _per_cpu(figures):
    return figures["reports"] / figures["cpu_s"] if figures["cpu_s"] > 0 else float("nan")


def table_row(name, figures, server_side=True):
    # /proc counts CPU time in clock ticks (10 ms), so a short run may show none.
    per_cpu_second = "%.0f" % (figures["reports"] / figures["cpu_s"]) if figures["cpu_s"] > 0 else "n/a"
    per_report = "n/a"
    if figures["cpu_s"] > 0:
        per_report = "%.1f us (%.1f + %.1f)" % (
            1e6 * figures["cpu_s"] / figures["reports"],
            1e6 * figures["user_s"] / figures["reports"],
            1e6 * figures["system_s"] / figures["reports"],
        )
    return "| %s | %.0f | %s | %s | %s | %s | %s | %s | %.2f | %.0f%% |" % (
        name,
        figures["rate"],
        per_cpu_second,
        per_report,
        milliseconds(figures["rtt_p50"]),
        milliseconds(figures["rtt_p99"]),
        milliseconds(figures["p50"]) if server_side else "n/a",
        milliseconds(figures["p99"]) if server_side else "n/a",
        figures["cpu_s"],
        100 * figures["client_cpu_s"] / figures["elapsed_s"],
    )


def goal_verdict(gateway, broker):
    return "met" if gateway["rate"] >= broker["rate"] else "not met"


def raise_file_limit(needed):
    """Raise this process's open-file limit to `needed` (the broker inherits it); return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def render(arguments, gateway, paho, raw, per_device, version, fuzz_in_process, fuzz_live, pinned):
    lines = [
        SECTION_START,
        "## Gateway ingest",
        "",
        "Command: `.venv/bin/python tools/bench_gateway.py --devices %d --reports %d --fuzz-seconds %d`"
        % (arguments.devices, arguments.reports, arguments.fuzz_seconds),
        "",
        "Machine: %s. Run %s." % (machine_description(), datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        "",
        "Load: %d simulated devices, %d state reports each, one report in flight per device, played by one"
        " Python process on its own core. The server under test is pinned to the other core%s."
        % (arguments.devices, arguments.reports, "" if pinned else " (not pinned: fewer than 2 cores)"),
        "",
        "| | reports/s | reports per server CPU second | server CPU per report (user + system) | client round trip p50 | p99 | server receive-to-ack p50 | p99 | server CPU s | load generator busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
        table_row("Baysense gateway: UDP, HMAC-SHA256 verified, SQLite WAL synchronous=FULL commit before ack", gateway),
    ]
    if paho is not None:
        lines.append(table_row("%s, MQTT QoS 1, publish to PUBACK, paho-mqtt client (%d connections)" % (version, MQTT_CLIENTS), paho, False))
        lines.append(table_row("%s, MQTT QoS 1, publish to PUBACK, minimal raw-socket client (%d connections)" % (version, MQTT_CLIENTS), raw, False))
        if per_device is not None:
            lines.append(
                table_row(
                    "%s, MQTT QoS 1, publish to PUBACK, minimal raw-socket client (one connection per device)" % version,
                    per_device,
                    False,
                )
            )
    else:
        lines.append("| Mosquitto | not run: mosquitto was not available | | | | | | | | |")
    lines += [
        "",
        "Gateway: %d reports stored of %d sent, %d resends, %d invalid acks seen by the nodes."
        % (gateway["stored"], gateway["reports"], gateway["resends"], gateway["bad_acks"]),
    ]
    if paho is not None:
        lines.append(
            "Goal, at least the broker's rate: %s with the paho-mqtt client (the gateway reached %.2f times"
            " the broker's rate), %s with the minimal client (%.2f times). Per server CPU second, the gateway"
            " handled %.2f times as many reports as the broker in the minimal-client run."
            % (
                goal_verdict(gateway, paho),
                gateway["rate"] / paho["rate"],
                goal_verdict(gateway, raw),
                gateway["rate"] / raw["rate"],
                _per_cpu(gateway) / _per_cpu(raw),
            )
        )
        if per_device is not None:
            lines.append(
                "With one MQTT connection per device, as when every node is an MQTT client, the goal is %s:"
                " the gateway reached %.2f times the broker's rate, and %.2f times its reports per server CPU"
                " second." % (goal_verdict(gateway, per_device), gateway["rate"] / per_device["rate"], _per_cpu(gateway) / _per_cpu(per_device))
            )
        else:
            lines.append("The one-connection-per-device run was skipped: the open-file limit is below %d." % arguments.devices)
        lines.append(
            "The broker runs with persistence off and no subscriber, so its PUBACK means the message"
            " reached its memory, not a disk; the gateway acknowledges only after an fsync'd commit"
            " (batched)."
        )
    lines += [
        "Server CPU is the user plus system time of the gateway or broker process during the load."
        " Reports per server CPU second depends less on what else runs on the machine than reports/s."
        " Load generator busy is the CPU time of the process playing all devices over the run's wall"
        " time: near 100% means the client, not the server, set the rate.",
        "",
        "Fuzz: %d mutated datagrams through the ingest checks (%d passed them, all with a verifying tag, seed %d);"
        " %d sent to the running gateway, which %s."
        % (
            fuzz_in_process["cases"],
            fuzz_in_process["passed"],
            fuzz_in_process["seed"],
            fuzz_live["datagrams"],
            "then acknowledged a valid report" if fuzz_live["alive"] else "did NOT acknowledge a valid report afterwards",
        ),
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def gateway_runs(arguments, devices, frames, acks):
    """Run the gateway load `arguments.gateway_runs` times and print each run's CPU per report.

    Returns the exit status: 1 when a run stored fewer reports than it sent.
    """
    per_report = []
    for run in range(1, arguments.gateway_runs + 1):
        with tempfile.TemporaryDirectory(prefix="baysense-bench-") as directory:
            gateway, _ = bench_gateway(Path(directory), devices, frames, acks, arguments.reports, fuzz_after=False)
        if gateway["stored"] != gateway["reports"]:
            print("bench_gateway: FAILED: run %d stored %d of %d reports" % (run, gateway["stored"], gateway["reports"]), file=sys.stderr)
            return 1
        per_report.append(1e6 * gateway["cpu_s"] / gateway["reports"])
        print(
            "run %d: server CPU %.2f us a report (user %.2f, system %.2f), %.0f reports/s, %d resends, load average %.1f"
            % (
                run,
                per_report[-1],
                1e6 * gateway["user_s"] / gateway["reports"],
                1e6 * gateway["system_s"] / gateway["reports"],
                gateway["rate"],
                gateway["resends"],
                os.getloadavg()[0],
            ),
            flush=True,
        )
    print("median server CPU per report: %.2f us over %d runs" % (statistics.median(per_report), len(per_report)))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000, help="simulated devices (default 1000)")
    parser.add_argument("--reports", type=int, default=100, help="state reports per device (default 100)")
    parser.add_argument("--fuzz-seconds", type=int, default=15, help="seconds of in-process fuzzing (default 15)")
    parser.add_argument("--no-write", action="store_true", help="print the figures without writing docs/benchmarks.md")
    parser.add_argument(
        "--gateway-runs",
        type=int,
        default=0,
        metavar="N",
        help="run only the gateway load, N times, and print its CPU per report (no MQTT, no fuzz, nothing written)",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count the gateway's user-space instructions per report under valgrind's callgrind",
    )
    parser.add_argument("--serve-gateway", nargs=2, metavar=("DB", "REGISTRY"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.serve_gateway:
        serve_gateway_on_stdio(*arguments.serve_gateway)
        return 0
    # Every fuzzed datagram is a rejection with a (rate-limited) warning; only errors matter here.
    logging.basicConfig(level=logging.ERROR)

    pinned = pin(0, LOAD_CORE)
    file_limit = raise_file_limit(arguments.devices * 2 + SPARE_FILES)
    devices = make_devices(arguments.devices)
    if arguments.callgrind:
        return callgrind_per_report(devices)
    frames = frames_for(devices, arguments.reports)
    acks = expected_acks(devices, arguments.reports)
    if arguments.gateway_runs > 0:
        return gateway_runs(arguments, devices, frames, acks)

    with tempfile.TemporaryDirectory(prefix="baysense-bench-") as directory:
        workdir = Path(directory)
        print("gateway: %d devices x %d reports ..." % (arguments.devices, arguments.reports), flush=True)
        gateway, fuzz_live = bench_gateway(workdir, devices, frames, acks, arguments.reports)
        print(
            "gateway: %.0f reports/s, receive-to-ack p50 %s p99 %s"
            % (gateway["rate"], milliseconds(gateway["p50"]), milliseconds(gateway["p99"])),
            flush=True,
        )

        paho = raw = per_device = version = None
        binary = find_mosquitto()
        if binary is not None:
            version = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout.splitlines()[0]
            print("mqtt: same load as QoS 1 publishes to %s, paho-mqtt client ..." % version, flush=True)
            paho = bench_mqtt(binary, workdir, devices, frames, arguments.reports)
            print("mqtt: %.0f publishes/s, PUBACK p50 %s p99 %s" % (paho["rate"], milliseconds(paho["rtt_p50"]), milliseconds(paho["rtt_p99"])), flush=True)
            print("mqtt: same load, minimal raw-socket client ...", flush=True)
            raw = bench_raw_mqtt(binary, workdir, devices, frames, arguments.reports)
            print("mqtt: %.0f publishes/s, PUBACK p50 %s p99 %s" % (raw["rate"], milliseconds(raw["rtt_p50"]), milliseconds(raw["rtt_p99"])), flush=True)
            # One socket per device here and one in the broker, beside the bench's own files.
            if file_limit >= arguments.devices * 2 + SPARE_FILES:
                print("mqtt: same load, one raw-socket connection per device ...", flush=True)
                per_device = bench_raw_mqtt(binary, workdir, devices, frames, arguments.reports, connections=arguments.devices)
                print(
                    "mqtt: %.0f publishes/s, PUBACK p50 %s p99 %s"
                    % (per_device["rate"], milliseconds(per_device["rtt_p50"]), milliseconds(per_device["rtt_p99"])),
                    flush=True,
                )
            else:
                print("mqtt: one connection per device skipped: open-file limit %d" % file_limit, flush=True)

    print("fuzz: %d s of mutated datagrams through the ingest checks ..." % arguments.fuzz_seconds, flush=True)
    fuzz_in_process = fuzz_ingest(devices, frames, arguments.fuzz_seconds, seed=int(time.time()))

    section = render(arguments, gateway, paho, raw, per_device, version, fuzz_in_process, fuzz_live, pinned)
    print(section)
    if not arguments.no_write:
        benchdoc.write_section(section, SECTION_START, SECTION_END)
        print("wrote %s" % BENCHMARKS_MD.relative_to(PROJECT_DIR))

    if not fuzz_live["alive"] or gateway["stored"] != gateway["reports"]:
        print("bench_gateway: FAILED: the gateway lost reports or stopped acknowledging after the fuzz", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
