#!/usr/bin/python3
"""PyTorch CPU baseline for the Go conv package's benchmark.

Times the same 3x3 "SAME" convolution as BenchmarkConv/N64_16x16_32to32_K3
in tensor/cpu/conv: batch 64, 16x16 pixels, 32 -> 32 channels, with bias,
forward and forward+backward (input, weight and bias gradients, driven by a
fixed random output gradient, as the Go benchmark does), on all CPU cores.

Run with Debian's interpreter, which sees python3-torch:

    /usr/bin/python3 reference/bench_conv_torch.py [--json] [--iters 50]

Flops are counted as in the Go benchmark: 2*N*H*W*K*K*Cin*Cout per pass;
forward+backward counts three passes (forward, backward-data,
backward-weights). Besides wall time it reports the process CPU time per
call (GFLOP/cpu-s), which with --threads 1 is comparable to the Go
benchmark's GFLOP/cpu-s on a machine shared with other work.
"""

import argparse
import json
import os
import statistics
import time

import torch


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--hw", type=int, default=16)
    ap.add_argument("--cin", type=int, default=32)
    ap.add_argument("--cout", type=int, default=32)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--iters", type=int, default=50, help="timed iterations per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return ap.parse_args()


def time_ms(fn, iters, warmup):
    """Median wall time and median process CPU time (all threads) of fn, in
    milliseconds, over iters single calls. On a shared machine the CPU time
    of a single-threaded run is the steadier measure of the work done."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # NCHW in PyTorch; the Go code is NHWC but the arithmetic is identical.
    x = torch.randn(args.n, args.cin, args.hw, args.hw, requires_grad=True)
    conv = torch.nn.Conv2d(args.cin, args.cout, args.k, padding=(args.k - 1) // 2, bias=True)
    dy = torch.randn(args.n, args.cout, args.hw, args.hw)

    def fwd():
        with torch.no_grad():
            conv(x)

    def fwd_bwd():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        y = conv(x)
        y.backward(dy)

    flops = 2.0 * args.n * args.hw * args.hw * args.k * args.k * args.cin * args.cout
    fwd_ms, fwd_cpu_ms = time_ms(fwd, args.iters, args.warmup)
    fwdbwd_ms, fwdbwd_cpu_ms = time_ms(fwd_bwd, args.iters, args.warmup)
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": {"N": args.n, "H": args.hw, "W": args.hw, "Cin": args.cin, "Cout": args.cout, "K": args.k},
        "fwd_ms": fwd_ms,
        "fwd_cpu_ms": fwd_cpu_ms,
        "fwd_gflops": flops / fwd_ms / 1e6,
        "fwdbwd_ms": fwdbwd_ms,
        "fwdbwd_cpu_ms": fwdbwd_cpu_ms,
        "fwdbwd_gflops": 3 * flops / fwdbwd_ms / 1e6,
        "fwdbwd_gflops_per_cpu_s": 3 * flops / fwdbwd_cpu_ms / 1e6,
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"torch {result['torch']}, {result['threads']} threads, oneDNN {result['mkldnn']}")
    print(f"conv {args.k}x{args.k} N={args.n} {args.hw}x{args.hw} {args.cin}->{args.cout}")
    print(f"forward          median {fwd_ms:8.3f} ms  {result['fwd_gflops']:7.1f} GFLOP/s  (CPU {fwd_cpu_ms:.3f} ms)")
    print(f"forward+backward median {fwdbwd_ms:8.3f} ms  {result['fwdbwd_gflops']:7.1f} GFLOP/s  (CPU {fwdbwd_cpu_ms:.3f} ms,"
          f" {result['fwdbwd_gflops_per_cpu_s']:.1f} GFLOP/cpu-s)")


if __name__ == "__main__":
    main()
