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
    for key in ("mode", "loop", "ops_per_sec", "p50_ms", "p99_ms", "fsyncs_per_op", "groups",
                "peak_rss_mb_per_replica"):
        assert key in summary
    # The headline mode: one operation per request, batched by the master.
    assert summary["groups"] == 8 and summary["mode"] == "server" and summary["loop"] == "closed"
    assert summary["ops_per_sec"] > 0 and summary["fsyncs_per_op"] > 0
    # in flight: 2 client processes x 128 requests x 1 operation, in the JSON and in the table
    assert (summary["requests_in_flight"], summary["ops_per_request"], summary["ops_in_flight"]) == (256, 1, 256)
    assert any("2x128x1" in line and "server" in line for line in lines[:-1])
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
    lines = run("--duration", "1", "--warmup", "0.5", "--groups", "1,4", "--batching", "off,server,client",
                "--clients", "1", "--concurrency", "8", "--plot", str(tmp_path / "plots"))
    rows = json.loads(lines[-1])
    assert sorted((r["groups"], r["mode"]) for r in rows) == [
        (1, "client"), (1, "off"), (1, "server"), (4, "client"), (4, "off"), (4, "server")]
    assert {r["mode"]: r["ops_per_request"] for r in rows} == {"client": 32, "off": 1, "server": 1}
    assert (tmp_path / "plots" / "ops_vs_groups.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "latency_vs_throughput.png").stat().st_size > 1000


def test_trace_one_cuts_each_round_trip_into_phases_that_add_up(tmp_path):
    """--trace-one: the workers' traces (PAXOS_CORE_TRACE_DIR) and the client's times line up on one clock.
    Each matched operation's phases are consecutive steps of its round trip: none negative, and they add up
    to the round trip exactly. Most operations match (a master change or a retry would not)."""
    from paxos_core.bench import traceone

    lines = run("--trace-one", "--duration", "1.5", "--warmup", "0.5", "--json", str(tmp_path / "t.json"))
    summary = json.loads(lines[-1])
    variant = summary["variants"]["default"]
    assert summary["bench"] == "trace-one" and summary["in_flight"] == 1 and summary["mode"] == "server"
    assert variant["ops"] > 50 and variant["matched"] >= 0.8 * variant["ops"], variant
    assert [p["phase"] for p in variant["phases"]] == [name for name, _ in traceone.PHASES]
    assert all(p["p50_us"] is not None and p["p50_us"] >= 0 for p in variant["phases"])
    assert any("follower: synced write" in line for line in lines[:-1])
    # Per operation (the --json file): consecutive phases, summing to the round trip.
    ops = json.load(open(tmp_path / "t.json"))["runs"]["default"][0]["per_op"]
    assert len(ops) == variant["matched"]
    for op in ops:
        parts = [op[name] for name, _ in traceone.PHASES]
        assert min(parts) >= 0, op
        assert abs(sum(parts) - op["total"]) < 1e-6, op


def test_a_batch_size_needs_client_mode():
    proc = subprocess.run([sys.executable, "-m", "paxos_core", "bench", "--batch", "8"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--batching client" in proc.stderr


def test_rejoin_bench_rebuilds_a_wiped_node_and_reads_its_keys_back(tmp_path):
    lines = run("rejoin", "--groups", "4", "--keys", "400", "--retain", "64", "--concurrency", "8",
                "--json", str(tmp_path / "r.json"), timeout=600)
    summary = json.loads(lines[-1])
    assert summary["snapshots_installed"] >= 4, "every group's log was truncated: each needs a snapshot"
    assert summary["keys_verified_on_rebuilt_node"] > 0
    assert summary["rebuild_seconds"] > 0 and summary["snapshot_mb_installed"] > 0
    for key in ("ops_per_sec_healthy", "ops_per_sec_one_node_down", "ops_per_sec_during_rebuild", "ops_per_sec_after"):
        assert summary[key] is not None
    assert json.load(open(tmp_path / "r.json"))["groups"] == 4


def test_soak_bench_reports_disk_per_node_over_time(tmp_path):
    lines = run("soak", "--duration", "6", "--seconds", "2", "--groups", "2", "--retain", "64",
                "--json", str(tmp_path / "s.json"), timeout=600)
    summary = json.loads(lines[-1])
    assert summary["retain_instances"] == 64 and summary["writes"] > 0
    samples = json.load(open(tmp_path / "s.json"))["samples"]
    assert len(samples) == 3
    assert all(set(row["nodes"]) == {"1", "2", "3"} and row["nodes"]["1"]["disk_mb"] > 0 for row in samples)


def test_storage_bench_reports_the_speedup_key():
    lines = run("storage", "--quick", "--groups", "1,256", "--seconds", "0.1", "--repeat", "1")
    assert "group_commit_speedup" in json.loads(lines[-1])


def test_idle_bench_reports_bytes_and_cpu_per_idle_group():
    lines = run("idle", "--groups", "200", "--seconds", "1")
    rows = json.loads(lines[-1])["idle"]
    assert rows[0]["groups"] == 200 and "bytes_per_group" in rows[0] and "cpu_percent" in rows[0]
    assert rows[0]["touched"] is True and 0 < rows[0]["ready_seconds"] < 300


def test_fsync_probe_reports_latency_and_stalls(tmp_path):
    lines = run("fsync", "--seconds", "0.5", "--parallel", "2", "--dir", str(tmp_path))
    rows = json.loads(lines[-1])["fsync"]
    assert len(rows) == 2
    for row in rows:
        assert row["fsyncs"] > 0 and row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"] <= row["max_ms"]
        assert 0.0 <= row["stall_time_share"] <= 1.0 and row["cpu_us_per_fsync"] > 0
    assert list(tmp_path.iterdir()) == []            # the probe files are removed


def test_fsync_summary_rounds_the_maximum_like_the_percentiles():
    from paxos_core.bench.fsync import summarise
    # 241 samples whose slowest is 4.003 ms: p99.9 is that sample, so max must not be rounded below it
    row = summarise([0.001] * 240 + [0.004003], wall=1.0, cpu=0.01)
    assert row["p999_ms"] == row["max_ms"] == 4.003 and row["p50_ms"] == 1.0
    assert row["fsyncs"] == 241 and row["stalls_10ms"] == 0


def test_member_bench_times_the_adoption_of_a_removal_by_every_group(tmp_path):
    lines = run("member", "--groups", "8", "--json", str(tmp_path / "m.json"))
    summary = json.loads(lines[-1])
    assert summary["groups"] == 8 and summary["epoch"] == 2 and summary["removed_node_exit_code"] == 4
    assert summary["all_groups_adopted_seconds"] > 0 and summary["ops_per_sec_before"] > 0
    assert summary["samples"][-1][1:] == [0, 0], "the last sample: no worker still adopting"
    assert json.loads((tmp_path / "m.json").read_text()) == summary
