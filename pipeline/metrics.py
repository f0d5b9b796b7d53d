"""Process-local counters and latency summaries, rendered as Prometheus text for ``/metrics``."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class Metrics:
    counters: Counter = field(default_factory=Counter)
    """Monotonic counters by name."""
    latencies_ms: dict[str, deque] = field(default_factory=dict)
    """Recent latency samples by name (bounded)."""

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def observe_ms(self, name: str, value: float) -> None:
        self.latencies_ms.setdefault(name, deque(maxlen=2048)).append(value)

    def render(self, gauges: dict[str, float]) -> str:
        lines = []
        for name, value in sorted(self.counters.items()):
            lines += [f"# TYPE dpu_{name}_total counter", f"dpu_{name}_total {value}"]
        for name, value in sorted(gauges.items()):
            lines += [f"# TYPE dpu_{name} gauge", f"dpu_{name} {value}"]
        for name, samples in sorted(self.latencies_ms.items()):
            ordered = sorted(samples)
            lines.append(f"# TYPE dpu_{name}_ms summary")
            for q in (0.5, 0.99):
                v = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0
                lines.append(f'dpu_{name}_ms{{quantile="{q}"}} {v:.3f}')
            lines.append(f"dpu_{name}_ms_count {len(ordered)}")
        return "\n".join(lines) + "\n"


metrics = Metrics()
