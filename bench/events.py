"""Benchmark: events through outbox -> relay -> JetStream -> audit consumer -> audit.events, and
side by side with plain FastStream consumers doing less on the same servers.

Starts an embedded PostgreSQL (durable: fsync on) and NATS with JetStream (file storage), or uses
DATABASE_URL / NATS_URL, once for the whole run; everything it writes goes under one temporary
folder, removed at the end, also when interrupted. Each run of a side checks that nothing was lost
or duplicated (and, for ours, that every tenant's hash chain verifies).

    .venv/bin/python bench/events.py --events 20000              # ours, writer alongside
    .venv/bin/python bench/events.py --events 20000 --backlog    # ours, written first, then drained
    .venv/bin/python bench/events.py --events 20000 --rate 2000  # ours, offered load held
    .venv/bin/python bench/events.py --events 20000 --compare    # ours and FastStream, interleaved

Ours (`bench/pipeline.py`): the writer puts events into identity's outbox as a service does; the
real identity process (its relay) publishes them and the real audit process (its consumer)
appends them to the hash-chained log. FastStream's (`bench/faststream_side.py`): the same events
published with FastStream to a stream of its own, consumed by `bench/faststream_app.py` in
batches of 500 (`batch`) or one transaction per message (`message`).

Sustained rate: events / (first write, or with --backlog the first publish, -> last commit).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import faststream_side, pipeline  # noqa: E402
from bench.harness import servers_running  # noqa: E402
from bench.measure import ALONGSIDE, DRAINED, Result  # noqa: E402

SIDES = ("ours", "batch", "message")  # "batch", "message": FastStream's two idioms


async def run_side(at, side: str, mode: str, args: argparse.Namespace) -> Result:
    if side == "ours":
        return await pipeline.run(at, mode, args, rate=args.rate)
    return await faststream_side.run(at, side, mode, args)


def show(result: Result, *, details: bool) -> None:
    print(
        f"{result.side:<24} {result.mode:<17} {result.rate:>8,.0f} events/s "
        f"({result.events} in {result.seconds:.2f}s)   {result.verdict()}"
    )
    print(
        f"{'':<24} {result.cpu_line()}; machine busy {result.machine_busy / result.seconds:.1f} "
        f"of 2 cores, load {result.load:.1f} before",
        flush=True,
    )
    if details:
        for line in result.details:
            print(f"{'':<24} {line}")


async def one(args: argparse.Namespace) -> list[Result]:
    mode = DRAINED if args.backlog else ALONGSIDE
    async with servers_running() as at:
        result = await run_side(at, args.side, mode, args)
    show(result, details=True)
    return [result]


async def compare(args: argparse.Namespace) -> list[Result]:
    """Each mode, `rounds` times, the sides interleaved (ours, theirs, ours, theirs)."""
    results: list[Result] = []
    async with servers_running() as at:
        for mode in (DRAINED, ALONGSIDE):
            for _ in range(args.rounds):
                for side in args.sides:
                    results.append(await run_side(at, side, mode, args))
                    show(results[-1], details=False)
    print()
    print(table(results, args.sides))
    return results


def table(results: list[Result], sides: list[str]) -> str:
    """The side-by-side table (Markdown), with ours / FastStream batch per round."""
    names = [pipeline.SIDE if s == "ours" else faststream_side.IDIOMS[s] for s in sides]
    lines = [
        "| mode | " + " | ".join(names) + " | ours / FastStream batch |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for mode in (DRAINED, ALONGSIDE):
        runs = {
            side: [r for r in results if r.mode == mode and _side_of(r) == side] for side in sides
        }
        cells = [" and ".join(f"{r.rate:,.0f}" for r in runs[side]) + " events/s" for side in sides]
        pairs = zip(runs.get("ours", []), runs.get("batch", []), strict=False)
        ratios = [f"{o.rate / b.rate:.2f}" for o, b in pairs]
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {', '.join(ratios) or '-'} |")
    return "\n".join(lines)


def _side_of(result: Result) -> str:
    if result.side == pipeline.SIDE:
        return "ours"
    return next(k for k, v in faststream_side.IDIOMS.items() if v == result.side)


def main() -> None:
    parser = argparse.ArgumentParser(description="outbox -> relay -> JetStream -> audit benchmark")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--per-tx", type=int, default=100, help="events per writer transaction")
    parser.add_argument("--relay-batch", type=int, default=500)
    parser.add_argument("--consumer-batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--rate", type=float, default=0, help="offered load in events/s (default: unthrottled)"
    )
    parser.add_argument(
        "--backlog", action="store_true", help="write everything first, then start the consumers"
    )
    parser.add_argument("--side", choices=SIDES, default="ours", help="which side to run alone")
    parser.add_argument(
        "--compare", action="store_true", help="every side, both modes, interleaved"
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --compare: runs of each")
    parser.add_argument(
        "--sides", nargs="+", choices=SIDES, default=list(SIDES), help="with --compare"
    )
    args = parser.parse_args()
    try:
        results = asyncio.run(compare(args) if args.compare else one(args))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the harness turns it into this)
        print("interrupted: servers stopped, the run's folder removed", file=sys.stderr)
        raise SystemExit(130) from None
    if not all(r.ok for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
