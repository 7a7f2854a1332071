"""Benchmarks of codex-runtime, run as ``python -m bench NAME``; each prints ratios measured side by side."""
