#!/usr/bin/env python3
"""Real connections between the bench's pods (the network namespaces enforcer/bench/lib.sh makes).

A probe runs on a thread of its own that enters the source pod's network namespace (setns(2)
moves only the calling thread), so one process probes from every pod, and its connections to
the apiserver stay in the root namespace. A probe's answer is what a client sees: `connected`
(TCP accepted, UDP echoed), `refused` (a reset or an ICMP unreachable: what a REJECT rule or a
closed port gives) or `timed out` (nothing came back: a DROP rule).

  probe.py serve PORT/PROTO ...                     in a pod's namespace: accept TCP, echo UDP
  probe.py wait NETNS IP PORT ANSWER LIMIT           probe TCP until the answer is ANSWER (at most
                                                     LIMIT seconds); print how long it took
  probe.py matrix KUBECONFIG PALISADE LIMIT NS/NAME=NETNS@IP ...
      probe every ordered pair of distinct pods on 80 and 81, TCP and UDP, until the matrix
      equals what `palisade reach` predicts from the cluster (at most LIMIT seconds); print
      the differences otherwise (exit 1)
"""
import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
PAYLOAD = b"palisade-probe"
XYZ_PORTS = [(80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP")]
_libc = ctypes.CDLL(None, use_errno=True)


def enter(netns):
    """Moves the calling thread into /run/netns/NETNS."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
    finally:
        os.close(fd)


def _answer(ip, port, proto, timeout):
    kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        try:
            s.connect((ip, port))
            if proto == "TCP":
                return "connected"
            s.send(PAYLOAD)
            return "connected" if s.recv(64) == PAYLOAD else "refused"
        except socket.timeout:
            return "timed out"
        except OSError:  # ECONNREFUSED, EHOSTUNREACH, EACCES (admin-prohibited), ...
            return "refused"


def answer(netns, ip, port, proto="TCP", timeout=1.0):
    """One connection attempt from inside NETNS, on a thread of its own."""
    out = []

    def run():
        try:
            enter(netns)
            out.append(_answer(ip, port, proto, timeout))
        except OSError as e:
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def wait_for(netns, ip, port, expected, limit, proto="TCP"):
    """Probes every 10 ms until the answer is `expected`; the seconds it took, or None after
    `limit` seconds."""
    start = time.monotonic()
    while True:
        # 100 ms at most a try: an ICMP unreachable may be rate-limited away (see changes.py)
        if answer(netns, ip, port, proto, timeout=0.1) == expected:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            return None
        time.sleep(0.01)


def serve(specs):
    def tcp(sock):
        while True:
            conn, _ = sock.accept()
            conn.close()

    def udp(sock):
        while True:
            data, peer = sock.recvfrom(64)
            sock.sendto(data, peer)

    for spec in specs:
        port, proto = spec.split("/")
        kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        if proto == "TCP":
            s.listen(128)
        threading.Thread(target=tcp if proto == "TCP" else udp, args=(s,), daemon=True).start()
    threading.Event().wait()


def predict(kubeconfig, palisade, pods):
    """`palisade reach` on the live cluster: {(from, to, port, proto): allowed} for `pods`."""
    args = [palisade, "reach", "--kubeconfig", kubeconfig, "-o", "json"]
    for port, proto in XYZ_PORTS:
        args += ["--port", f"{port}/{proto}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    alike = {k: [k] + v for k, v in doc.get("alike", {}).items()}
    cells = {}
    for p in doc["probes"]:
        for f in alike.get(p["from"], [p["from"]]):
            for t in alike.get(p["to"], [p["to"]]):
                if f in pods and t in pods and f != t:
                    cells[(f, t, p["port"], p["protocol"])] = p["allowed"]
    return cells


def measure(pods):
    """Every ordered pair of distinct pods on every XYZ port: {cell: answer}, a thread per source."""
    cells, lock = {}, threading.Lock()

    def source(f):
        enter(pods[f][0])
        for t, (_, ip) in pods.items():
            if t == f:
                continue
            for port, proto in XYZ_PORTS:
                a = _answer(ip, port, proto, 1.0)
                with lock:
                    cells[(f, t, port, proto)] = a

    threads = [threading.Thread(target=source, args=(f,)) for f in pods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cells


def matrix(kubeconfig, palisade, limit, args):
    pods = {}
    for arg in args:
        key, where = arg.split("=")
        netns, ip = where.split("@")
        pods[key] = (netns, ip)
    predicted = predict(kubeconfig, palisade, pods)
    expected = len(pods) * (len(pods) - 1) * len(XYZ_PORTS)
    if len(predicted) != expected:
        sys.exit(f"palisade reach predicted {len(predicted)} of the {expected} cells")
    start = time.monotonic()
    while True:
        measured = measure(pods)
        diff = [f"{f} -> {t} {port}/{proto}: measured {measured[(f, t, port, proto)]}, "
                f"predicted {'open' if allowed else 'blocked'}"
                for (f, t, port, proto), allowed in sorted(predicted.items())
                if (measured[(f, t, port, proto)] == "connected") != allowed]
        if not diff:
            opened = sum(predicted.values())
            answers = sorted(set(a for a in measured.values() if a != "connected"))
            print(f"  {len(predicted)} cells equal palisade reach ({opened} open, "
                  f"{len(predicted) - opened} blocked: {', '.join(answers) or '-'}) "
                  f"after {time.monotonic() - start:.1f} s")
            return 0
        if time.monotonic() - start > limit:
            print(f"  {len(diff)} of {len(predicted)} cells differ from palisade reach after "
                  f"{limit} s:\n    " + "\n    ".join(diff))
            return 1
        time.sleep(1)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "serve":
        serve(sys.argv[2:])
    elif cmd == "wait":
        netns, ip, port, expected, limit = sys.argv[2:7]
        took = wait_for(netns, ip, int(port), expected, float(limit))
        if took is None:
            sys.exit(f"{ip}:{port} from {netns}: not {expected} within {limit} s")
        print(f"{took:.3f}")
    elif cmd == "matrix":
        sys.exit(matrix(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
