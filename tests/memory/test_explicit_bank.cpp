// ExplicitLM's memory bank (memory/explicit_bank.h): entries and their padding, the replacement
// policies of `add` (free slots first, then fifo / lru / similar, never a frozen entry), the
// bookkeeping that drives them, and from_rows' checks of raw rows read from a file.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "memory/explicit_bank.h"
#include "support/errors.h"

namespace mnemo::memory {
namespace {

using Tokens = std::vector<int32_t>;
using Slots = std::vector<int64_t>;

// A bank of n * n entries with entries [0, filled) written as {e + 1}, in index order.
MemoryBank filled_bank(int64_t n, int64_t length, double freeze_ratio, int64_t filled) {
  MemoryBank bank(n, length, freeze_ratio);
  for (int64_t e = 0; e < filled; ++e) bank.set(e, {int32_t(e + 1)});
  return bank;
}

TEST_CASE("explicit bank: sizes, the frozen part, entries and their padding") {
  const MemoryBank bank(3, 4, 0.25);
  CHECK(bank.side() == 3);
  CHECK(bank.entries() == 9);
  CHECK(bank.length() == 4);
  CHECK(bank.frozen() == 2);  // floor(0.25 * 9)
  CHECK(bank.tokens() == Tokens(36, -1));
  for (int64_t e = 0; e < 9; ++e) CHECK(bank.is_free(e));
  CHECK(MemoryBank(4, 2, 0.2).frozen() == 3);  // floor(3.2)
  CHECK(MemoryBank(4, 2, 1.0).frozen() == 16);

  MemoryBank edited = bank;
  edited.set(4, {7, 0, 9});
  CHECK(edited.entry(4) == Tokens{7, 0, 9});
  CHECK_FALSE(edited.is_free(4));
  CHECK(Tokens(edited.tokens().begin() + 16, edited.tokens().begin() + 20) == Tokens{7, 0, 9, -1});
  CHECK(edited.written()[4] == edited.clock());
  CHECK(edited.clock() == 1);
  CHECK(edited.version() != bank.version());
  edited.set(4, {5});  // a shorter entry: the rest is padding again
  CHECK(Tokens(edited.tokens().begin() + 16, edited.tokens().begin() + 20) ==
        Tokens{5, -1, -1, -1});
  edited.clear(4);
  CHECK(edited.is_free(4));
  CHECK(edited.entry(4).empty());
  CHECK(edited.clock() == 3);
}

TEST_CASE("explicit bank: bad sizes, entries and tokens are errors naming them") {
  CHECK(mnemo::test::error_message([] { MemoryBank(0, 4); }).find("side n (0)") !=
        std::string::npos);
  CHECK(mnemo::test::error_message([] { MemoryBank(2, 0); }).find("entry length (0)") !=
        std::string::npos);
  CHECK(mnemo::test::error_message([] { MemoryBank(2, 4, 1.5); }).find("freeze_ratio") !=
        std::string::npos);
  MemoryBank bank(2, 3);
  CHECK(mnemo::test::error_message([&] {
          bank.set(4, {1});
        }).find("entry 4 is out of range [0, 4)") != std::string::npos);
  CHECK(mnemo::test::error_message([&] { bank.entry(-1); }).find("entry -1") != std::string::npos);
  CHECK(mnemo::test::error_message([&] {
          bank.set(1, {1, 2, 3, 4});
        }).find("entry 1 has 4 tokens, more than the entry length 3") != std::string::npos);
  CHECK(mnemo::test::error_message([&] {
          bank.set(2, {1, -5});
        }).find("entry 2 token 1 is negative") != std::string::npos);
  CHECK(bank.tokens() == Tokens(12, -1));  // nothing was written
  CHECK(bank.clock() == 0);
  CHECK(parse_bank_policy("lru") == BankPolicy::lru);
  CHECK(bank_policy_name(BankPolicy::similar) == "similar");
  CHECK(mnemo::test::error_message([] { parse_bank_policy("random"); }).find("'random'") !=
        std::string::npos);
}

TEST_CASE("explicit bank: add fills free slots first, in index order, after the frozen part") {
  for (BankPolicy policy : {BankPolicy::fifo, BankPolicy::lru, BankPolicy::similar}) {
    CAPTURE(bank_policy_name(policy));
    MemoryBank bank(3, 2, 0.25);  // 9 entries, 0 and 1 frozen
    bank.set(3, {42});            // a used slot among the open ones
    const auto never = [](int64_t, int64_t) { return 0.0; };
    const Slots slots = bank.add({{1}, {2}, {3}}, policy, never);
    CHECK(slots == Slots{2, 4, 5});
    CHECK(bank.entry(2) == Tokens{1});
    CHECK(bank.entry(4) == Tokens{2});
    CHECK(bank.entry(5) == Tokens{3});
    CHECK(bank.entry(3) == Tokens{42});
    CHECK(bank.is_free(0));  // frozen slots are never chosen, even when free
    CHECK(bank.is_free(1));
  }
}

TEST_CASE("explicit bank: fifo replaces the least recently written, never a frozen entry") {
  MemoryBank bank = filled_bank(2, 2, 0.5, 4);  // entries 0, 1 frozen; 2 then 3 written
  CHECK(bank.add({{10}}, BankPolicy::fifo) == Slots{2});
  CHECK(bank.add({{11}}, BankPolicy::fifo) == Slots{3});
  CHECK(bank.add({{12}, {13}}, BankPolicy::fifo) == Slots{2, 3});
  CHECK(bank.add({{14}}, BankPolicy::fifo) == Slots{2});
  for (int round = 0; round < 10; ++round) bank.add({{20 + round}}, BankPolicy::fifo);
  CHECK(bank.entry(0) == Tokens{1});  // the base knowledge is untouched
  CHECK(bank.entry(1) == Tokens{2});
  // Editing a frozen entry by index is allowed (set), and stays out of add's reach.
  bank.set(0, {99});
  CHECK(bank.add({{100}}, BankPolicy::fifo) != Slots{0});
  CHECK(bank.entry(0) == Tokens{99});
  CHECK(mnemo::test::error_message([&] {
          bank.add({{1}, {2}, {3}}, BankPolicy::fifo);
        }).find("3 new entries, but only 2 entries are not frozen") != std::string::npos);
  CHECK(mnemo::test::error_message([&] {
          bank.add({{1, 2, 3}}, BankPolicy::fifo);
        }).find("new entry 0 has 3 tokens") != std::string::npos);
}

TEST_CASE("explicit bank: lru replaces the least recently used, ties by index") {
  MemoryBank bank = filled_bank(2, 1, 0.25, 4);  // entry 0 frozen
  bank.record_use({1, 3, 0});
  bank.record_use({3, 7, -1});                                  // ids outside [0, N) are ignored
  CHECK(bank.last_used() == Slots{5, 5, 0, 6});                 // the clock: 4 writes, then 5, 6
  CHECK(bank.add({{9}}, BankPolicy::lru) == Slots{2});          // never used
  CHECK(bank.add({{8}, {7}}, BankPolicy::lru) == Slots{2, 1});  // a write is not a use
  bank.record_use({1, 2});
  CHECK(bank.add({{6}}, BankPolicy::lru) == Slots{3});
  bank.record_use({});  // nothing used: the clock stays
  CHECK(bank.clock() == 11);
  // Writing does not count as a use: fifo and lru differ here.
  MemoryBank twin = filled_bank(2, 1, 0.0, 4);
  twin.record_use({0});
  CHECK(twin.choose_slots(1, BankPolicy::lru) == Slots{1});
  CHECK(twin.choose_slots(1, BankPolicy::fifo) == Slots{0});
}

TEST_CASE("explicit bank: similar replaces the most similar open entry, each slot once") {
  MemoryBank bank = filled_bank(2, 1, 0.25, 4);  // entry 0 frozen
  // New entry k is closest to existing entry 3 - k; entry 0 would be closest of all.
  const MemoryBank::Similarity similarity = [](int64_t k, int64_t e) {
    if (e == 0) return 10.0;
    return e == 3 - k ? 1.0 : -1.0;
  };
  CHECK(bank.choose_slots(2, BankPolicy::similar, similarity) == Slots{3, 2});
  // Two new entries that both prefer entry 2: the second takes the next best.
  const MemoryBank::Similarity prefer2 = [](int64_t, int64_t e) {
    return e == 2 ? 1.0 : -double(e);
  };
  CHECK(bank.add({{50}, {51}}, BankPolicy::similar, prefer2) == Slots{2, 1});
  CHECK(bank.entry(2) == Tokens{50});
  CHECK(bank.entry(1) == Tokens{51});
  CHECK(bank.entry(0) == Tokens{1});
  // With free slots, those come first: similarity is asked only for the rest, with the new
  // entry's own index k.
  bank.clear(3);
  std::vector<int64_t> asked;
  const MemoryBank::Similarity record = [&](int64_t k, int64_t) {
    asked.push_back(k);
    return 0.0;
  };
  CHECK(bank.choose_slots(2, BankPolicy::similar, record) == Slots{3, 1});
  for (int64_t k : asked) CHECK(k == 1);
  CHECK(mnemo::test::error_message([&] {
          bank.choose_slots(1, BankPolicy::similar);
        }).find("needs a similarity function") != std::string::npos);
}

TEST_CASE("explicit bank: from_rows rebuilds a bank and rejects malformed rows") {
  MemoryBank bank = filled_bank(2, 3, 0.25, 3);
  bank.set(1, {4, 5, 6});
  bank.record_use({2});
  const MemoryBank copy = MemoryBank::from_rows(2, 3, 0.25, bank.tokens(), bank.written(),
                                                bank.last_used(), bank.clock(), "bank.st");
  CHECK(copy.tokens() == bank.tokens());
  CHECK(copy.written() == bank.written());
  CHECK(copy.last_used() == bank.last_used());
  CHECK(copy.clock() == bank.clock());
  CHECK(copy.frozen() == 1);
  CHECK(copy.entry(1) == Tokens{4, 5, 6});
  // The policies resume where they stopped.
  CHECK(copy.choose_slots(2, BankPolicy::fifo) == bank.choose_slots(2, BankPolicy::fifo));
  CHECK(copy.choose_slots(2, BankPolicy::lru) == bank.choose_slots(2, BankPolicy::lru));

  const Slots counters(4, 0);
  struct Case {
    Tokens tokens;
    Slots written;
    const char* says;
  };
  const Case cases[] = {
      {Tokens(11, -1), counters, "bank tokens hold 11 values, expected 4 entries x 3 = 12"},
      {Tokens(12, -1), Slots(3, 0), "bank counters hold 3 and 4 values, expected 4"},
      {{1, 2, 3, -1, -1, -1, 7, -2, -1, -1, -1, -1}, counters, "entry 2 holds token -2"},
      {{1, 2, 3, -1, 5, -1, -1, -1, -1, -1, -1, -1},
       counters,
       "entry 1 has a token after its padding at position 1"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.says);
    const std::string message = mnemo::test::error_message(
        [&] { MemoryBank::from_rows(2, 3, 0.25, c.tokens, c.written, counters, 0, "bank.st"); });
    CHECK(message.find("bank.st: ") == 0);
    CHECK(message.find(c.says) != std::string::npos);
  }
  CHECK(mnemo::test::error_message([] {
          MemoryBank::from_rows(0, 3, 0.0, {}, {}, {}, 0, "bank.st");
        }).find("bank.st") != std::string::npos);
}

}  // namespace
}  // namespace mnemo::memory
