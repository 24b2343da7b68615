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
    # in flight: 2 client processes x 128 requests x 32 operations, in the JSON and in the table
    assert (summary["requests_in_flight"], summary["ops_per_request"], summary["ops_in_flight"]) == (256, 32, 8192)
    assert any("2x128x32" in line for line in lines[:-1])
    # CPU and memory, as the README says: by role, and per replica (supervisor + workers, from /proc)
    roles = {"workers", "supervisors", "clients"}
    assert set(summary["cpu_us_per_op"]) == roles and set(summary["cpu_cores"]) == roles
    assert all(summary["cpu_us_per_op"][role] > 0 and summary["cpu_cores"][role] > 0 for role in roles)
    assert set(summary["replicas"]) == {"1", "2", "3"}
    for replica in summary["replicas"].values():
        assert replica["cpu_seconds"] > 0 and replica["cpu_cores"] > 0
        assert 0 < replica["pss_mb"] <= replica["rss_mb"] <= replica["peak_rss_mb"]
    assert summary["peak_rss_mb_per_replica"] == max(r["peak_rss_mb"] for r in summary["replicas"].values())
    full = json.load(open(tmp_path / "r.json"))
    assert set(full[0]["cpu_us_per_op"]) == roles
    assert full[0]["peak_rss_mb_per_replica"] > 0
    # every process measured by pid: 3 supervisors, 3 x 2 workers, 2 clients
    counts = {role: sum(p["role"] == role for p in full[0]["processes"]) for role in roles}
    assert counts == {"supervisors": 3, "workers": 6, "clients": 2}


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
