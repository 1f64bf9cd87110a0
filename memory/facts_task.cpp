// The synthetic facts task (facts_task.h): facts, splits, bank layout, question rows.
#include "memory/facts_task.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "core/splitmix64.h"

namespace mnemo::memory {

namespace {

// One generator per purpose (and per index: an epoch of training), so that each draw is a
// function of the seed alone and changing one (say the edits) leaves the others as they were.
enum Purpose : uint64_t { kFacts = 1, kSplits, kLayout, kEpoch, kEdits, kInsertions };

SplitMix64 generator(uint64_t seed, Purpose purpose, uint64_t index = 0) {
  return SplitMix64(splitmix64_at(seed ^ (uint64_t(purpose) * 0xD1B54A32D192ED03ull), index));
}

int64_t below(SplitMix64& g, int64_t n) {  // [0, n)
  return int64_t(below_modulo(g.next(), uint64_t(n)));
}

// A uniformly random order of 0 .. count-1 (Fisher-Yates).
std::vector<int64_t> permutation(int64_t count, SplitMix64 g) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = count - 1; i > 0; --i)
    std::swap(order[size_t(i)], order[size_t(below(g, i + 1))]);
  return order;
}

Tensor rows_tensor(const FactQuestions& q, const std::vector<int64_t>& data, Device device) {
  return core::to(from_vector(data, {q.rows, q.length}), device);
}

}  // namespace

Tensor FactQuestions::ids_tensor(Device device) const {
  return rows_tensor(*this, ids, device);
}
Tensor FactQuestions::targets_tensor(Device device) const {
  return rows_tensor(*this, targets, device);
}
Tensor FactQuestions::router_targets_tensor(Device device) const {
  return rows_tensor(*this, router_targets, device);
}

FactsTask::FactsTask(uint64_t seed, const TaskOptions& options) : seed_(seed) {
  OptionReader read("facts", options);
  n_ = read.integer("syllables", 64, 2, 1024);
  relations_ = read.integer("relations", 8, 1, 1 << 16);
  objects_ = read.integer("objects", 64, 2, 1 << 16);
  held_out_fraction_ = read.number("held-out", 0.25, 0.0, 1.0);
  reserved_fraction_ = read.number("reserved", 1.0 / 16, 0.0, 1.0);
  layout_ = read.choice("layout", "grid", {"grid", "shuffled"});
  edits_ = read.integer("edits", -1, 0, int64_t(1) << 40);  // -1: the default, below
  length_ = read.integer("segment-length", 40, kQuestionLength, 1 << 16);
  read.finish();

  // Splits: a seeded order of the subjects, cut into reserved, held-out, trained.
  const int64_t N = n_ * n_;
  const auto reserved = int64_t(std::llround(reserved_fraction_ * double(N)));
  const auto held_out = int64_t(std::llround(held_out_fraction_ * double(N)));
  MNEMO_CHECK(reserved >= 1 && held_out >= 1 && reserved + held_out < N,
              "facts: --reserved {} and --held-out {} of {} subjects leave {} reserved, {} "
              "held-out and {} trained facts (each needs at least one)",
              reserved_fraction_, held_out_fraction_, N, reserved, held_out,
              N - reserved - held_out);
  if (edits_ == -1) edits_ = std::min<int64_t>(256, (N - reserved) / 4);
  MNEMO_CHECK(edits_ <= N - reserved, "facts: --edits {} is more than the {} facts in the bank",
              edits_, N - reserved);
  std::vector<FactSplit> split(size_t(N), FactSplit::trained);
  const std::vector<int64_t> order = permutation(N, generator(seed, kSplits));
  for (int64_t k = 0; k < reserved + held_out; ++k) {
    split[size_t(order[size_t(k)])] = k < reserved ? FactSplit::reserved : FactSplit::held_out;
  }

  // Slots: the grid, or a seeded permutation of it.
  std::vector<int64_t> slot(static_cast<size_t>(N));
  std::iota(slot.begin(), slot.end(), 0);
  if (layout_ == "shuffled") slot = permutation(N, generator(seed, kLayout));

  SplitMix64 draw = generator(seed, kFacts);
  for (int64_t s = 0; s < N; ++s) {
    Fact f;
    f.first = s / n_;
    f.second = s % n_;
    f.relation = below(draw, relations_);
    f.object = below(draw, objects_);
    switch (split[size_t(s)]) {
      case FactSplit::reserved: reserved_.push_back(f); break;
      case FactSplit::held_out:
        f.slot = slot[size_t(s)];
        held_out_.push_back(f);
        break;
      case FactSplit::trained:
        f.slot = slot[size_t(s)];
        trained_.push_back(f);
        break;
    }
  }
}

