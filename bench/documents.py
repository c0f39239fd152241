"""Workflow documents: apply_ops and compile on a large document, and a document run against the builder.

    python bench/documents.py [--blocks 200] [--ops 100] [--chain 100] [--runs 20] [--rounds 5]

Prints the median of ``--rounds`` for: ``apply_ops`` of ``--ops`` ops on a
``--blocks``-block document, ``compile`` of that document (targets: each under
50 ms), and the per-block cost of a ``--chain``-block document run next to the
per-step cost of the same workflow written with the builder (target: within 10 %).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import plait


class AddParams(BaseModel):
    value: int
    label: str = ""


class Total(BaseModel):
    value: int


@plait.connector(type="math.add", description="Add one")
async def add(params: AddParams) -> Total:
    return Total(value=params.value + 1)


@plait.step
async def add_step(total: Total) -> Total:
    return Total(value=total.value + 1)


def big_document(blocks: int) -> dict[str, Any]:
    """Blocks in layers of ten: each reads a block of the layer before."""
    made = []
    for i in range(blocks):
        value: Any = i if i < 10 else f"{{{{b{i - 10}.value}}}}"
        made.append({"id": f"b{i}", "type": "math.add", "params": {"value": value, "label": f"block {i}"}})
    return {"id": "big", "vars": {"region": "eu"}, "blocks": made, "output": f"{{{{b{blocks - 1}.value}}}}"}


def op_batch(blocks: int, count: int) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            ops.append({"op": "update_block", "id": f"b{(i * 7) % blocks}", "params": {"label": f"changed {i}"}})
        elif kind == 1:
            ops.append(
                {"op": "add_block", "id": f"new{i}", "type": "math.add", "params": {"value": f"{{{{b{i}.value}}}}"}}
            )
        elif kind == 2:
            ops.append({"op": "connect", "from": f"b{i % 10}", "to": f"b{blocks - 1 - i % 10}"})
        else:
            ops.append({"op": "set_var", "name": f"v{i}", "value": i})
    return ops


def timed(fn: Any, rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()``: on a shared machine the CPU time is the steadier figure."""
    wall, cpu = [], []
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def chain_document(length: int) -> plait.WorkflowDocument:
    blocks: list[dict[str, Any]] = [{"id": "s0", "type": "math.add", "params": {"value": "{{input.value}}"}}]
    blocks += [
        {"id": f"s{i}", "type": "math.add", "params": {"value": f"{{{{s{i - 1}.value}}}}"}} for i in range(1, length)
    ]
    schema = {"type": "object", "properties": {"value": {"type": "integer"}}}
    return plait.WorkflowDocument.parse(
        {"id": "doc_chain", "input": schema, "blocks": blocks, "output": f"{{{{s{length - 1}}}}}"}
    )


def builder_chain(length: int) -> plait.Workflow[Total, Total]:
    builder = plait.workflow("code_chain", input=Total)
    for i in range(length):
        builder = builder.then(add_step.with_options(id=f"s{i}"))
    return builder.commit()


def per_step(engine: plait.Engine, workflow: Any, runs: int, length: int) -> tuple[float, float]:
    """Wall and CPU (all threads of this process) seconds per step."""
    started, started_cpu = time.perf_counter(), time.process_time()
    for i in range(runs):
        result = engine.start(workflow, {"value": i}).result(timeout=120)
        value = result["value"] if isinstance(result, dict) else result.value
        assert value == i + length, result
    steps = runs * length
    return (time.perf_counter() - started) / steps, (time.process_time() - started_cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--ops", type=int, default=100)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    registry = plait.Registry(add)
    document = plait.WorkflowDocument.parse(big_document(args.blocks))
    ops = op_batch(args.blocks, args.ops)
    result = plait.apply_ops(document, ops, registry)
    assert not result.skipped, result.summary
    apply_wall, apply_cpu = timed(lambda: plait.apply_ops(document, ops, registry), args.rounds)
    compile_wall, compile_cpu = timed(lambda: registry.compile(result.document), args.rounds)
    print(f"machine: {os.cpu_count()} cores; median of {args.rounds} rounds; targets: < 50 ms, ratio <= 1.10")
    print(f"{'figure':44} {'wall':>10} {'cpu':>10}")
    label = f"apply_ops: {args.ops} ops, {args.blocks}-block document"
    print(f"{label:44} {apply_wall * 1000:7.1f} ms {apply_cpu * 1000:7.1f} ms")
    label = f"compile: the {len(result.document.blocks)}-block result"
    print(f"{label:44} {compile_wall * 1000:7.1f} ms {compile_cpu * 1000:7.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        doc_costs, code_costs = [], []
        with plait.Engine(f"sqlite:///{Path(tmp) / 'bench.db'}") as engine:
            engine.register(add)
            doc_flow = engine.compile_document(chain_document(args.chain))
            code_flow = builder_chain(args.chain)
            per_step(engine, doc_flow, 1, args.chain)  # warm up
            per_step(engine, code_flow, 1, args.chain)
            for _ in range(args.rounds):
                doc_costs.append(per_step(engine, doc_flow, args.runs, args.chain))
                code_costs.append(per_step(engine, code_flow, args.runs, args.chain))
    doc_wall, code_wall = (statistics.median(c[0] for c in costs) * 1e6 for costs in (doc_costs, code_costs))
    doc_cpu, code_cpu = (statistics.median(c[1] for c in costs) * 1e6 for costs in (doc_costs, code_costs))
    print(f"run: {args.runs} runs x {args.chain} blocks, one at a time, SQLite")
    print(f"{'per block (document)':44} {doc_wall:7.1f} us {doc_cpu:7.1f} us")
    print(f"{'per step (builder)':44} {code_wall:7.1f} us {code_cpu:7.1f} us")
    print(f"{'document / builder':44} {doc_wall / code_wall:10.2f} {doc_cpu / code_cpu:10.2f}")


if __name__ == "__main__":
    main()
