"""The `paxos-core` command line: one-line errors, values from files and stdin, defaults in --help, the cluster
from the environment, JSON output, `group remove` that asks first, progress without escape codes off a terminal.

Every command runs as a subprocess of the paxos_core this test imported (PYTHONPATH), on 127.0.0.1 only.
"""
import argparse
import base64
import contextlib
import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

import paxos_core
from cluster_harness import LocalCluster, free_base_port
from paxos_core.cli.main import build_parser, main
from paxos_core.kv import key_group
from paxos_core.replica import envelope
from paxos_core.statemachine import kv as ops

PACKAGE_ROOT = str(Path(paxos_core.__file__).resolve().parent.parent)
TEN_MB = 10 * 1000 * 1000
BIG_KEY = b"big"       # a value of 10 MB (TEN_MB) is what the issue asked to store


def cli_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PAXOS_CORE_CLUSTER", None)
    env.pop("PAXOS_CORE_DEBUG", None)
    env.update(extra)
    return env


def cli(*args, env=None, stdin=None, text=True, timeout=120):
    """Run `python -m paxos_core ARGS`; stdin is bytes or None (then /dev/null)."""
    return subprocess.run([sys.executable, "-m", "paxos_core", *map(str, args)], capture_output=True,
                          input=stdin if stdin is not None else None,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          env=env or cli_env(), timeout=timeout, text=text and stdin is None)


def assert_one_line_error(result, *, contains=(), code=None):
    """rc != 0 (or == code), stderr exactly one non-empty line, no traceback, nothing on stdout."""
    where = "rc=%s\nstdout=%r\nstderr=%r" % (result.returncode, result.stdout, result.stderr)
    stderr = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
    assert result.returncode != 0, where
    if code is not None:
        assert result.returncode == code, where
    assert "Traceback" not in stderr, where
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip() and stderr.endswith("\n"), where
    assert not result.stdout, where
    for text in contains:
        assert text in lines[0], (text, where)
    return lines[0]


# ---------------------------------------------------------------------------------------------- 1: errors


@pytest.fixture(scope="module")
def stopped_cluster(tmp_path_factory):
    """Node files of a cluster that is not running (nothing listens on its ports), and a broken copy."""
    base = tmp_path_factory.mktemp("clifiles")
    good = base / "good"
    r = cli("init", "--nodes", 3, "--workers", 1, "--groups", 4, "--no-curve", "--base-port",
            free_base_port(3, 1), good)
    assert r.returncode == 0, r.stderr
    bad = base / "bad"
    bad.mkdir()
    text = (good / "node1.toml").read_text()
    (bad / "node1.toml").write_text(text.replace("workers = 1", "workers = 0"))
    assert (bad / "node1.toml").read_text() != text
    return good, bad, base


