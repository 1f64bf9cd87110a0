#!/usr/bin/env python3
"""PyTorch peer of bench/kernels.cpp: the same kernels, shapes and method, JSON lines.

  python3 bench/peer/kernels_torch.py [--max-seconds S] [--only NAME] [--smoke]

Times, on the same GPU as build/bench/kernels and with the same cases (same "name" and
"case" strings, "impl": "torch"):
  peak                 copy_gbps (1 GiB tensor copy_, bytes read + written), gemm_bf16_tflops
                       (torch.matmul 8192^3 in bf16)
  attention_fwd/_bwd   F.scaled_dot_product_attention restricted to the flash backend, bf16,
                       (B, H, T, d) with B*T = 16384, H*d = 2048, T in 512..8192, d in {64, 128},
                       causal and full; backward = torch.autograd.grad of the output
  rms_norm_fwd/_bwd    F.rms_norm (16384 x 4096), f32 and bf16
  cross_entropy_fwd/_bwd  F.cross_entropy(reduction="none") (16384 x 50257, i64 targets)
  scan_fwd/_bwd        h_t = a_t h_{t-1} + x_t along T of (8, 4096, 2048) as a cumulative
                       product in f32: P = cumprod(a), h = P * cumsum(x / P) (autograd for
                       the backward); a in [0.999, 1) so P stays normal over 4096 steps
  adamw                torch.optim.AdamW(fused=True).step() on one 100M-parameter f32 tensor
  summary              the same fractions of copy bandwidth as bench/kernels' summary

  python3 bench/peer/kernels_torch.py --merge MNEMO.jsonl [TORCH.jsonl]

prints one JSON object, the `kernels` object of scripts/gpu-check.sh's results.json, from the
lines of both runs (no torch needed; either run may have been cut short by a timeout):
  attn_fwd_vs_torch, attn_bwd_vs_torch  torch ms / mnemo ms at bf16 B4 H16 T4096 d128 causal
                       (> 1: mnemo is faster)
  rmsnorm_pct_bw, xent_pct_bw, scan_pct_bw  fractions of mnemo's measured copy bandwidth, of
                       the bf16 forward + backward together: (bytes_f + bytes_b) / (ms_f + ms_b)
  adamw_pct_bw         the same for one f32 AdamW step over 100M parameters
  attn_*_tflops, *_vs_torch of the other kernels, torch_* (the peer's own figures), copy_gbps,
  gemm_bf16_tflops, attention (per case: TFLOP/s fast, reference and torch, and the ratios),
  errors (a count), first_errors (up to 5 of them) and skipped (cases past a time budget)
FLOP and byte counts are bench/kernels.cpp's formulas. Method: CUDA events around each
call, one warm-up call per input set, inputs rotated over 3 sets (2 for cross-entropy and
AdamW), the median of as many calls as fit in about 0.25 s (5 to 30; 3 when one call takes
over 0.5 s). --smoke: tiny shapes on whatever device is there (checks this script without a
GPU; its numbers mean nothing). PyTorch is a benchmark peer only, never a mnemo dependency.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_env import reexec_for_peer  # noqa: E402

T0 = time.monotonic()


def emit(name, **fields):
    line = {"bench": "kernels", "name": name}
    for k, v in fields.items():
        if isinstance(v, float):
            v = float(f"{v:.4g}") if math.isfinite(v) else None
        line[k] = v
    print(json.dumps(line), flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-seconds", type=float, default=90,
                   help="start no new case after this many seconds")
    p.add_argument("--only", default="", help="only cases whose name starts with this")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, any device")
    return p.parse_args()


TARGET_ATTENTION = "bf16 B4 H16 T4096 d128 causal"


def merge(mnemo_path, torch_path):
    """The `kernels` object of results.json from the JSON lines of both runs."""
    def load(path):
        lines = []
        try:
            with open(path) as f:
                for text in f:
                    try:
                        lines.append(json.loads(text))
                    except ValueError:
                        pass  # a line cut short by a timeout
        except OSError:
            pass
        return lines

    mnemo, peer = load(mnemo_path), load(torch_path) if torch_path else []

    def index(lines):
        return {(l.get("name"), l.get("case"), l.get("impl")): l for l in lines if "ms" in l}

    m, t = index(mnemo), index(peer)

    def peak(lines, key):
        return next((l[key] for l in lines if l.get("name") == "peak" and key in l), None)

    def r(x, digits=4):
        return None if x is None else float(f"{x:.{digits}g}")

    def ratio(a, b):  # a / b, None if either is missing
        return r(a / b) if a and b else None

    def ms(table, name, case, impl):
        line = table.get((name, case, impl))
        return line["ms"] if line else None

    def tflops(table, name, case, impl):
        line = table.get((name, case, impl))
        return line.get("tflops") if line else None

    def bandwidth(table, lines, names, case, impl):
        """(bytes_f + bytes_b) / (ms_f + ms_b) / copy, and the total ms; None if any is missing."""
        parts = [table.get((name, case, impl)) for name in names]
        copy = peak(lines, "copy_gbps")
        if not copy or any(p is None for p in parts):
            return None, None
        total_ms = sum(p["ms"] for p in parts)
        return r(sum(p["bytes"] for p in parts) / (total_ms * 1e-3) / 1e9 / copy), total_ms

    out = {"copy_gbps": peak(mnemo, "copy_gbps"),
           "gemm_bf16_tflops": peak(mnemo, "gemm_bf16_tflops")}
    tc = TARGET_ATTENTION
    for d in ("fwd", "bwd"):
        name = f"attention_{d}"
        out[f"attn_{d}_vs_torch"] = ratio(ms(t, name, tc, "torch"), ms(m, name, tc, "fast"))
    cases = {"rmsnorm": ("rms_norm", "bf16 16384x4096"),
             "xent": ("cross_entropy", "bf16 16384x50257"),
             "scan": ("scan", "bf16 B8 T4096 C2048")}
    for key, (name, case) in cases.items():
        names = (f"{name}_fwd", f"{name}_bwd")
        out[f"{key}_pct_bw"], mnemo_ms = bandwidth(m, mnemo, names, case, "fast")
        out[f"torch_{key}_pct_bw"], torch_ms = bandwidth(t, peer, names, case, "torch")
        out[f"{key}_vs_torch"] = ratio(torch_ms, mnemo_ms)
    out["adamw_pct_bw"], mnemo_ms = bandwidth(m, mnemo, ("adamw",), "f32 n100000000", "fast")
    out["torch_adamw_pct_bw"], torch_ms = bandwidth(t, peer, ("adamw",), "f32 n100000000", "torch")
    out["adamw_vs_torch"] = ratio(torch_ms, mnemo_ms)
    for d in ("fwd", "bwd"):
        out[f"attn_{d}_tflops"] = tflops(m, f"attention_{d}", tc, "fast")
        out[f"torch_attn_{d}_tflops"] = tflops(t, f"attention_{d}", tc, "torch")
    attention = {}
    for (name, case, impl), line in sorted(m.items(), key=lambda kv: str(kv[0])):
        if name in ("attention_fwd", "attention_bwd"):
            d = name[-3:]
            entry = attention.setdefault(case, {})
            entry[f"{d}_tflops" if impl == "fast" else f"{d}_{impl}_tflops"] = line.get("tflops")
            if impl == "fast":
                entry[f"{d}_vs_torch"] = ratio(ms(t, name, case, "torch"), line["ms"])
                entry[f"{d}_torch_tflops"] = tflops(t, name, case, "torch")
    out["attention"] = attention
    problems = [l for l in mnemo + peer if "error" in l or "skipped" in l]
    errors = [f"{l.get('impl', 'mnemo')} {l['name']} {l.get('case', '')}: {l['error'][:200]}"
              for l in problems if "error" in l]
    out["errors"] = len(errors)
    out["first_errors"] = errors[:5]
    out["skipped"] = sum(1 for l in problems if "skipped" in l)
    return out


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--merge":
        print(json.dumps(merge(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)))
        return 0
    args = parse_args()
    reexec_for_peer()  # the interpreter that has torch (bench/peer/peer_env.py)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        emit("skipped", reason=f"no torch: {e}")
        return 0
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        emit("skipped", reason="torch sees no CUDA device")
        return 0
    dev = torch.device("cuda" if cuda else "cpu")
    small = args.smoke

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def time_calls(sets, fn):
        """Median ms of fn(i), i rotating over the input sets; (ms, reps)."""
        slow = False
        for i in range(sets):
            start = time.perf_counter()
            fn(i)
            sync()
            if time.perf_counter() - start > 0.5:
                slow = True
                break

        def timed(reps):
            if cuda:
                events = [(torch.cuda.Event(enable_timing=True),
                           torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
                for r, (a, b) in enumerate(events):
                    a.record()
                    fn(r % sets)
                    b.record()
                torch.cuda.synchronize()
                return sorted(a.elapsed_time(b) for a, b in events)
            out = []
            for r in range(reps):
                start = time.perf_counter()
                fn(r % sets)
                out.append((time.perf_counter() - start) * 1e3)
            return sorted(out)

        reps = 3 if slow else min(30, max(5, int(250 / max(timed(1)[0], 1e-3))))
        ms = timed(reps)
        return ms[reps // 2], reps  # the upper median for even counts, as bench/kernels.cpp does

    def run(name, case, measure, report):
        """One case: skipped when filtered or past the time budget; a throw is an error line."""
        if args.only and not name.startswith(args.only):
            return None
        if time.monotonic() - T0 > args.max_seconds:
            emit(name, impl="torch", case=case, skipped="time budget")
            return None
        try:
            ms, reps = measure()
        except Exception as e:  # noqa: BLE001 - any failure is reported, the run goes on
            emit(name, impl="torch", case=case, error=f"{type(e).__name__}: {e}")
            return None
        emit(name, impl="torch", case=case, ms=ms, **report(ms), reps=reps)
        return ms

    def wanted(group):  # --only NAME selects a group ("attention") or one name in it
        return not args.only or group.startswith(args.only) or args.only.startswith(group)

    def rand(shape, dtype, lo=-1.0, hi=1.0, grad=False):
        x = (torch.rand(shape, device=dev, dtype=torch.float32) * (hi - lo) + lo).to(dtype)
        return x.requires_grad_(grad)

    # ---- peaks ----
    n = (1 << 20) if small else (1 << 28)
    src, dst = rand((n,), torch.float32), torch.empty(n, device=dev)
    ms, _ = time_calls(1, lambda i: dst.copy_(src))
    copy_gbps = 2.0 * 4 * n / (ms * 1e-3) / 1e9
    del src, dst
    m = 256 if small else 8192
    mats = [(rand((m, m), torch.bfloat16), rand((m, m), torch.bfloat16)) for _ in range(2)]
    ms, _ = time_calls(2, lambda i: torch.matmul(*mats[i]))
    gemm_tflops = 2.0 * m ** 3 / (ms * 1e-3) / 1e12
    del mats
    emit("peak", impl="torch", copy_gbps=copy_gbps, gemm_bf16_tflops=gemm_tflops,
         device=torch.cuda.get_device_name() if cuda else "cpu", torch=torch.__version__)

    def flops_report(flops):
        return lambda ms: {"tflops": flops / (ms * 1e-3) / 1e12,
                           "pct_gemm": 100 * flops / (ms * 1e-3) / 1e12 / gemm_tflops}

    def bytes_report(nbytes):
        return lambda ms: {"gbps": nbytes / (ms * 1e-3) / 1e9,
                           "pct_copy": 100 * nbytes / (ms * 1e-3) / 1e9 / copy_gbps,
                           "bytes": float(nbytes)}

    summary = {}
    dtname = {torch.float32: "f32", torch.bfloat16: "bf16"}

    # ---- attention: SDPA on the flash backend only ----
    def flash_only():
        """A context that restricts SDPA to the flash backend (torch >= 2.0)."""
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
            return sdpa_kernel([SDPBackend.FLASH_ATTENTION])
        except ImportError:  # torch 2.0 - 2.2
            return torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False,
                                                  enable_mem_efficient=False)
    try:
        flash_only()
    except Exception:  # noqa: BLE001 - torch < 2.0: no SDPA; the attention cases report it
        flash_only = contextlib.nullcontext

    tokens, width, sets = (256, 128, 2) if small else (16384, 2048, 3)
    lengths = (64, 128) if small else (512, 1024, 2048, 4096, 8192)
    attention_shapes = [(T, d, causal)
                        for T in lengths for d in (64, 128) for causal in (False, True)]
    for T, d, causal in attention_shapes if wanted("attention") else []:
        B, H = tokens // T, width // d
        case = f"bf16 B{B} H{H} T{T} d{d} {'causal' if causal else 'full'}"
        fwd_flops = 4.0 * B * H * T * T * d / (2 if causal else 1)
        bwd_flops = 2.5 * fwd_flops
        target = T == 4096 and d == 128 and causal
        try:
            qkv = [[rand((B, H, T, d), torch.bfloat16, grad=True) for _ in range(3)]
                   for _ in range(sets)]
            dout = [rand((B, H, T, d), torch.bfloat16) for _ in range(sets)]
        except Exception as e:  # noqa: BLE001
            emit("attention_fwd", impl="torch", case=case, error=str(e))
            continue
        with flash_only():
            def fwd(i):
                with torch.no_grad():
                    F.scaled_dot_product_attention(*qkv[i], is_causal=causal)
            ms_f = run("attention_fwd", case, lambda: time_calls(sets, fwd),
                       flops_report(fwd_flops))
            outs = []

            def measure_bwd():
                for i in range(sets):
                    outs.append(F.scaled_dot_product_attention(*qkv[i], is_causal=causal))
                return time_calls(sets, lambda i: torch.autograd.grad(
                    outs[i], qkv[i], dout[i], retain_graph=True))
            ms_b = run("attention_bwd", case, measure_bwd, flops_report(bwd_flops))
        if target and ms_f:
            summary["attn_fwd_tflops"] = fwd_flops / (ms_f * 1e-3) / 1e12
        if target and ms_b:
            summary["attn_bwd_tflops"] = bwd_flops / (ms_b * 1e-3) / 1e12
        del qkv, dout, outs

    # ---- bandwidth-bound kernels (bytes: bench/kernels.cpp's bytes_* formulas) ----
    totals = {}  # summary key -> [bytes, ms, parts] of the bf16 forward + backward

    def bandwidth(name, case, key, nbytes, sets, fn):
        ms = run(name, case, lambda: time_calls(sets, fn), bytes_report(nbytes))
        if ms and key:
            t = totals.setdefault(key, [0.0, 0.0, 0])
            t[0] += nbytes
            t[1] += ms
            t[2] += 1

    def rms_norm(x, w, eps=1e-5):
        if hasattr(F, "rms_norm"):
            return F.rms_norm(x, (x.shape[-1],), w, eps)
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(x.dtype) * w

    N, C = (64, 512) if small else (16384, 4096)
    for dt in (torch.float32, torch.bfloat16) if wanted("rms_norm") else ():
        s, key = torch.finfo(dt).bits // 8, ("rmsnorm" if dt == torch.bfloat16 else None)
        case = f"{dtname[dt]} {N}x{C}"
        xs = [rand((N, C), dt, grad=True) for _ in range(3)]
        ws = [rand((C,), dt, grad=True) for _ in range(3)]
        dys = [rand((N, C), dt) for _ in range(3)]

        def fwd(i):
            with torch.no_grad():
                rms_norm(xs[i], ws[i])
        bandwidth("rms_norm_fwd", case, key, 2 * N * C * s + C * s + 4 * N, 3, fwd)
        ys = [rms_norm(xs[i], ws[i]) for i in range(3)]
        bandwidth("rms_norm_bwd", case, key, 3 * N * C * s + 2 * C * s + 4 * N, 3,
                  lambda i: torch.autograd.grad(ys[i], (xs[i], ws[i]), dys[i], retain_graph=True))
        del xs, ws, dys, ys

    N, C = (64, 1000) if small else (16384, 50257)
    for dt in (torch.float32, torch.bfloat16) if wanted("cross_entropy") else ():
        s, key = torch.finfo(dt).bits // 8, ("xent" if dt == torch.bfloat16 else None)
        case = f"{dtname[dt]} {N}x{C}"
        logits = [rand((N, C), dt, -4, 4, grad=True) for _ in range(2)]
        targets = [torch.randint(0, C, (N,), device=dev) for _ in range(2)]
        dloss = [rand((N,), dt, 0, 1) for _ in range(2)]

        def fwd(i):
            with torch.no_grad():
                F.cross_entropy(logits[i], targets[i], reduction="none")
        bandwidth("cross_entropy_fwd", case, key, N * C * s + N * (8 + s + 4), 2, fwd)
        losses = [F.cross_entropy(logits[i], targets[i], reduction="none") for i in range(2)]
        bandwidth("cross_entropy_bwd", case, key, 2 * N * C * s + N * (8 + s + 4), 2,
                  lambda i: torch.autograd.grad(losses[i], logits[i], dloss[i], retain_graph=True))
        del logits, targets, dloss, losses
        if cuda:
            torch.cuda.empty_cache()

    def scan(a, x):  # h_t = a_t h_{t-1} + x_t along dim 1, in f32
        af, xf = a.float(), x.float()
        P = torch.cumprod(af, dim=1)
        return (P * torch.cumsum(xf / P, dim=1)).to(x.dtype)

    B, T, C = (2, 64, 32) if small else (8, 4096, 2048)
    for dt in (torch.float32, torch.bfloat16) if wanted("scan") else ():
        s, n, key = torch.finfo(dt).bits // 8, B * T * C, ("scan" if dt == torch.bfloat16 else None)
        case = f"{dtname[dt]} B{B} T{T} C{C}"
        a = [rand((B, T, C), dt, 0.999, 1.0, grad=True) for _ in range(3)]
        x = [rand((B, T, C), dt, grad=True) for _ in range(3)]
        dh = [rand((B, T, C), dt) for _ in range(3)]

        def fwd(i):
            with torch.no_grad():
                scan(a[i], x[i])
        bandwidth("scan_fwd", case, key, 3 * n * s, 3, fwd)
        hs = [scan(a[i], x[i]) for i in range(3)]
        bandwidth("scan_bwd", case, key, 5 * n * s, 3,
                  lambda i: torch.autograd.grad(hs[i], (a[i], x[i]), dh[i], retain_graph=True))
        del a, x, dh, hs

    # AdamW: f32 only (fused AdamW keeps bf16 parameters' moments in bf16, not f32 as mnemo).
    n = 1_000_000 if small else 100_000_000
    if wanted("adamw"):
        try:
            params, opts = [], []
            for _ in range(2):
                p = torch.nn.Parameter(rand((n,), torch.float32))
                p.grad = rand((n,), torch.float32)
                params.append(p)
                opts.append(torch.optim.AdamW([p], lr=1e-3, weight_decay=0.1, fused=cuda))
            ms = run("adamw", f"f32 n{n}", lambda: time_calls(2, lambda i: opts[i].step()),
                     bytes_report(n * (3 * 4 + 16)))
            if ms:
                summary["adamw_pct_bw"] = n * 28 / (ms * 1e-3) / 1e9 / copy_gbps
            del params, opts
        except Exception as e:  # noqa: BLE001
            emit("adamw", impl="torch", case=f"f32 n{n}", error=str(e))

    for key, (nbytes, ms, parts) in totals.items():
        if parts == 2:
            summary[f"{key}_pct_bw"] = nbytes / (ms * 1e-3) / 1e9 / copy_gbps
    emit("summary", impl="torch", copy_gbps=copy_gbps, gemm_bf16_tflops=gemm_tflops,
         **{k: float(v) for k, v in summary.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
