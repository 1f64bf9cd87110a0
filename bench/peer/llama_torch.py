#!/usr/bin/env python3
"""Training throughput of the eager PyTorch peer of `mnemo bench train`.

  python3 bench/peer/llama_torch.py --config configs/demo.json --batch 16 --seq 128 \
      --steps 20 --threads 2

Builds the Llama of the config's "model" section (HF keys; bench/peer/llama_model.py, the
demo model when --config is not given), then trains on uniform random token ids with AdamW
(lr, weight_decay and grad_clip from the "train" section) and prints one JSON line
  {"peer":"pytorch","tokens_per_s":...,"ms_per_step":...,"threads":...,...}
timed over --steps steps after --warmup steps. A step is what mnemo's is: forward,
cross-entropy of next-token targets over all B*T positions, backward, global-norm clipping,
AdamW, zeroing the gradients. tokens_per_s = B*T*steps / seconds.

The script first re-executes itself with OpenBLAS's OpenMP build on LD_LIBRARY_PATH and
OMP_NUM_THREADS set (bench/peer/peer_env.py): the fair peer. PyTorch is a benchmark peer
only, never a mnemo dependency.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_env import reexec_for_peer  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="mnemo config JSON (sections model and train)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the GPU peer of scripts/gpu-check.sh)")
    return p.parse_args()


def main():
    args = parse_args()
    reexec_for_peer(args.threads)
    import time

    import torch
    import torch.nn.functional as F

    from llama_model import LlamaForCausalLM

    model_cfg, train_cfg = {}, {}
    if args.config:
        try:
            with open(args.config) as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit(f"llama_torch: cannot read config {args.config}: {e}")
        model_cfg, train_cfg = cfg.get("model", {}), cfg.get("train", {})
    if args.batch < 1 or args.seq < 2 or args.steps < 1 or args.threads < 1:
        sys.exit("llama_torch: --batch, --steps, --threads must be >= 1 and --seq >= 2")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = LlamaForCausalLM(model_cfg).to(device)
    V = model.config["vocab_size"]
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.get("lr", 1e-3),
                            weight_decay=train_cfg.get("weight_decay", 0.0))
    clip = train_cfg.get("grad_clip", 0.0)
    ids = torch.randint(0, V, (args.batch, args.seq + 1)).to(device)
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        logits = model(inputs)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        loss.backward()
        if clip and clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # waits for the GPU: a step is timed to its end

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    total = sum(times)
    tokens = args.batch * args.seq
    print(json.dumps({
        "peer": "pytorch",
        "tokens_per_s": round(tokens * args.steps / total, 1),
        "ms_per_step": round(1e3 * total / args.steps, 3),
        "ms_per_step_median": round(1e3 * sorted(times)[len(times) // 2], 3),
        "threads": args.threads,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "loss": round(loss, 4),
        "device": args.device,
        "torch": torch.__version__,
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
    }))


if __name__ == "__main__":
    main()
