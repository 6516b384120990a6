"""Per-step metrics on rank 0: loss, learning rate, tokens/s, MFU; JSONL + progress line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

#: dense bf16/fp16 tensor-core peak TFLOP/s per device (vendor datasheets, no sparsity)
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "V100": 125.0,
    "T4": 65.0,
}


def device_peak_flops(device_name: str | None, override_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one device: the override, a known GPU's datasheet value, else None."""
    if override_tflops > 0:
        return override_tflops * 1e12
    if not device_name:
        return None
    name = device_name.upper()
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_TFLOPS[key] * 1e12
    return None


def mfu(
    params: int, tokens_per_s: float, peak_flops_per_device: float | None, devices: int
) -> float | None:
    """Model FLOPs utilisation with ~6 FLOPs per parameter per trained token."""
    if not peak_flops_per_device or devices < 1:
        return None
    return 6.0 * params * tokens_per_s / (peak_flops_per_device * devices)


class MetricsLog:
    """``metrics.jsonl``: one JSON object per optimizer step (rank 0 writes)."""

    def __init__(self, path: str | Path, history: list[dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = list(history or [])
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows), encoding="utf-8")
        self.started, self.initial = time.perf_counter(), len(self.rows)

    def progress_line(self, row: dict[str, Any], total: int) -> str:
        """:func:`progress_line` with a bar and the time left measured since this log
        started (a resumed run counts from its first step)."""
        return progress_line(row, total, elapsed=time.perf_counter() - self.started, initial=self.initial)

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def progress_line(row: dict[str, Any], total: int, *, elapsed: float | None = None, initial: int = 0) -> str:
    """Rank 0's line for a step: with ``elapsed`` (seconds since step ``initial``) a
    tqdm bar with the rate and the time left; else the time left at the step's pace."""
    mfu_v = row.get("mfu")
    if elapsed is not None:
        from tqdm import tqdm

        meter = tqdm.format_meter(
            int(row["step"]), total, elapsed, ascii=True, unit="step", initial=initial, ncols=80,
            bar_format="step {n_fmt}/{total_fmt} |{bar:20}| [{elapsed}<{remaining}, {rate_fmt}]",
        )  # fmt: skip
        return "[echo.train] " + "  ".join([meter, *_values(row, mfu_v)])
    parts = [f"step {row['step']}/{total}", *_values(row, mfu_v)]
    step_s = row.get("step_time_s")
    if isinstance(step_s, (int, float)) and total > row["step"]:
        parts.append(f"eta {_duration(step_s * (total - row['step']))}")  # at the last step's pace
    return "[echo.train] " + "  ".join(parts)


def _values(row: dict[str, Any], mfu_v: Any) -> list[str]:
    parts = [
        f"loss {row['loss']:.4f}",
        f"lr {row['lr']:.2e}",
        f"tok/s {row['tokens_per_s']:.0f}",
        f"mfu {mfu_v:.1%}" if mfu_v is not None else "mfu -",
    ]
    if "dpo_margin" in row:
        parts.append(f"margin {row['dpo_margin']:+.3f}")
    return parts


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
