"""bench/spdk_bench.py without SPDK: arguments, the message without
--spdk-dir, and the ratio/summary math."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "spdk_bench.py"


def test_without_spdk_dir_says_how_to_build_one():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "--spdk-dir" in out.stderr
    assert "./configure --with-dpdk --without-crypto" in out.stderr
    assert "pci_dpdk.c" in out.stderr
    assert out.stdout == ""


def test_a_dir_that_is_no_spdk_tree_is_refused(sb, tmp_path, capsys):
    assert sb.main(["--spdk-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not an SPDK build tree" in err and str(tmp_path) in err


def test_defaults_keep_the_run_short(sb):
    args = sb.parse_args(["--spdk-dir", "/x"])
    assert (args.rounds, args.time, args.qd) == (3, 3, [1, 32])
    assert args.bdev == ["null", "malloc"]
    assert args.initiators == ["ours", "bdevperf"]
    # Memory: the target holds the bdev, hugepages cover both processes.
    assert args.spdk_mem_mb == args.size_mb + 256
    assert args.hugepages_mb == args.spdk_mem_mb + args.bdevperf_mem_mb + 256


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--time", "0.5"],
                                  ["--bdev", "uring"], ["--initiators", "fio"]])
def test_bad_arguments(sb, argv):
    with pytest.raises(SystemExit) as e:
        sb.parse_args(["--spdk-dir", "/x"] + argv)
    assert e.value.code == 2


def test_paired_ratios_skip_missing_rounds(sb):
    assert sb.paired_ratios([2, 3, None, 4], [1, 2, 5, 0]) == [2.0, 1.5]
    assert sb.paired_ratios([], []) == []


def test_spread_and_fmt(sb):
    assert sb.spread([3, 1, 2]) == (2, 1, 3)
    assert sb.spread([]) is None
    assert sb.fmt([1.234, 0.5, 2.0], 2) == "1.23 (0.50-2.00)"
    assert sb.fmt([]) == "-"


def test_busy_ns_per_io(sb):
    # 3e6 busy ticks at 3 GHz = 1 ms over 1000 I/Os = 1000 ns each.
    assert sb.busy_ns_per_io((1_000_000, 3e9), (4_000_000, 3e9), 1000) == \
        pytest.approx(1000)
    assert sb.busy_ns_per_io(None, (1, 1), 10) is None
    assert sb.busy_ns_per_io((0, 1), (1, 1), 0) is None


def test_goal_on_the_medians(sb):
    assert sb.goal([1.1, 0.9, 1.2], [0.7, 0.9, 0.5]) == "yes"
    assert sb.goal([0.9, 0.95, 1.2], [0.5, 0.5, 0.5]) == "no"   # IOPS
    assert sb.goal([1.1, 1.1], [0.79, 0.85]) == "no"             # busy 0.82
    assert sb.goal([1.0], [0.8]) == "yes"                         # bounds hold
    assert sb.goal([], [0.5]) == "?"


def test_bdevperf_p50_from_the_latency_summary(sb):
    out = """
 Latency summary
 =============================================
 Job: vu0 (Core Mask 0x2)
  1.00000% :     5.000us
 50.00000% :    12.345us
 99.00000% :    40.000us
 Latency summary
 50.00000% :     7.500us
"""
    assert sb.parse_bdevperf_p50(out) == 7.5
    assert sb.parse_bdevperf_p50("no summary") is None


def test_tables_pair_rounds(sb, capsys):
    points = [("null", "ours", 1)]
    run = lambda iops, busy: {"iops": iops, "p50": 1.0, "busy_ns_per_io": busy}  # noqa: E731
    samples = {("null", "ours", 1, "spdk"): [run(100, 200), run(200, 100)],
               ("null", "ours", 1, "ours"): [run(150, 100), run(200, 100)]}
    sb.print_tables(points, samples)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    cells = [c.strip() for c in last.strip("|").split("|")]
    assert cells[3:] == ["1.50 1.00", "1.25 (1.00-1.50)", "0.50 1.00",
                         "0.75 (0.50-1.00)", "yes"]


def test_tables_show_calls_and_features_of_our_initiator(sb, capsys):
    points = [("null", "ours", 32), ("null", "bdevperf", 32)]
    ours = lambda calls, feat: {"iops": 100, "p50": 1.0, "busy_ns_per_io": 100,  # noqa: E731
                                "calls_per_io": calls, "sleeps_per_io": calls / 2,
                                "features": feat}
    perf = {"iops": 100, "p50": 1.0, "busy_ns_per_io": 100}
    samples = {("null", "ours", 32, "spdk"): [ours(0.077, "0x150005446")] * 2,
               ("null", "ours", 32, "ours"): [ours(0.031, "0x170007446"),
                                              ours(0.037, "0x170007446")],
               ("null", "bdevperf", 32, "spdk"): [perf, perf],
               ("null", "bdevperf", 32, "ours"): [perf, perf]}
    sb.print_tables(points, samples)
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:4]): line
            for line in capsys.readouterr().out.splitlines() if line.startswith("| null")}
    assert rows[("null", "ours", "32", "spdk")].endswith(
        "| 0.077 (0.077-0.077) | 0.038 (0.038-0.038) | 0x150005446 |")
    assert rows[("null", "ours", "32", "ours")].endswith(
        "| 0.034 (0.031-0.037) | 0.017 (0.015-0.018) | 0x170007446 |")
    assert rows[("null", "bdevperf", "32", "ours")].endswith("| - | - | - |")

