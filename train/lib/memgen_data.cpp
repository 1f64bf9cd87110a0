// Chains as rows, plans, supervised steps and greedy scoring for MemGen (memgen_data.h).
#include "train/lib/memgen_data.h"

#include <algorithm>

#include "autograd/engine.h"
#include "core/error.h"
#include "optim/clip.h"
#include "optim/param_groups.h"

namespace mnemo::train {

using memory::InsertMode;

std::vector<int32_t> chain_prompt_ids(const memory::Chain& chain,
                                      const text::Tokenizer& tokenizer) {
  std::vector<int32_t> ids{tokenizer.eos_id()};
  for (int32_t id : tokenizer.encode(chain.prompt)) ids.push_back(id);
  return ids;
}

ChainRows chain_rows(const std::vector<memory::Chain>& chains, const text::Tokenizer& tokenizer,
                     Device device) {
  MNEMO_CHECK(!chains.empty(), "memgen: no chains given");
  ChainRows out;
  const int64_t B = int64_t(chains.size());
  int64_t T = -1;
  std::vector<int64_t> ids, targets;
  for (const memory::Chain& c : chains) {
    std::vector<int32_t> full = chain_prompt_ids(c, tokenizer);
    const int64_t P = int64_t(full.size());
    for (int32_t id : tokenizer.encode(c.reasoning)) full.push_back(id);
    full.push_back(tokenizer.eos_id());
    const int64_t row_T = int64_t(full.size()) - 1;
    MNEMO_CHECK(T < 0 || (row_T == T && P == out.prompt_length),
                "memgen: the chains of a batch must have one layout");
    T = row_T;
    out.prompt_length = P;
    std::vector<int64_t> row(full.begin(), full.end() - 1);
    ids.insert(ids.end(), row.begin(), row.end());
    for (int64_t t = 0; t < T; ++t) targets.push_back(t + 1 >= P ? full[size_t(t + 1)] : -100);
    out.rows.push_back(std::move(row));
  }
  out.ids = from_vector(ids, {B, T}, {DType::i64, device});
  out.targets = from_vector(targets, {B, T}, {DType::i64, device});
  return out;
}

memory::InsertionPlan chain_plan(const memory::MemGenLM& lm, const ChainRows& rows, InsertMode mode,
                                 const std::vector<std::vector<uint8_t>>* decisions) {
  memory::InsertionPlan plan(rows.rows.size());
  if (mode == InsertMode::none) return plan;
  const bool delimiters = mode != InsertMode::prompt;
  for (size_t b = 0; b < rows.rows.size(); ++b) {
    const auto& row = rows.rows[b];
    const auto points = lm.points(row, rows.prompt_length, int64_t(row.size()), true, delimiters);
    size_t k = 0;  // the row's decisions are the delimiter points', in order
    for (const memory::InsertionPoint& p : points) {
      const bool insert =
          decisions == nullptr || p.prompt || k >= (*decisions)[b].size() || (*decisions)[b][k];
      if (!p.prompt) ++k;
      if (insert) plan[b].push_back(p);
    }
  }
  return plan;
}

SupervisedSteps::SupervisedSteps(const nn::Module& model, double lr, int64_t warmup_steps)
    : lr_(lr), warmup_(warmup_steps) {
  nn::NamedTensors trainable;
  for (const auto& [name, p] : model.named_parameters()) {
    if (p.requires_grad()) trainable.emplace_back(name, p);
  }
  optimizer_ = std::make_unique<optim::AdamW>(optim::decay_groups(trainable, 0.0), lr, 0.9, 0.95);
}

void SupervisedSteps::step(const Tensor& loss) {
  backward(loss);
  const double norm = optimizer_->grad_norm();
  optimizer_->set_lr(lr_ *
                     std::min(1.0, double(steps_ + 1) / double(std::max<int64_t>(1, warmup_))));
  optimizer_->step(optim::clip_factor(norm, 1.0));
  optimizer_->zero_grad();
  ++steps_;
}

memory::MemGenGenerateOptions chain_generate_options(const memory::ChainTask& task,
                                                     const text::Tokenizer& tokenizer,
                                                     InsertMode mode) {
  memory::MemGenGenerateOptions o;
  o.mode = mode;
  o.eos_id = tokenizer.eos_id();
  o.vocab_limit = tokenizer.vocab_size();
  o.max_new_tokens = 2 * task.steps() + 2;
  return o;
}

ChainScore score_chains(const memory::MemGenLM& lm, const memory::MemGenTrigger* trigger,
                        InsertMode mode, const memory::ChainTask& task, memory::ChainRule rule,
                        memory::ChainSplit split, uint64_t first, int64_t count, int64_t batch,
                        const text::Tokenizer& tokenizer) {
  ChainScore s;
  double before_changed = 0, before_other = 0, after_last = 0, changed_steps = 0, other_steps = 0;
  const memory::MemGenGenerateOptions o = chain_generate_options(task, tokenizer, mode);
  for (int64_t start = 0; start < count; start += batch) {
    std::vector<memory::Chain> chains;
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i = start; i < std::min(count, start + batch); ++i) {
      chains.push_back(task.chain(rule, split, first + uint64_t(i)));
      prompts.push_back(chain_prompt_ids(chains.back(), tokenizer));
    }
    const memory::MemGenGenerated g = memory::memgen_generate(lm, trigger, prompts, o);
    for (size_t r = 0; r < chains.size(); ++r) {
      std::vector<int32_t> answer = g.tokens[r];
      if (!answer.empty() && answer.back() == tokenizer.eos_id()) answer.pop_back();
      const std::string text = tokenizer.decode(answer);
      s.final_exact += g.ended[r] && memory::ChainTask::final_of(text) == chains[r].final_answer;
      s.chain_exact += g.ended[r] && text == chains[r].reasoning;
      s.insertions += double(g.insertions(int64_t(r)));
      // The step each insertion came before: 0 at the prompt's end, then one more per
      // delimiter written up to its column.
      const int64_t P = int64_t(prompts[r].size());
      for (const memory::InsertionPoint& p : g.inserted[r]) {
        int64_t step = 0;
        for (int64_t c = P; c <= p.after; ++c) step += lm.is_delimiter(g.tokens[r][size_t(c - P)]);
        if (step >= task.steps()) {
          ++after_last;
        } else if (chains[r].changed[size_t(step)]) {
          ++before_changed;
        } else {
          ++before_other;
        }
      }
      for (bool changed : chains[r].changed) (changed ? changed_steps : other_steps) += 1;
      ++s.chains;
    }
  }
  if (s.chains > 0) {
    s.final_exact /= double(s.chains);
    s.chain_exact /= double(s.chains);
    s.insertions /= double(s.chains);
    s.before_changed = changed_steps > 0 ? before_changed / changed_steps : 0;
    s.before_other = other_steps > 0 ? before_other / other_steps : 0;
    s.after_last = after_last / double(s.chains);
  }
  return s;
}

}  // namespace mnemo::train
