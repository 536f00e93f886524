"""The tutoring evaluation: typed student turns through the real pipeline, graded by explicit,
deterministic checks. Run `python -m latency_bench.tutor_eval --help`."""
