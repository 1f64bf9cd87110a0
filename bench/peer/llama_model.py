"""An eager PyTorch LlamaForCausalLM equivalent: the independent peer of mnemo's Llama.

Written from HF transformers' modeling_llama semantics (no transformers package needed, works
with Debian's torch 1.13):
  - RMSNorm: y = x * rsqrt(mean(x^2) + eps) * weight, computed in f32;
  - rotary embeddings, rotate-half convention: inv_freq[i] = theta^(-2i/D), angle =
    position * inv_freq, cos/sin of cat(angle, angle); q' = q*cos + rotate_half(q)*sin with
    rotate_half(x) = cat(-x[D/2:], x[:D/2]);
  - grouped-query attention: kv head h // (H / Hkv) serves query head h; causal softmax of
    q k^T / sqrt(D) in f32;
  - SwiGLU MLP: down(silu(gate(x)) * up(x)); no biases anywhere;
  - pre-norm blocks: x += attn(norm(x)); x += mlp(norm(x)); final norm; lm_head tied to
    embed_tokens when tie_word_embeddings.
Parameter names equal HF's (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight,
..., lm_head.weight), so an HF/mnemo safetensors state dict loads with load_state_dict.

Shapes: B batch, T sequence, C hidden, H heads, Hkv kv heads, D head dim, V vocab.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# The demo model (configs/demo.json "model"), used when no config file is given.
DEMO_MODEL = {
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 128,
    "tie_word_embeddings": True,
}


def model_config(config):
    """HF Llama keys with defaults filled in; config is a dict of HF keys."""
    c = dict(DEMO_MODEL)
    c.update({k: v for k, v in config.items() if k in DEMO_MODEL or k in ("model_type", "hidden_act")})
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    if c.get("hidden_act", "silu") != "silu":
        raise ValueError(f"llama_model: hidden_act {c['hidden_act']!r} is not supported (silu only)")
    if c["hidden_size"] % c["num_attention_heads"] or c["num_attention_heads"] % c["num_key_value_heads"]:
        raise ValueError("llama_model: hidden_size must divide by heads and heads by kv heads")
    return c


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):  # x (..., C)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):  # x (..., D)
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(T, D, theta, device, dtype):
    """cos, sin (T, D) for positions 0..T-1."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32, device=device) / D))
    angle = torch.outer(torch.arange(T, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat((angle, angle), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.H, self.Hkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.D = c["hidden_size"] // self.H
        C = c["hidden_size"]
        self.q_proj = nn.Linear(C, self.H * self.D, bias=False)
        self.k_proj = nn.Linear(C, self.Hkv * self.D, bias=False)
        self.v_proj = nn.Linear(C, self.Hkv * self.D, bias=False)
        self.o_proj = nn.Linear(self.H * self.D, C, bias=False)

    def forward(self, x, cos, sin, mask):  # x (B, T, C); cos, sin (T, D); mask (T, T) additive
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.Hkv != self.H:
            k = k.repeat_interleave(self.H // self.Hkv, dim=1)
            v = v.repeat_interleave(self.H // self.Hkv, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.D) + mask  # (B, H, T, T)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = (probs @ v).transpose(1, 2).reshape(B, T, self.H * self.D)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, I = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(C, I, bias=False)
        self.up_proj = nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = model_config(config)
        self.config = c
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        # HF init: normal(0, 0.02) for linear and embedding weights, ones for norms.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        if c["tie_word_embeddings"]:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids):  # ids (B, T) int64 -> logits (B, T, V)
        T = ids.shape[1]
        x = self.model.embed_tokens(ids)
        D = self.config["hidden_size"] // self.config["num_attention_heads"]
        cos, sin = rope_cos_sin(T, D, self.config["rope_theta"], x.device, x.dtype)
        mask = torch.full((T, T), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))
