"""Which machines a report's records came from, and which runs a busy machine slowed. Pure.

Float results depend on the CPU (its kernels, instruction set, thread count) and on the device, so
the header of a report names the machines behind its records, with counts, and warns when they are
several. A run's times depend on what else the machine did: a run whose 1-minute load average, at
its start or its end, was a quarter above its machine's logical CPUs shared the CPU with other work, and
the report names its cell and seed. Records written before these fields existed read as unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.records import Machine

UNKNOWN = "machine not recorded"


@dataclass(frozen=True)
class Busy:
    """One run that ran on a machine loaded beyond its cores."""

    seed: int
    load: float  # the higher of the 1-minute load averages at the run's start and end
    cores: int  # the machine's logical CPUs


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def describe(m: Machine) -> str:
    """The machine in one phrase: CPU model, instruction set, torch threads of the CPUs, device."""
    if all(v is None for v in (m.cpu_model, m.cpu_capability, m.torch_threads, m.device)):
        return UNKNOWN
    threads = f"{m.torch_threads} threads" if m.torch_threads is not None else "threads unknown"
    if m.cpu_count is not None:
        threads += f" of {m.cpu_count} CPUs"
    device = str(m.device or "device unknown")
    if device.startswith("cuda") and m.device_name:
        device += f" ({m.device_name})"
    return (f"{m.cpu_model or 'unknown CPU'} · {m.cpu_capability or 'instruction set unknown'} · {threads} · "
            f"device {device}")


def peak_load(m: Machine) -> float | None:
    """The higher 1-minute load average of the run's start and end (``None``: not recorded)."""
    loads = [v for point in (m.load_start, m.load_end) if isinstance(point, list | tuple) and point
             if (v := _number(point[0])) is not None]
    return max(loads) if loads else None


# A run that uses every core loads the machine to about its core count by itself (a quickstart run
# on 2 cores ended at 2.05), so only a load a quarter beyond the cores says that other work shared them.
BUSY_MARGIN = 1.25


def busy(m: Machine, seed: int) -> Busy | None:
    """The run, when its machine's load exceeded ``BUSY_MARGIN`` × its logical CPUs at its start or its end."""
    load, cores = peak_load(m), _number(m.cpu_count)
    if load is None or not cores or load <= BUSY_MARGIN * cores:
        return None
    return Busy(seed, load, int(cores))


class Cell(Protocol):
    """What the header reads of a report's row (``aggregate.Row``, which imports this module)."""

    @property
    def group(self) -> str: ...
    label: str
    machines: dict[str, int]
    busy: list[Busy]


def render_machines(rows: Sequence[Cell]) -> list[str]:
    """The header lines: the machines with their run counts, a warning when there are several,
    and the cells with runs on a busy machine. Nothing when no record names its machine."""
    counts: dict[str, int] = {}
    for r in rows:
        for name, n in r.machines.items():
            counts[name] = counts.get(name, 0) + n
    out: list[str] = []
    if set(counts) - {UNKNOWN}:
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ordered) == 1:
            name, n = ordered[0]
            out += [f"Machine: {n} run{'s' if n != 1 else ''} on {name}.", ""]
        else:
            mixed = [f"{r.group} / `{r.label}`" for r in rows if len(r.machines) > 1]
            out += [f"> ⚠ **These records come from {len(ordered)} machines** (CPU model, instruction set, threads "
                    "or device differ). Float results move across CPUs (README, *How much results move across "
                    "CPUs*): compare cells made on one machine, and read a difference between machines as "
                    "partly the machine's."
                    + (f" Cells whose seeds ran on several: {', '.join(mixed)}." if mixed else ""), ">"]
            out += [f"> - {n} run{'s' if n != 1 else ''}: {name}" for name, n in ordered]
            out.append("")
    loaded = [r for r in rows if r.busy]
    if loaded:
        n = sum(len(r.busy) for r in loaded)
        cells = "; ".join(f"{r.group} / `{r.label}` (" + ", ".join(f"s{b.seed}: load {b.load:.2f} on {b.cores} CPUs"
                                                                    for b in r.busy) + ")" for r in loaded)
        out += [f"> ⚠ **Busy machine**: {n} run{'s' if n != 1 else ''} started or ended with a 1-minute load "
                f"average above {BUSY_MARGIN:g} × the machine's logical CPUs (a run alone loads it to about its "
                "cores), so other work shared the CPU: their times, "
                f"throughput and the Pareto front overstate what the strategy costs. Runs: {cells}.", ""]
    return out
