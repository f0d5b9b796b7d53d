"""Per-DPU and per-space state: pure logic over plain values, and the Faust tables that hold them."""
