"""The benchmark commands run and report in the documented form (figures are never asserted here)."""
import json
import subprocess
import sys


def run(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "paxos_core", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def test_cluster_bench_quick_reports_a_json_summary_last(tmp_path):
    lines = run("--quick", "--duration", "2", "--warmup", "0.5", "--groups", "8", "--json", str(tmp_path / "r.json"))
    summary = json.loads(lines[-1])
    for key in ("ops_per_sec", "p99_ms", "fsyncs_per_op", "groups", "batching"):
        assert key in summary
    assert summary["groups"] == 8 and summary["batching"] == "on"
    assert summary["ops_per_sec"] > 0 and summary["fsyncs_per_op"] > 0
    full = json.load(open(tmp_path / "r.json"))
    assert set(full[0]["cpu_us_per_op"]) == {"workers", "supervisors", "clients"}
    assert full[0]["peak_rss_mb_per_replica"] > 0


def test_cluster_bench_sweeps_comma_lists_and_plots(tmp_path):
    lines = run("--duration", "1", "--warmup", "0.5", "--groups", "1,4", "--batching", "off,on",
                "--clients", "1", "--concurrency", "8", "--plot", str(tmp_path / "plots"))
    rows = json.loads(lines[-1])
    assert sorted((r["groups"], r["batching"]) for r in rows) == [(1, "off"), (1, "on"), (4, "off"), (4, "on")]
    assert (tmp_path / "plots" / "ops_vs_groups.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "latency_vs_throughput.png").stat().st_size > 1000


def test_storage_bench_reports_the_speedup_key():
    lines = run("storage", "--quick", "--groups", "1,256", "--seconds", "0.1", "--repeat", "1")
    assert "group_commit_speedup" in json.loads(lines[-1])


def test_idle_bench_reports_bytes_and_cpu_per_idle_group():
    lines = run("idle", "--groups", "200", "--seconds", "1")
    rows = json.loads(lines[-1])["idle"]
    assert rows[0]["groups"] == 200 and "bytes_per_group" in rows[0] and "cpu_percent" in rows[0]


def test_fsync_probe_reports_latency_and_stalls(tmp_path):
    lines = run("fsync", "--seconds", "0.5", "--parallel", "2", "--dir", str(tmp_path))
    rows = json.loads(lines[-1])["fsync"]
    assert len(rows) == 2
    for row in rows:
        assert row["fsyncs"] > 0 and row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert 0.0 <= row["stall_time_share"] <= 1.0 and row["cpu_us_per_fsync"] > 0
    assert list(tmp_path.iterdir()) == []            # the probe files are removed
