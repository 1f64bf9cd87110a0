// The synthetic facts task (memory/facts_task.h): a pure function of the seed; the splits
// cover every subject once; the bank holds exactly the trained and held-out facts at their
// layout slots; questions score the object at "?" only, with the fact's slot as the router
// target; edits and insertions are what the bench needs.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "memory/facts_task.h"

namespace mnemo::memory {
namespace {

constexpr FactSplit kSplits[] = {FactSplit::trained, FactSplit::held_out, FactSplit::reserved};

bool same_facts(const std::vector<Fact>& a, const std::vector<Fact>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Fact& x, const Fact& y) {
    return x.first == y.first && x.second == y.second && x.relation == y.relation &&
           x.object == y.object && x.slot == y.slot;
  });
}

// Every subject's fact, by subject index.
std::vector<Fact> all_facts(const FactsTask& task) {
  const int64_t n = task.syllables();
  std::vector<Fact> out(size_t(n * n));
  for (FactSplit split : kSplits) {
    for (const Fact& f : task.facts(split)) out[size_t(f.subject(n))] = f;
  }
  return out;
}

}  // namespace

TEST_CASE("facts: everything is a function of the seed") {
  const TaskOptions options = {{"syllables", "16"}};
  const FactsTask a(3, options), b(3, options), c(4, options);
  for (FactSplit split : kSplits) CHECK(same_facts(a.facts(split), b.facts(split)));
  CHECK(a.bank().tokens() == b.bank().tokens());
  CHECK(a.train_batch(7, 4).ids == b.train_batch(7, 4).ids);
  CHECK(same_facts(a.edits(), b.edits()));
  CHECK(same_facts(a.insertions(), b.insertions()));
  // Another seed draws other facts and another split.
  CHECK_FALSE(same_facts(a.facts(FactSplit::held_out), c.facts(FactSplit::held_out)));
  CHECK(a.train_batch(7, 4).ids != c.train_batch(7, 4).ids);
}

TEST_CASE("facts: the splits cover every subject once, in the promised sizes") {
  const FactsTask task(0, {});  // the defaults: n = 64, 1/4 held out, 1/16 reserved
  CHECK(task.syllables() == 64);
  CHECK(task.bank_entries() == 4096);
  CHECK(task.vocab_size() == 2 + 64 + 8 + 64);
  CHECK(task.facts(FactSplit::held_out).size() == 1024);
  CHECK(task.facts(FactSplit::reserved).size() == 256);
  CHECK(task.facts(FactSplit::trained).size() == 4096 - 1024 - 256);
  std::set<int64_t> subjects;
  std::set<int64_t> relations, objects;
  for (FactSplit split : kSplits) {
    for (const Fact& f : task.facts(split)) {
      CHECK(subjects.insert(f.subject(64)).second);  // disjoint
      relations.insert(f.relation);
      objects.insert(f.object);
      CHECK((f.slot == -1) == (split == FactSplit::reserved));
    }
  }
  CHECK(subjects.size() == 4096);
  CHECK(*relations.begin() == 0);
  CHECK(*relations.rbegin() == 7);  // uniform draws reach every relation and object
  CHECK(objects.size() == 64);
}

TEST_CASE("facts: the bank holds trained and held-out facts at their layout slots") {
  for (const char* layout : {"grid", "shuffled"}) {
    CAPTURE(layout);
    const FactsTask task(1, {{"syllables", "16"}, {"layout", layout}});
    const MemoryBank bank = task.bank();
    CHECK(bank.entries() == 256);
    CHECK(bank.length() == FactsTask::kEntryLength);
    CHECK(bank.frozen() == 0);  // `add` may use every free slot
    std::set<int64_t> slots;
    for (const Fact& f : all_facts(task)) {
      if (f.slot == -1) continue;
      CHECK(slots.insert(f.slot).second);
      CHECK(bank.entry(f.slot) == task.entry(f));
      if (std::string(layout) == "grid") CHECK(f.slot == f.subject(16));
    }
    // Exactly the reserved facts' entries are free.
    int64_t free = 0;
    for (int64_t e = 0; e < bank.entries(); ++e) free += bank.is_free(e) ? 1 : 0;
    CHECK(free == int64_t(task.facts(FactSplit::reserved).size()));
    CHECK(int64_t(slots.size()) + free == 256);
  }
  // Shuffled is a permutation of the grid: the same facts, and most in other slots.
  const FactsTask grid(1, {{"syllables", "16"}});
  const FactsTask shuffled(1, {{"syllables", "16"}, {"layout", "shuffled"}});
  const std::vector<Fact> g = all_facts(grid), s = all_facts(shuffled);
  int64_t moved = 0;
  for (size_t k = 0; k < g.size(); ++k) {
    CHECK(g[k].object == s[k].object);
    CHECK(g[k].relation == s[k].relation);
    moved += g[k].slot != s[k].slot ? 1 : 0;
  }
  CHECK(moved > int64_t(g.size()) * 9 / 10);
}

