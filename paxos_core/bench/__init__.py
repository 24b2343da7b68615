"""Benchmarks behind `paxos-core bench` (the scripts in the repository's bench/ folder are micro-benchmarks)."""
