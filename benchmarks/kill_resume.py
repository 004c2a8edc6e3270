"""Acceptance check: kill -9 a demo run at random moments, resume, compare with an uninterrupted run.

Usage: python benchmarks/kill_resume.py --kills 5 --json benchmarks/results/kill_resume.json [--reference DIR] [demo flags...]
Writes {"kills": [...seconds...], "identical_summary": bool, "identical_rollouts": bool, "identical_space": bool}.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", type=Path, help="A finished, uninterrupted run of the same demo flags to reuse.")
    ap.add_argument("--reference-s", type=float, default=0.0, help="Its wall time, to spread the kills over.")
    args, demo_flags = ap.parse_known_args()
    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    cmd = [sys.executable, "-m", "persona_axis", "demo", *demo_flags]
    ref = work / "ref"
    if args.reference:
        shutil.copytree(args.reference, ref)
        full_s = args.reference_s or 600.0
    else:
        start = time.perf_counter()
        subprocess.run([*cmd, "--out", str(ref)], check=True, capture_output=True)
        full_s = time.perf_counter() - start
    rng = random.Random(args.seed)
    kills = []
    out = work / "killed"
    for _ in range(args.kills):
        delay = rng.uniform(8.0, max(9.0, full_s / args.kills))  # each try makes some progress
        proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            kills.append({"at_s": round(delay, 1), "killed": False})  # it had already finished
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(
                {"at_s": round(delay, 1), "killed": True, "chunks_on_disk": len(list(out.glob("rollouts/*.jsonl")))}
            )
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)

    def numbers(p: Path) -> dict:
        s = json.loads((p / "summary.json").read_text())
        s.pop("timings_s")
        return s

    ref_chunks = sorted(p.name for p in (work / "ref" / "rollouts").iterdir())
    result = {
        "demo_flags": demo_flags,
        "uninterrupted_s": round(full_s, 1),
        "kills": kills,
        "identical_summary": numbers(work / "ref") == numbers(out),
        "identical_rollouts": ref_chunks == sorted(p.name for p in (out / "rollouts").iterdir())
        and all(
            (work / "ref" / "rollouts" / n).read_bytes() == (out / "rollouts" / n).read_bytes() for n in ref_chunks
        ),
        "identical_space": (work / "ref" / "space" / "space.safetensors").read_bytes()
        == (out / "space" / "space.safetensors").read_bytes(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
