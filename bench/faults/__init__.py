"""Issue #19's fault scenarios, re-runnable: ``python -m bench.faults <scenario> [options]`` prints one JSON
object of figures (docs/operating-limits.md#re-running-the-scenarios)."""
