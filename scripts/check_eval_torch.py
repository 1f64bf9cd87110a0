#!/usr/bin/env python3
"""Independent check of `mnemo eval`: score token ids with a PyTorch Llama built from a checkpoint.

  python3 scripts/check_eval_torch.py --checkpoint DIR --ids IDS.json --seq N

Reads DIR/config.json (HF keys, model_type "llama") and DIR/model.safetensors into the eager
PyTorch LlamaForCausalLM of bench/peer/llama_model.py (lm_head tied to embed_tokens when
tie_word_embeddings), cuts the ids (a JSON array of ints, as `mnemo tokenize` writes) into
consecutive non-overlapping windows of N, scores each window on its own (token i predicted
from tokens < i of the same window) and prints one JSON line
  {"loss_nats_per_token": mean over predicted tokens, "tokens": number of predicted tokens}
where tokens = sum over windows of (len - 1); a final shorter window counts if it has >= 2 ids.
That is the rule `mnemo eval` follows, so the two must agree (within 1e-3).

The safetensors file is parsed by hand (no safetensors package): an 8-byte little-endian
header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, optional
"__metadata__"}, then the raw little-endian data; F32 and BF16 (and F16) tensors are read.
Errors (missing file, truncated data, wrong shape) exit with status 2 and a one-line message.

  python3 scripts/check_eval_torch.py --self-test
writes random-weight checkpoints (F32 and BF16, tied and untied, GQA) to a temporary folder with
a hand-written safetensors serialiser, and checks the window rule's token count, a loss near
ln(vocab) for small random weights, and F32/BF16 agreement.
"""
import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peer"))
from peer_env import reexec_for_peer  # noqa: E402


def fail(message):
    print(f"check_eval_torch: {message}", file=sys.stderr)
    sys.exit(2)


