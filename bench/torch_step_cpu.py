#!/usr/bin/env python
"""Run the shared PyTorch peer (reference/tools/claire_step_bench.py) unchanged and add the
CPU time per step to its JSON line.

The peer times its training loop with time.perf_counter (wall clock). This wrapper loads it
as a module and hands it a `time` whose perf_counter also records the process CPU time at
each call: the first two calls bracket the timed steps, so their CPU difference / steps is
the CPU time per step (all threads), which on a shared machine does not count the time other
processes hold the cores.

usage: torchpy bench/torch_step_cpu.py PEER.py [peer args...]
prints: the peer's JSON line with "cpu_sec_per_step" added
"""
import importlib.util
import json
import sys
import time
import types

calls = []


def perf_counter():
    calls.append(time.process_time())
    return time.perf_counter()


def main():
    peer, args = sys.argv[1], sys.argv[2:]
    spec = importlib.util.spec_from_file_location("peer", peer)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.time = types.SimpleNamespace(perf_counter=perf_counter)
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 200
    out = sys.stdout
    captured = []
    sys.stdout = types.SimpleNamespace(write=captured.append, flush=lambda: None)
    sys.argv = [peer] + args
    try:
        mod.main()
    finally:
        sys.stdout = out
    res = json.loads("".join(captured).strip().splitlines()[-1])
    res["cpu_sec_per_step"] = round((calls[1] - calls[0]) / steps, 5)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
