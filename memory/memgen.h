// MemGen (Zhang et al., "MemGen: Weaving Generative Latent Memory for Self-Evolving Agents"):
// a frozen reasoner LM, and a weaver that reads the reasoner's context and *generates* K
// latent embeddings, inserted into the reasoner's stream where it may need them — at the end
// of the prompt, and after delimiter tokens while it reasons.
//
//   tokens      e_0 ... e_p | e_p+1 ... e_q | e_q+1 ...        the reasoner's token embeddings
//   insertion        after p ^           after q ^             the prompt's end; a delimiter
//   weaver      W( r2w(e_0..e_p), queries ) -> h (K, Cw)        a small Llama of its own width
//   latents     m = w2r(h)  (K, Cr), inserted after e_p          Linear maps both ways
//   reasoner    e_0 .. e_p  m_1 .. m_K  e_p+1 .. e_q  m'_1 .. m'_K  e_q+1 ...
//
// The queries are learned: `prompt_latents` (K_p, default 8) at the prompt's end and
// `inference_latents` (K_i, default 4) after a delimiter, each passed through an RMSNorm and a
// learned scale before the weaver reads them. The token after an insertion is predicted from
// the last latent; latents are never scored (the loss is on the response's tokens only). The
// reasoner is frozen (no gradients, no optimizer state); the gradient reaches the weaver
// through it.
//
// Two choices of mnemo's own:
//   positions  a latent takes the position id of the token it follows, and every token keeps
//              the position it has without insertions. The reasoner, pre-trained without
//              latents, never sees its tokens shifted to positions (or RoPE distances) it did
//              not train on — the trap of inserting into a model with learned positions.
//   absence    a latent that is exactly zero is absent: forward gives it no column, and
//              where a batch must keep its rows aligned (generation, memgen_generate.h: the
//              trigger said no for this row but yes for another) its column gets the
//              attention bias -1e9, so no query reads it. Every other latent is read like a
//              token. So a weaver whose output map is zero leaves the reasoner's logits
//              exactly as they were (a test checks it, and with it the positions and the
//              stream's bookkeeping).
// The weaver runs once per batch for every insertion point: its stream is the row's T mapped
// token embeddings followed by one block of queries per point, and a mask lets the block of
// the point after token p see tokens 0..p and its own queries (causally) only. That equals
// running the weaver separately at each point on the prefix so far, which is what generation
// does (memory/memgen_generate.h). Like the reference's it reads the prefix's token
// embeddings; unlike the reference's, not the latents inserted earlier, which is what makes
// the single pass possible.
//
// With source "soft_prompt" there is no weaver: K_p learned embeddings go at
// the prompt's end of every row — the bench's soft-prompt baseline.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/linear.h"
#include "nn/llama.h"
#include "nn/norm.h"

namespace mnemo::memory {

struct MemGenConfig {
  std::string source = "weaver";    // weaver | soft_prompt
  nn::LlamaConfig weaver;           // the weaver's Llama (vocab_size unused: it reads embeddings)
  int64_t prompt_latents = 8;       // K_p
  int64_t inference_latents = 4;    // K_i
  std::vector<int64_t> delimiters;  // token ids after which latents may go
  int64_t max_prompt_aug = 1;       // 0 or 1 insertions at the prompt's end
  int64_t max_inference_aug = 5;    // insertions after delimiters, per sequence
  double latent_rms = 1.0;          // initial RMS of the latents, in units of the RMS of the
                                    // reasoner's token embeddings
  double trigger_init = 0.8;        // the trigger's initial P(insert) (memgen_trigger.h)

  void validate() const;  // throws mnemo::Error naming the key
  nlohmann::json to_json() const;
  // Every key optional (the defaults above, the weaver's Llama from `weaver`); errors name
  // the key ("memgen: 'prompt_latents' ...").
  static MemGenConfig from_json(const nlohmann::json& j);
};

// One insertion: latents right after token column `after` (K_p of them when `prompt`).
struct InsertionPoint {
  int64_t after = 0;
  bool prompt = false;
};
using InsertionPlan = std::vector<std::vector<InsertionPoint>>;  // per row, ascending `after`

struct MemGenOutput {
  Tensor logits;   // (B, T, V): column t predicts token t + 1 (from the last latent when
                   // latents follow token t)
  Tensor hidden;   // (B, T, Cr): the reasoner's last hidden state at each token's own column
                   // (before any latents after it), detached: what the trigger reads
  Tensor latents;  // (B, L, Cr) the latents made for the plan (undefined when it has none)
};

class MemGenLM : public nn::Module {
 public:
  // reasoner: trained, and frozen here (its parameters stop requiring grad). gen: the
  // initial weights of the weaver, maps and queries (or the process-wide generator).
  MemGenLM(std::shared_ptr<nn::LlamaForCausalLM> reasoner, const MemGenConfig& config,
           Generator* gen = nullptr);

  // ids (B, T) integer -> the reasoner's logits with latents inserted as `plan` says (one
  // list per row; an empty plan is the reasoner alone, exactly).
  MemGenOutput forward(const Tensor& ids, const InsertionPlan& plan) const;
  // The mean cross-entropy of logits (B, T, V) against targets (B, T) (-100 = not scored).
  static Tensor loss(const MemGenOutput& out, const Tensor& targets);

  // The insertion points of one row of ids as the config allows: the prompt's end (column
  // prompt_length - 1) when max_prompt_aug > 0 and `at_prompt`, then after each delimiter
  // in columns [prompt_length, end) while fewer than max_inference_aug, when `at_delimiters`.
  std::vector<InsertionPoint> points(const std::vector<int64_t>& row_ids, int64_t prompt_length,
                                     int64_t end, bool at_prompt, bool at_delimiters) const;
  bool is_delimiter(int64_t token) const;

  // Latents for the points of each row: (B, L, Cr), L = the most latents any row takes;
  // row b's latents in its points' order, zeros after them. `ids` (B, T) are the tokens the
  // weaver reads (each point reads its prefix).
  Tensor make_latents(const Tensor& ids, const InsertionPlan& plan) const;
  // The attention bias of latents (B, L, Cr), per latent (host, row-major): 0, or -1e9 for
  // a zero latent (absent).
  std::vector<float> presence_bias(const Tensor& latents) const;

  const nn::LlamaForCausalLM& reasoner() const { return *reasoner_; }
  std::shared_ptr<nn::LlamaForCausalLM> reasoner_ptr() const { return reasoner_; }
  const MemGenConfig& config() const { return config_; }
  double token_rms() const { return token_rms_; }  // RMS of the reasoner's token embeddings
  int64_t latents_at(const InsertionPoint& p) const {
    return p.prompt ? config_.prompt_latents : config_.inference_latents;
  }

  // source == weaver
  std::shared_ptr<nn::LlamaModel> weaver;
  std::shared_ptr<nn::Linear> reasoner_to_weaver, weaver_to_reasoner;
  Tensor prompt_latents, inference_latents;  // (K_p, Cw), (K_i, Cw)
  std::shared_ptr<nn::RMSNorm> latent_norm;  // on the queries
  Tensor latent_scale;                       // () their scale
  // source == soft_prompt
  Tensor soft_prompt;  // (K_p, Cr)

 private:
  Tensor weave(const Tensor& ids, const InsertionPlan& plan, int64_t L) const;
  Tensor soft_latents(const InsertionPlan& plan, int64_t B, int64_t L) const;

  std::shared_ptr<nn::LlamaForCausalLM> reasoner_;
  MemGenConfig config_;
  double token_rms_ = 1;
};

}  // namespace mnemo::memory
