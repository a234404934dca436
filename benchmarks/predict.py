"""Benchmark of blockwise search and of the whole ``mmalign predict`` command.

    python benchmarks/predict.py                      # random vectors at 20k, 100k, 300k per side
    python benchmarks/predict.py --sizes 20000 --csls 0 3 --dim 300
    python benchmarks/predict.py --dbp15k ../shared/data/dbp15k/zh_en --dim 300 900 2100
    python benchmarks/predict.py --run RUN -w WORKDIR  # a real trained run

Random mode: top-10 of every query over N random unit vectors per side, each size in a fresh
subprocess so its peak RSS is its own; the table shows seconds, peak RSS and the inputs'
size next to what one N × N float32 matrix would take, so linear growth is visible. CPU
seconds are printed too: on a shared machine they say more than wall time (with T threads
and an idle machine, wall ≈ CPU / T for the search).

``--dbp15k``: the whole command (a fresh ``python -m mmalign predict`` writing the TSV to a
file) on a workspace ingested from the real benchmark and a run folder whose embeddings
are random, with 4,500 random gold pairs as seeds (the 30% protocol): 14,888 × 15,072
entities are ranked. Only the embedding values are made up, and the search does the same
work whatever they are. ``--run`` times the command on a real trained run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from children import run_child  # noqa: E402  (benchmarks/children.py: a child's wall s, peak RSS, CPU s)


def one_size(n: int, dim: int, csls_k: int, backend: str) -> dict[str, object]:
    """Search in this process (called in a fresh subprocess per size)."""
    import torch

    from mmalign import search

    g = torch.Generator().manual_seed(0)
    left = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    right = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    start, cpu = time.perf_counter(), time.process_time()
    search.topk(left, right, 10, csls_k=csls_k, backend=backend)  # type: ignore[arg-type]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    used = "faiss" if backend != "torch" and not csls_k and search.faiss_available() else "torch"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"n": n, "dim": dim, "csls": csls_k, "backend": used, "seconds": seconds, "cpu": cpu, "peak_rss_mb": peak}


def random_table(sizes: list[int], dims: list[int], csls: list[int], backend: str) -> None:
    print("| n per side | dim | CSLS | backend | seconds | CPU seconds | peak RSS MB | inputs MB | one N×N matrix MB |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for dim in dims:
        for csls_k in csls:
            for n in sizes:
                out = subprocess.run(
                    [sys.executable, __file__, "--one", str(n), "--dim", str(dim), "--csls", str(csls_k),
                     "--backend", backend],
                    check=True, capture_output=True, text=True,
                ).stdout
                r = json.loads(out)
                print(
                    f"| {n:,} | {dim} | {csls_k} | {r['backend']} | {r['seconds']:.1f} | {r['cpu']:.1f} "
                    f"| {r['peak_rss_mb']:,.0f} "
                    f"| {2 * n * dim * 4 / 2**20:,.0f} | {n * n * 4 / 2**20:,.0f} |",
                    flush=True,
                )


def whole_command(workdir: Path, run: Path, csls_k: int) -> tuple[float, float, float, int]:
    """Wall and CPU seconds, peak RSS (MB) and output lines of ``mmalign predict --top-k 10``."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv") as out:
        command = [sys.executable, "-m", "mmalign", "predict", "-q", "-w", str(workdir), "--run", str(run),
                   "--top-k", "10", "--csls", str(csls_k)]
        measured = run_child(command, stdout=out)
        lines = sum(1 for _ in open(out.name, encoding="utf-8"))
    return measured.seconds, measured.cpu_seconds, measured.peak_mb, lines


def fake_run(workdir: Path, dim: int) -> Path:
    """A run folder for a DBP15K workspace: random embeddings, 4,500 random gold pairs as seeds."""
    import numpy as np
    import torch

    from mmalign.atomic import atomic_write_json
    from mmalign.pairs import write_pairs
    from mmalign.run import atomic_save_tensors, new_run, pairs_file
    from mmalign.workspace import Workspace

    workspace = Workspace.open(workdir)
    rng = np.random.default_rng(0)
    left, right = workspace.kg1.entity_index(), workspace.kg2.entity_index()
    links = np.array([(left[a], right[b]) for a, b in workspace.links])
    seeds = links[rng.permutation(len(links))[:4500]]
    run = new_run(workdir)
    write_pairs(pairs_file(run, "train"), seeds[:4050], workspace)
    write_pairs(pairs_file(run, "valid"), seeds[4050:], workspace)
    tensors = {
        side: torch.nn.functional.normalize(torch.randn(len(kg.entities), dim), dim=1)
        for side, kg in (("kg1", workspace.kg1), ("kg2", workspace.kg2))
    }
    atomic_save_tensors(run / "embeddings.safetensors", tensors)
    atomic_write_json(run / "config.json", {"options": {"csls": 3}, "data": workspace.manifest["sources"]})
    return run


def command_table(rows: list[tuple[str, Path, Path]], csls: list[int]) -> None:
    print("| run | CSLS | whole command seconds | CPU seconds | peak RSS MB | rows written |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, workdir, run in rows:
        for csls_k in csls:
            seconds, cpu, rss, lines = whole_command(workdir, run, csls_k)
            print(f"| {label} | {csls_k} | {seconds:.1f} | {cpu:.1f} | {rss:,.0f} | {lines - 1:,} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000, 300000])
    parser.add_argument("--dim", type=int, nargs="+", default=[300])
    parser.add_argument("--csls", type=int, nargs="+", default=[0])
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "faiss"])
    parser.add_argument("--dbp15k", type=Path, help="benchmark folder: time the whole command on it")
    parser.add_argument("--run", type=Path, help="a trained run folder (with -w): time the whole command")
    parser.add_argument("-w", "--workdir", type=Path, default=Path("mmalign-work"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.dim[0], args.csls[0], args.backend)))
        return
    from mmalign.machine import machine_line

    print(f"# {machine_line('fp32 (search)')}; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    if args.run:
        command_table([(str(args.run), args.workdir, args.run)], args.csls)
    elif args.dbp15k:
        from mmalign.ingest import ingest

        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp) / "work"
            ingest([args.dbp15k], workdir)
            runs = [(f"{args.dbp15k.name} dim {dim}", workdir, fake_run(workdir, dim)) for dim in args.dim]
            command_table(runs, args.csls)
    else:
        random_table(args.sizes, args.dim, args.csls, args.backend)


if __name__ == "__main__":
    main()