BAD_INVOCATIONS = [
    # (argv, what the one line must say, exit code)
    (["kv", "put", "KEY"], ["kv put: error", "VALUE"], 2),
    (["kv", "--cluster", "{good}", "put", "KEY"], ["kv put: error", "VALUE"], 2),
    (["kv", "get"], ["kv get: error", "KEY"], 2),
    (["kv"], ["kv: error"], 2),
    (["kv", "frob", "k"], ["invalid choice", "frob"], 2),
    (["kv", "cas", "k", "a", "--cluster", "{good}"], ["kv cas: error", "EXPECTED NEW"], 2),
    (["kv", "cas", "k", "--absent", "--delete", "--cluster", "{good}"], ["kv cas: error", "VALUE"], 2),
    (["kv", "cas", "k", "v", "--absent", "--delete", "--cluster", "{good}"], ["--absent and --delete"], 2),
    (["kv", "get", "k"], ["no cluster given", "PAXOS_CORE_CLUSTER"], 2),
    (["kv", "--timeout", "-1", "get", "k"], ["--timeout", "> 0"], 2),
    (["kv", "get", "k", "--timeout", "nan"], ["--timeout"], 2),
    (["kv", "get", "k", "--mode", "fast"], ["--mode", "invalid choice"], 2),
    (["kv", "--cluster", "{missing}", "get", "k"], ["not a directory"], 2),
    (["kv", "--cluster", "{bad}", "get", "k"], ["cluster.workers"], 2),
    (["status", "--cluster", "{base}"], ["holds no node files"], 2),
    (["kv", "put", "k", "@{missing}", "--cluster", "{good}"], ["No such file"], 2),
    (["kv", "put", "k", "@{base}", "--cluster", "{good}"], ["Is a directory"], 2),
    (["kv", "put", "k", "@", "--cluster", "{good}"], ["kv put: error", "'@@'"], 2),
    (["kv", "cas", "k", "-", "-", "--cluster", "{good}"], ["kv cas: error", "only one value"], 2),
    (["kv", "--cluster", "{good}", "get", "k" * (ops.MAX_KEY_BYTES + 1)], ["ValueTooLarge", "key of"], 3),
    (["kv", "--cluster", "{good}", "--timeout", "0.5", "get", "k"], ["Timeout"], 3),
    (["kv", "--cluster", "{good}", "--timeout", "0.5", "put", "k", "v"],
     ["outcome is unknown", "Timeout", "--request-id"], 4),
    (["kv", "--cluster", "{good}", "put", "k", "v", "--request-id", "7"], ["--request-id", "CLIENT:SEQ"], 2),
    (["kv", "--cluster", "{good}", "delete", "k", "--request-id", "0:1"], ["--request-id", "CLIENT:SEQ"], 2),
    (["group", "add", "-5"], ["group add: error", ">= 0", "-5"], 2),
    (["group", "--cluster", "{good}", "add", "-5"], ["group add: error", ">= 0", "-5"], 2),
    (["group", "add", str(1 << 32)], ["group add: error", "<= 4294967293"], 2),
    (["group", "remove", "x"], ["group remove: error", "group id"], 2),
    (["group", "--cluster", "{good}", "--timeout", "0.5", "remove", "3", "--yes"], ["cannot be asked"], 3),
    (["init", "--nodes", "0", "{fresh}"], ["--nodes", ">= 1"], 2),
    (["init", "--nodes", "64", "{fresh}"], ["--nodes", "<= 63"], 2),
    (["init", "--workers", "x", "{fresh}"], ["--workers"], 2),
    (["init", "--base-port", "70000", "{fresh}"], ["--base-port", "<= 65535"], 2),
    (["init", "--cluster-id", "0", "{fresh}"], ["--cluster-id", ">= 1"], 2),
    (["init", "{good}"], ["already holds node files"], 2),
    (["sim", "--seeds", "-1"], ["--seeds", ">= 0"], 2),
    (["sim", "--nodes", "3,x"], ["--nodes"], 2),
    (["sim", "--nodes", "0"], ["--nodes", ">= 1"], 2),
    (["sim", "--jobs", "0"], ["--jobs"], 2),
    (["sim", "--faults", "bogus"], ["unknown fault kind"], 2),
    (["sim", "--plant", "bogus"], ["unknown plant"], 2),
    (["bench", "--env", "NOEQUALS"], ["--env", "KEY=VALUE"], 2),
    (["bench", "--workers", "0"], ["--workers"], 2),
    (["bench", "--duration", "0"], ["--duration"], 2),
    (["bench", "nothing"], ["invalid choice"], 2),
    (["node", "{missing}.toml"], ["cannot read"], 2),
    (["init", "{fresh}", "--node", "1=127.0.0.1", "--node", "3=127.0.0.3"], ["--node", "1..N"], 2),
    (["init", "{fresh}", "--node", "1"], ["--node", "ID=HOST"], 2),
    (["init", "{fresh}", "--node", "1=127.0.0.1", "--node", "2=no host"], ["host of node 2"], 2),
    (["init", "{fresh}", "--public-keys", "{base}"], ["--public-keys", "--node"], 2),
    (["init", "{fresh}", "--node", "1=127.0.0.1", "--public-keys", "{missing}"], ["node1.key", "public key"], 2),
    (["keygen", "{fresh}", "--node", "0"], ["--node", ">= 1"], 2),
    (["node"], ["FILE", "--join"], 2),
    (["node", "--join", "{missing}.json"], ["not a join bundle"], 2),
    (["member", "promote", "x", "--cluster", "{base}"], ["ID"], 2),
    (["group", "move", "1", "--to", "a,b", "--cluster", "{base}"], ["3,4,5"], 2),
    (["frob"], ["invalid choice"], 2),
    ([], ["required"], 2),
]


