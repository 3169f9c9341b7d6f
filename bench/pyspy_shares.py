#!/usr/bin/env python3
"""Where an agent's start went: shares of a py-spy raw profile by phase.

Reads ``py-spy record --threads --idle --format raw`` output of an agent
process (bench/agent_rpc_scale.py --restart-prefix records one for the
restart) and prints a markdown table: the samples of the threads that do
the start's work (the main thread, the RPC worker), by phase.  A sample
counts in the first phase whose frame it contains, so the shares add up.

    python bench/pyspy_shares.py restart.raw
"""

import argparse
import collections
import sys

# (phase, frame substring), first match wins; frames are "func (file:line)".
PHASES = (
    ("imports", "_find_and_load"),
    ("replay: engine calls (engine.py and the C engine)", "Engine."),
    ("replay: the agent's Python (decode, handlers, record)", "_replay ("),
    ("engine start", "_start_engine"),
    ("state file read and the compaction after the replay", "load_file"),
    ("state file read and the compaction after the replay", "AgentState.save"),
    ("first answer: vhost_get_controllers, JSON, socket", "RpcServer"),
    ("first answer: vhost_get_controllers, JSON, socket", "Dispatcher."),
    ("event loop waiting (epoll)", "EpollSelector.select"),
)
WORK_THREADS = ("MainThread", "rpc-engine")


def shares(path):
    counts = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip()
            if not line:
                continue
            stack, n = line.rsplit(" ", 1)
            frames = stack.split(";")
            if not any(t in frames[0] for t in WORK_THREADS):
                continue
            n = int(n)
            total += n
            for phase, needle in PHASES:
                if any(needle in fr for fr in frames):
                    counts[phase] += n
                    break
            else:
                counts["other (interpreter start, options, logging set-up...)"] += n
    return counts, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", help="py-spy --format raw output")
    args = parser.parse_args()
    counts, total = shares(args.raw)
    print("| where (main thread and RPC worker, %d samples) | share |" % total)
    print("|---|---|")
    for phase, n in counts.most_common():
        print("| %s | %.1f%% |" % (phase, 100.0 * n / max(total, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