TEST_CASE("facts: questions score the object at \"?\" only, routed to the fact's slot") {
  const FactsTask task(2, {{"syllables", "8"}, {"segment-length", "17"}});  // 3 questions a row
  REQUIRE(task.questions_per_row() == 3);
  const std::vector<Fact>& held = task.facts(FactSplit::held_out);
  const std::vector<Fact> asked(held.begin(), held.begin() + 7);
  const FactQuestions q = task.ask(asked);
  CHECK(q.rows == 3);  // ceil(7 / 3)
  CHECK(q.length == 17);
  REQUIRE(q.answer_at.size() == 7);
  std::set<int64_t> answers(q.answer_at.begin(), q.answer_at.end());
  for (int64_t p = 0; p < q.rows * q.length; ++p) {
    const bool scored = answers.count(p) > 0;
    CHECK((q.targets[size_t(p)] != -100) == scored);
    CHECK((q.router_targets[size_t(p)] != -1) == scored);
    CHECK(q.ids[size_t(p)] >= 0);
    CHECK(q.ids[size_t(p)] < task.vocab_size());
    if (scored) CHECK(q.ids[size_t(p)] == FactsTask::kQuestion);
  }
  for (size_t k = 0; k < asked.size(); ++k) {
    const auto at = size_t(q.answer_at[k]);
    const std::vector<int32_t> entry = task.entry(asked[k]);  // "s_i s_j r o"
    CHECK(q.ids[at - 3] == entry[0]);
    CHECK(q.ids[at - 2] == entry[1]);
    CHECK(q.ids[at - 1] == entry[2]);
    CHECK(q.ids[at + 1] == entry[3]);
    CHECK(q.targets[at] == entry[3]);
    CHECK(q.router_targets[at] == asked[k].slot);
  }
  // Padding after the last question of a row, and after the last question.
  CHECK(q.ids[15] == FactsTask::kPad);
  CHECK(q.ids[16] == FactsTask::kPad);
  CHECK(q.ids[size_t(2 * 17 + 5)] == FactsTask::kPad);
  const Tensor ids = q.ids_tensor(), router = q.router_targets_tensor();
  CHECK(ids.shape() == Shape{3, 17});
  CHECK(router.to_vector<int64_t>() == q.router_targets);
}

TEST_CASE("facts: training rows ask trained facts only, each once per epoch") {
  const FactsTask task(5, {{"syllables", "8"}, {"segment-length", "10"}});
  const std::vector<Fact>& trained = task.facts(FactSplit::trained);
  const auto F = int64_t(trained.size());
  std::set<std::vector<int32_t>> trained_entries;
  for (const Fact& f : trained) trained_entries.insert(task.entry(f));
  // Steps of 3 rows x 2 questions cover the first epoch exactly once each.
  std::multiset<std::vector<int32_t>> first_epoch;
  for (int64_t step = 0; int64_t(first_epoch.size()) < F; ++step) {
    const FactQuestions q = task.train_batch(step, 3);
    CHECK(q.rows == 3);
    for (int64_t at : q.answer_at) {
      const auto p = size_t(at);
      std::vector<int32_t> entry = {int32_t(q.ids[p - 3]), int32_t(q.ids[p - 2]),
                                    int32_t(q.ids[p - 1]), int32_t(q.targets[p])};
      CHECK(trained_entries.count(entry) == 1);
      if (int64_t(first_epoch.size()) < F) first_epoch.insert(entry);
    }
  }
  CHECK(std::set<std::vector<int32_t>>(first_epoch.begin(), first_epoch.end()) == trained_entries);
  CHECK(int64_t(first_epoch.size()) == F);
}

TEST_CASE("facts: edits change the object of bank facts; insertions are the reserved facts") {
  const FactsTask task(6, {{"syllables", "16"}, {"edits", "40"}});
  const std::vector<Fact> facts = all_facts(task);
  const std::vector<Fact> edits = task.edits();
  REQUIRE(edits.size() == 40);
  std::set<int64_t> edited;
  for (const Fact& e : edits) {
    const Fact& before = facts[size_t(e.subject(16))];
    CHECK(edited.insert(e.subject(16)).second);
    CHECK(e.slot != -1);  // in the bank
    CHECK(e.slot == before.slot);
    CHECK(e.relation == before.relation);
    CHECK(e.object != before.object);
    CHECK(e.object >= 0);
    CHECK(e.object < 64);
  }
  const std::vector<Fact> inserted = task.insertions();
  const std::vector<Fact>& reserved = task.facts(FactSplit::reserved);
  CHECK(inserted.size() == reserved.size());
  std::vector<int64_t> a, b;
  for (const Fact& f : inserted) a.push_back(f.subject(16));
  for (const Fact& f : reserved) b.push_back(f.subject(16));
  CHECK_FALSE(std::is_sorted(a.begin(), a.end()));  // not subject order
  std::sort(a.begin(), a.end());
  CHECK(a == b);
  // Added with fifo, they fill the free slots, mostly not their own grid slots.
  MemoryBank bank = task.bank();
  std::vector<std::vector<int32_t>> entries;
  for (const Fact& f : inserted) entries.push_back(task.entry(f));
  const std::vector<int64_t> slots = bank.add(entries, BankPolicy::fifo);
  int64_t own = 0;
  for (size_t k = 0; k < slots.size(); ++k) {
    CHECK(task.bank().is_free(slots[k]));
    own += slots[k] == inserted[k].subject(16) ? 1 : 0;
  }
  CHECK(own < int64_t(slots.size()) / 4);
}

TEST_CASE("facts: bad and unknown options are errors naming them") {
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"gap", "2"}}), doctest::Contains("unknown option --gap"),
                       Error);
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"layout", "spiral"}}), doctest::Contains("--layout"), Error);
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"held-out", "half"}}), doctest::Contains("--held-out"),
                       Error);
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"held-out", "0.8"}, {"reserved", "0.2"}}),
                       doctest::Contains("--held-out"), Error);
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"reserved", "0"}}), doctest::Contains("--reserved"), Error);
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"syllables", "1"}}), doctest::Contains("--syllables"), Error);
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"segment-length", "4"}}),
                       doctest::Contains("--segment-length"), Error);
  CHECK_THROWS_WITH_AS(FactsTask(0, {{"syllables", "4"}, {"edits", "100"}}),
                       doctest::Contains("--edits"), Error);
}

}  // namespace mnemo::memory