def test_every_bad_invocation_is_one_line_on_stderr_and_a_nonzero_exit(stopped_cluster):
    good, bad, base = stopped_cluster
    names = {"good": good, "bad": bad, "base": base, "missing": base / "missing", "fresh": base / "fresh"}
    procs = []
    for argv, contains, code in BAD_INVOCATIONS:
        args = [a.format(**names) for a in argv]
        proc = subprocess.Popen([sys.executable, "-m", "paxos_core", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=cli_env(), text=True)
        procs.append((args, contains, code, proc))
    for args, contains, code, proc in procs:
        out, err = proc.communicate(timeout=120)
        result = subprocess.CompletedProcess(args, proc.returncode, out, err)
        try:
            assert_one_line_error(result, contains=contains, code=code)
        except AssertionError as exc:
            raise AssertionError("paxos-core %s: %s" % (" ".join(a[:40] for a in args), exc)) from None
    assert not (base / "fresh").exists()


def test_debug_shows_the_traceback_of_an_expected_error(stopped_cluster):
    _, _, base = stopped_cluster
    argv = ["kv", "--cluster", base / "missing", "get", "k"]
    plain = cli(*argv)
    assert_one_line_error(plain, contains=["not a directory"], code=2)
    for result in (cli("--debug", *argv), cli(*argv, env=cli_env(PAXOS_CORE_DEBUG="1"))):
        assert result.returncode != 0
        assert "Traceback" in result.stderr and "ConfigError" in result.stderr


# ---------------------------------------------------------------------------------------------- 3: --help


def _subcommands(parser, path=()):
    """(path, parser) of the parser and of every subcommand under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, path + (name,))


def _help_blocks(text):
    """{option string: its help text} from a --help output."""
    blocks = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("  -"):
            head = stripped.split("  ")[0]
            current = [w.strip(",") for w in head.split() if w.startswith("-")]
            for flag in current:
                blocks[flag] = stripped
        elif current and line.startswith("      ") and stripped:
            for flag in current:
                blocks[flag] += " " + stripped
        else:
            current = None
    return blocks


def test_every_help_shows_the_default_of_every_option_that_has_one():
    checked = 0
    for path, parser in _subcommands(build_parser()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            main(list(path) + ["--help"])
        assert exit_info.value.code == 0
        blocks = _help_blocks(out.getvalue())
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            default = getattr(action, "shown_default", action.default)
            if default is None or default is argparse.SUPPRESS:
                continue
            flag = action.option_strings[-1]
            assert flag in blocks, (path, flag, out.getvalue())
            assert "default" in blocks[flag], "paxos-core %s --help: %s does not show its default %r: %r" % (
                " ".join(path), flag, default, blocks[flag])
            checked += 1
    assert checked > 40           # every command's options, not a few


def _help_of(*path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(list(path) + ["--help"])
    return " ".join(out.getvalue().split())


def test_keygen_says_where_the_public_key_goes_with_and_without_node(tmp_path, capsys):
    assert main(["keygen", str(tmp_path / "joining")]) == 0
    joining = capsys.readouterr().out
    assert "member add --key-file" in joining and "--public-keys" not in joining, joining
    assert main(["keygen", str(tmp_path / "seed"), "--node", "2"]) == 0
    seed = capsys.readouterr().out
    assert "--public-keys" in seed and "member add" not in seed, seed


def test_help_texts_state_the_limits_and_fault_kinds_the_code_has():
    from paxos_core.config import DEFAULTS
    from paxos_core.nemesis.faults import FAULT_KINDS

    for action in ("add", "move", "remove"):
        text = _help_of("group", action)
        assert "limits.max_group_id" in text and "%d" % DEFAULTS["limits"]["max_group_id"] in text, text
        assert "4294967293" not in text, text
    text = _help_of("kv", "put")
    assert "paxos.max_value_bytes" in text and "1 MiB" in text and "10 MB" not in text, text
    listed = _help_of("nemesis").split("comma list of ", 1)[1].split("; or all", 1)[0]
    assert tuple(k.strip() for k in listed.split(",")) == FAULT_KINDS, listed


# ---------------------------------------------------------------------------------------------- 6: progress


def test_progress_off_a_terminal_has_no_escape_codes_or_carriage_returns(tmp_path):
    sim = cli("sim", "--seeds", 20, "--progress", "--jobs", 1, "--faults", "none", text=False)
    assert sim.returncode == 0, sim.stderr
    bench = cli("bench", "--groups", 1, "--workers", 1, "--clients", 1, "--concurrency", 4, "--duration", 0.5,
                "--warmup", 0, "--dir", tmp_path, text=False, timeout=300)
    assert bench.returncode == 0, bench.stderr[-3000:]
    for result in (bench, sim):
        output = result.stdout + result.stderr
        assert b"\x1b[" not in output and b"\r" not in output, output[-2000:]
    for result, done in ((bench, b"1/1 points"), (sim, b"20/20 seeds")):
        assert done in result.stderr, result.stderr           # progress is still there, as plain lines
    assert json.loads(bench.stdout.splitlines()[-1])["ops_per_sec"] > 0


def test_progress_on_a_terminal_is_a_bar():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "paxos_core", "sim", "--seeds", "4", "--progress", "--jobs", "1",
                             "--faults", "none"], stdout=subprocess.PIPE, stderr=follower,
                            stdin=subprocess.DEVNULL, env=cli_env())
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:           # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert b"\r" in shown and b"4/4" in shown, shown           # redrawn in place
    assert out.startswith(b"seeds=4 violations=0")           # stdout stays clean


# ---------------------------------------------------------------------------------------------- on a cluster


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A real 3-node cluster with the default limits."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", cli_env()["PYTHONPATH"])       # the nodes run this paxos_core too
        cluster = LocalCluster(tmp_path_factory.mktemp("clicluster"), nodes=3, workers=1, groups=4)
        try:
            yield cluster
        finally:
            cluster.close()


def largest_value(cfg, key):
    """The most value bytes a put of `key` may carry: the proposal (client envelope + encoded put) is at most
    paxos.max_value_bytes."""
    overhead = len(envelope.client(0, 0, 0, ops.encode_put(key, b"")))
    return cfg.max_value_bytes - overhead


def test_the_largest_value_round_trips_byte_exact_and_10mb_is_refused_in_one_line(running, tmp_path):
    """10 MB is above the default paxos.max_value_bytes (1 MiB), which stays: the largest value allowed goes
    through a real cluster byte-exact, from a file and from stdin, and a 10 MB one is refused in one line."""
    d = running.dir
    cfg = running.config()
    assert cfg.max_value_bytes == 1 << 20 < TEN_MB
    size = largest_value(cfg, BIG_KEY)
    value = os.urandom(size)
    src = tmp_path / "value.bin"
    src.write_bytes(value)
    put = cli("kv", "put", BIG_KEY.decode(), "@%s" % src, "--cluster", d, "--timeout", 60)
    assert put.returncode == 0 and put.stdout.strip() == "OK", put.stderr
    dst = tmp_path / "out.bin"
    get = cli("kv", "get", BIG_KEY.decode(), "-o", dst, "--cluster", d, "--timeout", 60)
    assert get.returncode == 0 and get.stdout == "", get.stderr
    assert dst.read_bytes() == value
    # stdin in, exact bytes out on stdout (-o -)
    other = bytes(reversed(value))
    put = cli("kv", "put", BIG_KEY.decode(), "-", "--cluster", d, "--timeout", 60, stdin=other)
    assert put.returncode == 0, put.stderr
    get = cli("kv", "get", BIG_KEY.decode(), "-o", "-", "--mode", "linearizable", "--cluster", d, "--timeout", 60,
              text=False)
    assert get.returncode == 0, get.stderr
    assert get.stdout == other
    # one byte more, and 10 MB: refused in one line, and nothing changed
    for too_big in (size + 1, TEN_MB):
        src.write_bytes(os.urandom(too_big))
        refused = cli("kv", "put", BIG_KEY.decode(), "@%s" % src, "--cluster", d)
        assert_one_line_error(refused, contains=["ValueTooLarge", "paxos.max_value_bytes = %d" % (1 << 20)],
                              code=3)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(TEN_MB))
    with open(big, "rb") as f:
        refused = subprocess.run([sys.executable, "-m", "paxos_core", "kv", "put", "k10", "-", "--cluster", d],
                                 stdin=f, capture_output=True, env=cli_env(), timeout=120)
    assert_one_line_error(refused, contains=["ValueTooLarge"], code=3)
    assert cli("kv", "get", BIG_KEY.decode(), "-o", dst, "--cluster", d, "--timeout", 60).returncode == 0
    assert dst.read_bytes() == other


def test_values_that_start_with_at_and_every_cas_form(running):
    d = running.dir
    assert cli("kv", "put", "mail", "@@home", "--cluster", d).returncode == 0
    assert cli("kv", "get", "mail", "--cluster", d).stdout == "@home\n"
    cas = cli("kv", "cas", "mail", "@@work", "x", "--cluster", d)
    assert_one_line_error(cas, contains=["cas failed", "current value is @home"], code=1)
    assert cli("kv", "cas", "mail", "@@home", "@@work", "--cluster", d).stdout == "OK\n"
    assert cli("kv", "cas", "fresh", "--absent", "new", "--cluster", d).stdout == "OK\n"
    assert_one_line_error(cli("kv", "cas", "fresh", "--absent", "again", "--cluster", d), code=1)
    assert cli("kv", "cas", "fresh", "new", "--delete", "--cluster", d).stdout == "OK\n"
    assert_one_line_error(cli("kv", "get", "fresh", "--cluster", d), contains=["not found"], code=1)
    assert_one_line_error(cli("kv", "delete", "fresh", "--cluster", d), contains=["not found"], code=1)
    # the form before subcommands had their own options still works: options before the operation
    assert cli("kv", "--cluster", d, "--timeout", 10, "get", "mail", "--mode", "stale").returncode == 0


def test_the_cluster_from_the_environment_and_the_flag_wins(running, tmp_path):
    d = running.dir
    from_env = cli("kv", "put", "envkey", "v1", env=cli_env(PAXOS_CORE_CLUSTER=str(d)))
    assert from_env.returncode == 0, from_env.stderr
    flag_wins = cli("kv", "get", "envkey", "--cluster", d, env=cli_env(PAXOS_CORE_CLUSTER=str(tmp_path / "no")))
    assert flag_wins.returncode == 0 and flag_wins.stdout == "v1\n", flag_wins.stderr
    wrong_flag = cli("kv", "get", "envkey", "--cluster", tmp_path / "no", env=cli_env(PAXOS_CORE_CLUSTER=str(d)))
    line = assert_one_line_error(wrong_flag, contains=["not a directory"], code=2)
    assert "PAXOS_CORE_CLUSTER" not in line
    wrong_env = cli("kv", "get", "envkey", env=cli_env(PAXOS_CORE_CLUSTER=str(tmp_path / "no")))
    assert_one_line_error(wrong_env, contains=["not a directory", "$PAXOS_CORE_CLUSTER"], code=2)
    status = cli("status", env=cli_env(PAXOS_CORE_CLUSTER=str(d)))
    assert status.returncode == 0 and "unreachable" not in status.stdout, status.stdout + status.stderr


def test_json_output_of_kv_and_status(running):
    d = running.dir

    def kv_json(*args, code=0):
        r = cli("kv", *args, "--cluster", d, "-w", "json")
        assert r.returncode == code and r.stderr == "", (args, r.returncode, r.stderr)
        lines = r.stdout.splitlines()
        assert len(lines) == 1, r.stdout
        return json.loads(lines[0])

    assert kv_json("put", "jk", "héllo") == {"op": "put", "key": "jk", "key_encoding": "utf-8", "status": "OK",
                                              "ok": True}
    got = kv_json("get", "jk")
    assert (got["found"], got["value"], got["encoding"], got["size"]) == (True, "héllo", "utf-8", 6)
    binary = b"\xff\x00\xfe"
    put = cli("kv", "put", "jb", "-", "--cluster", d, "-w", "json", stdin=binary)
    assert put.returncode == 0 and json.loads(put.stdout)["status"] == "OK"
    got = kv_json("get", "jb")
    assert got["encoding"] == "base64" and base64.b64decode(got["value"]) == binary
    missing = kv_json("get", "nope", code=1)
    assert (missing["found"], missing["value"]) == (False, None)
    failed = kv_json("cas", "jk", "other", "x", code=1)
    assert (failed["status"], failed["ok"], failed["current"]) == ("CAS_FAILED", False, "héllo")
    assert kv_json("delete", "jk")["found"] is True
    assert kv_json("delete", "jk", code=1)["status"] == "NOT_FOUND"

    for argv in (["status", "-w", "json"], ["status", "--json"]):
        r = cli(*argv, "--cluster", d)
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)                 # ONE JSON document
        assert sorted((row["node"], row["worker"]) for row in rows) == [(1, 0), (2, 0), (3, 0)]
        assert all("error" not in row and "group_detail" in row for row in rows)


def test_a_write_of_unknown_outcome_exits_4_and_its_request_id_asks_again(running, stopped_cluster):
    """Exit 4 (not 3) when a write's outcome is unknown, with the request id that `--request-id` takes back: a
    retry of a write that landed answers its result and applies nothing more; one that never landed stays
    unknown (exit 4 again) and is never applied."""
    good = stopped_cluster[0]
    r = cli("kv", "--cluster", good, "--timeout", "0.5", "-w", "json", "put", "k", "v")
    assert r.returncode == 4 and "outcome is unknown" in r.stderr
    record = json.loads(r.stdout)
    assert (record["status"], record["ok"]) == ("UNKNOWN", None)
    client_id, seq = map(int, record["request_id"].split(":"))
    assert seq == 1 and "--request-id %d:1" % client_id in r.stderr

    d = running.dir
    client = running.client()
    try:
        landed = (0x5EED5, 1)
        key = b"retried"
        client.propose(key_group(key, 4), ops.encode_put(key, b"first"), request_id=landed, retry=False)
        again = cli("kv", "put", key.decode(), "first", "--cluster", d, "--request-id", "%d:%d" % landed)
        assert (again.returncode, again.stdout.strip()) == (0, "OK"), again.stderr
        # The same id with another value: the remembered result of the write that landed, nothing applied.
        other = cli("kv", "put", key.decode(), "second", "--cluster", d, "--request-id", "%d:%d" % landed)
        assert other.returncode == 0, other.stderr
        assert cli("kv", "get", key.decode(), "--cluster", d, "--mode", "linearizable").stdout == "first\n"
        never = cli("kv", "put", "never", "x", "--cluster", d, "--request-id", "%d:1" % (landed[0] + 2))
        assert never.returncode == 4 and "SessionExpired" in never.stderr, never.stderr
        assert cli("kv", "get", "never", "--cluster", d, "--mode", "linearizable").returncode == 1
    finally:
        client.close()


def _key_in(group, groups):
    for i in range(10000):
        key = "g%d-%d" % (group, i)
        if key_group(key.encode(), groups) == group:
            return key
    raise AssertionError("no key for group %d" % group)


def test_group_remove_asks_for_yes_refuses_an_unknown_group_and_says_what_it_deletes(running):
    d = running.dir
    group = 2
    key = _key_in(group, running.groups)
    assert cli("kv", "put", key, "precious", "--cluster", d).returncode == 0

    refused = cli("group", "remove", group, "--cluster", d)
    line = assert_one_line_error(refused, contains=["--yes", "every node", "deletes its data"], code=2)
    assert "group %d" % group in line
    assert cli("kv", "get", key, "--cluster", d).stdout == "precious\n"         # nothing was removed

    unknown = cli("group", "remove", 999, "--yes", "--cluster", d)
    assert_one_line_error(unknown, contains=["group 999 does not exist on any node"], code=1)

    removed = cli("group", "remove", group, "--yes", "--cluster", d, "--timeout", 20)
    assert removed.returncode == 0, removed.stderr
    assert "removed on every node" in removed.stdout
    client = running.client()
    assert all(not client.group_info(group, n)["hosted"] for n in running.node_ids)
    gone = cli("kv", "get", key, "--cluster", d, "--timeout", 10)
    assert_one_line_error(gone, contains=["group %d is not known to any node" % group], code=3)
    again = cli("group", "remove", group, "--yes", "--cluster", d)
    assert_one_line_error(again, contains=["does not exist"], code=1)

    added = cli("group", "add", group, "--cluster", d, "--timeout", 20)
    assert added.returncode == 0 and "incarnation 2" in added.stdout, added.stdout + added.stderr
    assert cli("group", "add", group, "--cluster", d).stdout.startswith("group %d already exists" % group)
    # the new incarnation starts empty: the acknowledged value went with the removal
    assert_one_line_error(cli("kv", "get", key, "--cluster", d, "--timeout", 20), contains=["not found"], code=1)
    assert cli("kv", "put", key, "v2", "--cluster", d, "--timeout", 20).returncode == 0
    assert cli("kv", "get", key, "--cluster", d).stdout == "v2\n"