def read_safetensors(path, torch):
    """{name: float32 tensor} from a safetensors file."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    if len(blob) < 8:
        fail(f"{path}: truncated (no header length)")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        fail(f"{path}: header length {header_len} exceeds the file size {len(blob)}")
    try:
        header = json.loads(blob[8:8 + header_len])
    except ValueError as e:
        fail(f"{path}: header is not JSON: {e}")
    data = memoryview(blob)[8 + header_len:]
    sizes = {"F32": 4, "BF16": 2, "F16": 2}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in sizes:
            fail(f"{path}: tensor {name} has unsupported dtype {dtype}")
        count = 1
        for s in shape:
            count *= s
        if end - begin != count * sizes[dtype] or end > len(data) or begin < 0:
            fail(f"{path}: tensor {name} ({dtype} {shape}) has data_offsets [{begin}, {end}] "
                 f"that do not fit {count} elements in {len(data)} data bytes")
        raw = bytes(data[begin:end])
        if dtype == "F32":
            t = torch.frombuffer(bytearray(raw), dtype=torch.float32)
        elif dtype == "F16":
            t = torch.frombuffer(bytearray(raw), dtype=torch.float16).float()
        else:  # BF16: the high half of an f32
            u16 = torch.frombuffer(bytearray(raw), dtype=torch.int16).to(torch.int32) & 0xFFFF
            t = (u16 << 16).view(torch.float32)
        tensors[name] = t.reshape(shape).clone()
    return tensors


def write_safetensors(path, tensors, dtype, torch):
    """Serialises {name: tensor} by hand as F32 or BF16 (BF16 rounds to nearest even)."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().float().contiguous()
        if dtype == "F32":
            raw = t.numpy().tobytes()
        else:
            bits = t.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
            rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            raw = rounded.to(torch.int32).to(torch.int16).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the format recommends
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def self_test():
    """Round trips random checkpoints through this script's own command line."""
    import math
    import random
    import subprocess
    import tempfile

    import torch

    from llama_model import LlamaForCausalLM

    torch.manual_seed(0)
    rng = random.Random(0)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 97,
              "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
              "tie_word_embeddings": True, "torch_dtype": "float32"}
    ids = [rng.randrange(97) for _ in range(150)]  # windows of 64: 64, 64, 22 -> 63+63+21
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        ids_path = os.path.join(tmp, "ids.json")
        with open(ids_path, "w") as f:
            json.dump(ids, f)

        def score(name, cfg, dtype, seq=64):
            folder = os.path.join(tmp, name)
            os.makedirs(folder)
            model = LlamaForCausalLM(cfg)
            state = {k: v for k, v in model.state_dict().items()
                     if not (cfg["tie_word_embeddings"] and k == "lm_head.weight")}
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump(cfg, f)
            write_safetensors(os.path.join(folder, "model.safetensors"), state, dtype, torch)
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--checkpoint", folder,
                                  "--ids", ids_path, "--seq", str(seq)], capture_output=True, text=True)
            if out.returncode != 0:
                failures.append(f"{name}: exit {out.returncode}: {out.stderr.strip()}")
                return None, folder
            return json.loads(out.stdout), folder

        for name, tied, dtype in [("tied_f32", True, "F32"), ("untied_f32", False, "F32"),
                                  ("tied_bf16", True, "BF16")]:
            torch.manual_seed(1)
            cfg = dict(config, tie_word_embeddings=tied)
            result, _ = score(name, cfg, dtype)
            if result is None:
                continue
            print(f"self-test {name}: {json.dumps(result)}")
            if result["tokens"] != 63 + 63 + 21:
                failures.append(f"{name}: tokens {result['tokens']} != 147")
            if abs(result["loss_nats_per_token"] - math.log(97)) > 0.05:
                failures.append(f"{name}: loss {result['loss_nats_per_token']} not near ln(97)")
        # Same weights in F32 and BF16 agree to BF16 precision; a corrupt file exits 2.
        torch.manual_seed(2)
        big = dict(config)
        model = LlamaForCausalLM(big)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(10)  # logits far from uniform, so the loss depends on the weights
        for dtype in ("F32", "BF16"):
            folder = os.path.join(tmp, "scaled_" + dtype)
            os.makedirs(folder)
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump(big, f)
            write_safetensors(os.path.join(folder, "model.safetensors"),
                              {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                              dtype, torch)
        losses = []
        for dtype in ("F32", "BF16"):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--checkpoint",
                                  os.path.join(tmp, "scaled_" + dtype), "--ids", ids_path, "--seq", "64"],
                                 capture_output=True, text=True)
            losses.append(json.loads(out.stdout)["loss_nats_per_token"] if out.returncode == 0 else None)
        print(f"self-test scaled weights F32 vs BF16 loss: {losses}")
        with torch.no_grad():  # the direct forward of the same model, one window at a time
            direct = sum(torch.nn.functional.cross_entropy(
                model(torch.tensor([ids[s:s + 64]]))[0, :-1].double(), torch.tensor(ids[s + 1:s + 64]),
                reduction="sum").item() for s in range(0, len(ids), 64)) / 147
        if None in losses or abs(losses[0] - direct) > 1e-5 or abs(losses[1] - losses[0]) > 0.05 * losses[0]:
            failures.append(f"scaled: losses {losses} vs direct forward {direct}")
        truncated = os.path.join(tmp, "scaled_F32", "model.safetensors")
        with open(truncated, "r+b") as f:
            f.truncate(os.path.getsize(truncated) - 4)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--checkpoint",
                              os.path.dirname(truncated), "--ids", ids_path, "--seq", "64"],
                             capture_output=True, text=True)
        if out.returncode != 2:
            failures.append(f"truncated file: exit {out.returncode}, expected 2")
        print(f"self-test truncated file: exit {out.returncode}: {out.stderr.strip()}")
    if failures:
        print("self-test FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("self-test passed")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="directory with config.json and model.safetensors")
    p.add_argument("--ids", help="JSON array of token ids")
    p.add_argument("--seq", type=int, help="window length N")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--self-test", action="store_true", help="check this script on random checkpoints")
    args = p.parse_args()
    reexec_for_peer(args.threads)
    import torch
    import torch.nn.functional as F

    from llama_model import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    if args.self_test:
        return self_test()
    if not (args.checkpoint and args.ids and args.seq is not None):
        fail("--checkpoint, --ids and --seq are required")
    if args.seq < 2:
        fail(f"--seq must be >= 2, got {args.seq}")
    config_path = os.path.join(args.checkpoint, "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {config_path}: {e}")
    if config.get("model_type", "llama") != "llama":
        fail(f"{config_path}: model_type {config.get('model_type')!r} is not llama")
    try:
        model = LlamaForCausalLM(config)
    except (ValueError, KeyError) as e:
        fail(f"{config_path}: {e}")
    weights = read_safetensors(os.path.join(args.checkpoint, "model.safetensors"), torch)
    tied = model.config["tie_word_embeddings"]
    if tied:
        weights.pop("lm_head.weight", None)
    expected = {n: t.shape for n, t in model.state_dict().items() if not (tied and n == "lm_head.weight")}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        fail(f"model.safetensors: missing tensors {missing[:4]}, unexpected tensors {extra[:4]}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != tuple(shape):
            fail(f"model.safetensors: tensor {name} has shape {list(weights[name].shape)}, "
                 f"expected {list(shape)}")
    model.load_state_dict(weights, strict=not tied)  # strict=False: lm_head shares embed_tokens
    model.eval()

    try:
        with open(args.ids) as f:
            ids = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read ids {args.ids}: {e}")
    V = model.config["vocab_size"]
    if not isinstance(ids, list) or not all(isinstance(i, int) and 0 <= i < V for i in ids):
        fail(f"{args.ids}: expected a JSON array of token ids in [0, {V})")

    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids), args.seq):
            window = ids[start:start + args.seq]
            if len(window) < 2:
                continue
            x = torch.tensor(window, dtype=torch.int64).unsqueeze(0)  # (1, T)
            logits = model(x)[0].double()  # (T, V)
            loss = F.cross_entropy(logits[:-1], x[0, 1:], reduction="sum")
            total += loss.item()
            tokens += len(window) - 1
    if tokens == 0:
        fail(f"{args.ids}: fewer than 2 ids, nothing to score")
    print(json.dumps({"loss_nats_per_token": total / tokens, "tokens": tokens}))


if __name__ == "__main__":
    main()
