// MemorizingLM: the Memorizing Transformer (Wu et al., ICLR 2022) as a SegmentLM.
//
// A Llama-style decoder (HF parameter names: model.embed_tokens, model.layers.{i}.*,
// model.norm, lm_head) reading a stream in segments of T <= segment_length tokens:
//   ids (B, T) -> embed -> L pre-norm blocks with RoPE -> norm -> lm_head -> logits (B, T, V)
// where block `memory_layer` is a MemorizingBlock (memorizing_attention.h): its attention also
// reads the top_k entries of a kNN memory of earlier segments (capacity N per stream and kv
// head, FIFO), combined with local attention by a learned per-head gate (or a joint softmax).
// After each segment that layer's (k, v) (before RoPE) are appended to the memory.
//
// The memory layer's local attention uses RoPE ("rope", the default, as the paper) or no
// rotation and a learned ALiBi-like distance bias ("alibi", memorizing_attention.h), so that
// its q . k is the memory's score.
// Documents (SegmentLM::document_end_id = E >= 0): the memory never outlives its document.
// In a segment, a query after an E reads no memory (KnnAttention's memory_visible); after
// the segment a stream that saw an E keeps, in the kNN memory and the XL caches, only the
// entries of the tokens after its last E (the FIFO's count is cut: the newest entries are the
// segment's last tokens). The local window and the XL cache inside the boundary segment still
// see the tokens before E, as a plain LM's window does.
// XL cache: the layers in xl_layers also attend to the keys/values of the previous
// segment_length tokens of their stream (a FIFO of that size, detached, fully visible).
// Positions: every segment's tokens sit at RoPE positions 0 .. T-1; the cache holds keys
// rotated to positions -S .. -1 (S = segment_length), so relative distances are those of the
// stream. After a segment of T tokens the cache becomes the last S of [cache; k] rotated by -T
// (RoPE is a rotation: rope(rope(k, p), -T) = rope(k, p - T)).
//
// State (all detached, batch first, so one model serves B streams and a checkpoint is just
// these tensors; SegmentLM::reset_rows empties a stream at its document boundary):
//   knn.<l>.keys, knn.<l>.values (B, Hkv, N, D), knn.<l>.count (B,) i64    l = memory_layer
//   xl.<i>.k, xl.<i>.v (B, Hkv, S, D), xl.<i>.count (B,) i64               i in xl_layers
// Because no state carries a graph, segments train independently: forward_backward runs
// forward + backward one segment at a time (same gradients as one graph, 1/S of the memory).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "memory/decoder_lm.h"
#include "memory/knn_memory.h"
#include "memory/memorizing_attention.h"
#include "memory/segment_lm.h"
#include "nn/llama.h"

namespace mnemo::memory {

struct MemorizingConfig {
  int64_t memory_layer = -1;       // index of the kNN layer; negative counts from the end
  int64_t capacity = 4096;         // N: memory entries per stream and kv head
  int64_t top_k = 32;              // K: memories retrieved per query
  std::vector<int64_t> xl_layers;  // layers with an XL cache of the previous segment
  std::string gate = "sigmoid";    // "sigmoid" (paper) | "joint" (softmax over both)
  // Initial gate bias b (sigmoid: g = sigmoid(b)). -4 (g = 0.018): the read returns noise
  // until the local lookup has formed, and an open gate (b = 0) kept it from forming
  // (docs/memory-results.md, recall); the gate opens once the memory is worth reading.
  double gate_init = -4.0;
  // The memory layer's local positions: "rope" (as the other layers; the memory is searched
  // and read with the unrotated q, k) or "alibi" (learned distance bias, no rotation: the
  // local lookup scores q . k as the memory does). rope is the default: measured on recall,
  // rope 0.974 far exact match, alibi's gate never opened (docs/memory-results.md).
  std::string position = "rope";
  std::string search = "exact";      // "exact" | "faiss"
  std::string faiss_index = "hnsw";  // "hnsw" | "ivf"
  int64_t faiss_nprobe = 32;
  int64_t segment_length = 512;  // the local window: longest segment

  // Throws mnemo::Error naming the key that is out of range for `model`.
  void validate(const nn::LlamaConfig& model) const;
  // The keys above (and "mechanism", ignored); unknown keys and wrong types are errors
  // naming the key.
  static MemorizingConfig from_json(const nlohmann::json& j);
};

class MemorizingLM : public DecoderLM {
 public:
  MemorizingLM(const nn::LlamaConfig& model, const MemorizingConfig& cfg, Generator* gen = nullptr);

  std::string mechanism() const override { return "memorizing"; }
  MemoryState initial_state(int64_t batch) const override;
  SegmentOutput forward_segment(const Tensor& ids, const MemoryState& state) override;
  int64_t segment_length() const override { return config.segment_length; }
  // Per segment forward + backward (the state is detached, so this equals one graph).
  double forward_backward(const std::vector<Tensor>& ids, const std::vector<Tensor>& targets,
                          const MemoryState& initial, MemoryState* final_state = nullptr,
                          double grad_scale = 1.0) override;

  MemorizingConfig config;                                    // memory_layer resolved to 0 .. L-1
  std::vector<std::shared_ptr<nn::TransformerBlock>> blocks;  // null at memory_layer
  std::shared_ptr<MemorizingBlock> memory_block;

  // Diagnostics: with record_reads set, forward_segment keeps what the memory layer read.
  struct MemoryRead {
    KnnLookup lookup;      // (B, H, T, K) slots, validity, keys, values
    Tensor memory_logits;  // (B, H, T, K)
    Tensor count;          // (B,) entries the memory held (slots N - count .. N - 1)
  };
  bool record_reads = false;
  MemoryRead last_read;

 private:
  bool has_xl(int64_t layer) const;
  // k (B, Hkv, S, D) rotated by -T positions.
  Tensor rope_shift(const Tensor& k, int64_t T) const;
};

}  // namespace mnemo::memory