nlohmann::json FactsTask::config() const {
  return {{"syllables", n_},
          {"relations", relations_},
          {"objects", objects_},
          {"held-out", held_out_fraction_},
          {"reserved", reserved_fraction_},
          {"layout", layout_},
          {"edits", edits_},
          {"segment-length", length_},
          {"questions_per_row", questions_per_row()},
          {"bank_entries", bank_entries()},
          {"vocab", vocab_size()},
          {"facts",
           {{"trained", trained_.size()},
            {"held_out", held_out_.size()},
            {"reserved", reserved_.size()}}}};
}

const std::vector<Fact>& FactsTask::facts(FactSplit split) const {
  switch (split) {
    case FactSplit::trained: return trained_;
    case FactSplit::held_out: return held_out_;
    case FactSplit::reserved: return reserved_;
  }
  fail_internal("facts: unknown split {}", int(split));
}

std::vector<int32_t> FactsTask::entry(const Fact& fact) const {
  return {int32_t(syllable_token(fact.first)), int32_t(syllable_token(fact.second)),
          int32_t(relation_token(fact.relation)), int32_t(object_token(fact.object))};
}

MemoryBank FactsTask::bank() const {
  MemoryBank bank(n_, kEntryLength, /*freeze_ratio=*/0.0);
  for (const auto* split : {&trained_, &held_out_}) {
    for (const Fact& f : *split) bank.set(f.slot, entry(f));
  }
  return bank;
}

FactQuestions FactsTask::ask(std::span<const Fact> facts) const {
  MNEMO_CHECK(!facts.empty(), "facts: no questions to ask");
  const int64_t per_row = questions_per_row();
  FactQuestions q;
  q.rows = (int64_t(facts.size()) + per_row - 1) / per_row;
  q.length = length_;
  const size_t total = size_t(q.rows * q.length);
  q.ids.assign(total, kPad);
  q.targets.assign(total, -100);
  q.router_targets.assign(total, -1);
  for (size_t k = 0; k < facts.size(); ++k) {
    const Fact& f = facts[k];
    const int64_t at = int64_t(k) / per_row * length_ + int64_t(k) % per_row * kQuestionLength;
    const int64_t question[kQuestionLength] = {syllable_token(f.first), syllable_token(f.second),
                                               relation_token(f.relation), kQuestion,
                                               object_token(f.object)};
    std::copy(question, question + kQuestionLength, q.ids.begin() + at);
    q.targets[size_t(at + 3)] = object_token(f.object);  // read "?", predict o
    q.router_targets[size_t(at + 3)] = f.slot;
    q.answer_at.push_back(at + 3);
  }
  return q;
}

FactQuestions FactsTask::train_batch(int64_t step, int64_t rows) const {
  MNEMO_CHECK(step >= 0 && rows >= 1, "facts: bad training batch (step {}, {} rows)", step, rows);
  // Question g of the run is trained fact order_e[g mod F] of epoch e = g / F.
  const auto F = int64_t(trained_.size());
  const int64_t first = step * rows * questions_per_row();
  std::map<int64_t, std::vector<int64_t>> orders;  // epoch -> order of the trained facts
  std::vector<Fact> asked;
  for (int64_t g = first; g < first + rows * questions_per_row(); ++g) {
    auto [it, fresh] = orders.try_emplace(g / F);
    if (fresh) it->second = permutation(F, generator(seed_, kEpoch, uint64_t(g / F)));
    asked.push_back(trained_[size_t(it->second[size_t(g % F)])]);
  }
  return ask(asked);
}

std::vector<Fact> FactsTask::edits() const {
  std::vector<Fact> pool = trained_;
  pool.insert(pool.end(), held_out_.begin(), held_out_.end());
  const std::vector<int64_t> order = permutation(int64_t(pool.size()), generator(seed_, kEdits));
  SplitMix64 g = generator(seed_, kEdits, 1);  // the new objects
  std::vector<Fact> out;
  for (int64_t k = 0; k < edits_; ++k) {
    Fact f = pool[size_t(order[size_t(k)])];
    f.object = (f.object + 1 + below(g, objects_ - 1)) % objects_;  // any other object
    out.push_back(f);
  }
  return out;
}

std::vector<Fact> FactsTask::insertions() const {
  const std::vector<int64_t> order =
      permutation(int64_t(reserved_.size()), generator(seed_, kInsertions));
  std::vector<Fact> out;
  for (int64_t k : order) out.push_back(reserved_[size_t(k)]);
  return out;
}

}  // namespace mnemo::memory
