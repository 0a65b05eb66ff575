"""rb4011_deploy's SFTP upload against a plain paramiko ``put`` of the same file to the same server, in one run;
then the no-op redeploy's wall time.

Server: the tests' RouterOS peer (tests/fixtures/routeros: paramiko SFTP server, API server, TFTP server) on
127.0.0.1. Reference: ``paramiko.SFTPClient.put(local, remote)`` on a fresh default transport. Ours: ``_sftp.Sftp``'s
upload with the per-file progress callback and log (what the module runs), timed the same way (upload only; the
sha256 read-back is reported separately). Rounds alternate reference and ours and keep the fastest of each
(shared machine). Target: ours/reference throughput >= 0.8.

No-op: ``_deploy.deploy`` of a dist already live on the peer (API reads + local sha256 of dist, no SFTP) and the
same through ``playbooks/deploy_rb4011.yml`` (ansible-playbook start-up included).

    .venv/bin/python -m bench.deploy [--mb 64] [--rounds 3] [--no-playbook]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / ".collections"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)


def main() -> int:
    import paramiko

    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _deploy, _routeros, _sftp
    from tests.fixtures.routeros.deploy import deploy as run_deploy
    from tests.fixtures.routeros.dist import make_dist
    from tests.fixtures.routeros.peer import Peer

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-playbook", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmpdir:
        tmp = Path(tmpdir)
        src = tmp / "payload"
        with open(src, "wb") as fh:
            fh.write(os.urandom(args.mb << 20))
        size = src.stat().st_size
        with Peer(tmp / "peer") as peer:
            ssh = _sftp.SshOptions("127.0.0.1", peer.config.user, peer.config.password, peer.ssh_port,
                                   fingerprint=peer.fingerprint)

            def reference() -> float:
                t = paramiko.Transport(("127.0.0.1", peer.ssh_port))
                t.connect(username=peer.config.user, password=peer.config.password)
                client = paramiko.SFTPClient.from_transport(t)
                assert client is not None
                start = time.monotonic()
                client.put(str(src), "/ref.bin")
                wall = time.monotonic() - start
                t.close()
                return wall

            def ours() -> tuple[float, float]:
                progress = _sftp.Progress(tmp / "progress.log")
                with _sftp.Sftp.open(ssh) as s:
                    cb, _elapsed = progress.callback("payload")
                    start = time.monotonic()
                    s.upload(src, "/ours.bin", cb)
                    wall = time.monotonic() - start
                    t0 = time.monotonic()
                    s.sha256("/ours.bin")
                    return wall, time.monotonic() - t0

            ref_best = our_best = verify_best = float("inf")
            for r in range(args.rounds):
                ref = reference()
                mine, verify = ours()
                ref_best, our_best, verify_best = min(ref_best, ref), min(our_best, mine), min(verify_best, verify)
                print(f"round {r + 1}: reference put {size / ref / 1e6:.1f} MB/s, ours {size / mine / 1e6:.1f} MB/s "
                      f"(sha256 read-back {size / verify / 1e6:.1f} MB/s)", flush=True)
            ratio = ref_best / our_best
            print(f"SFTP upload of {size >> 20} MiB: reference {size / ref_best / 1e6:.1f} MB/s, ours "
                  f"{size / our_best / 1e6:.1f} MB/s, throughput ratio ours/reference {ratio:.2f} "
                  f"({'OK' if ratio >= 0.8 else 'BELOW'} target 0.8); read-back {size / verify_best / 1e6:.1f} MB/s")

            dist = make_dist(tmp / "dist", f"tftp://127.0.0.1:{peer.tftp_port}",
                             sizes={"vmlinuz": 8 << 20, "initramfs": 48 << 20})
            target = _deploy.Target(
                _routeros.ApiOptions("127.0.0.1", peer.config.user, peer.config.password, peer.api_port), ssh)
            prog = _sftp.Progress(tmp / "deploy.log")
            t0 = time.monotonic()
            first = _deploy.deploy(target, _deploy.Options(), dist, tmp / "stage", check=False, progress=prog)
            full = time.monotonic() - t0
            times = []
            for _unused in range(args.rounds):
                t0 = time.monotonic()
                again = _deploy.deploy(target, _deploy.Options(), dist, tmp / "stage", check=False, progress=prog)
                times.append(time.monotonic() - t0)
                assert not again["changed"] and again["bytes_sent"] == 0
            print(f"deploy of {first['generation_bytes'] / 1e6:.1f} MB: first {full:.2f}s "
                  f"({first['bytes_sent'] / 1e6:.1f} MB sent, verified by sha256), no-op redeploy "
                  f"{min(times):.2f}s (0 bytes sent)")
            if not args.no_playbook:
                work = tmp / "pb"
                res = run_deploy(work, peer, dist)
                assert res.rc == 0, res.stdout
                t0 = time.monotonic()
                res = run_deploy(work, peer, dist)
                wall = time.monotonic() - t0
                assert res.rc == 0 and res.changed("rb4011-test") == 0, res.stdout
                print(f"no-op redeploy through playbooks/deploy_rb4011.yml: {wall:.2f}s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
