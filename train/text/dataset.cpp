// prepare_dataset: split, encode, write shards and info.json (dataset.h).
#include "train/text/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "train/text/random.h"
#include "train/text/shard.h"

namespace mnemo::text {

std::vector<bool> split_documents_by_seed(int64_t num_documents, double val_fraction,
                                          uint64_t seed) {
  MNEMO_CHECK(val_fraction >= 0 && val_fraction < 1,
              "prepare_dataset: val_fraction {} must be in [0, 1)", val_fraction);
  std::vector<bool> is_val(size_t(num_documents), false);
  if (val_fraction == 0) return is_val;
  MNEMO_CHECK(num_documents >= 2,
              "prepare_dataset: {} document(s) cannot be split into train and val (need >= 2)",
              num_documents);
  int64_t n_val = std::llround(val_fraction * double(num_documents));
  n_val = std::clamp<int64_t>(n_val, 1, num_documents - 1);
  std::vector<int64_t> order(static_cast<size_t>(num_documents));
  std::iota(order.begin(), order.end(), 0);
  // Fisher-Yates: draw i swaps position i with a uniform position in [i, n).
  for (int64_t i = 0; i + 1 < num_documents; ++i) {
    int64_t j = i + int64_t(below(counter_random(seed, uint64_t(i)), uint64_t(num_documents - i)));
    std::swap(order[size_t(i)], order[size_t(j)]);
  }
  for (int64_t k = 0; k < n_val; ++k) is_val[size_t(order[size_t(k)])] = true;
  return is_val;
}

DatasetInfo prepare_dataset(const std::vector<std::string>& docs, const Tokenizer& tokenizer,
                            double val_fraction, uint64_t seed, const std::string& out_dir) {
  const auto n = int64_t(docs.size());
  MNEMO_CHECK(n > 0, "prepare_dataset: no documents");
  const std::vector<bool> is_val = split_documents_by_seed(n, val_fraction, seed);

  // Encode every document independently (dynamic schedule: documents vary a lot in size).
  std::vector<std::vector<int32_t>> encoded(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t d = 0; d < n; ++d) encoded[size_t(d)] = tokenizer.encode(docs[size_t(d)]);

  DatasetInfo info;
  std::vector<int32_t> train, val;
  const int32_t eos = tokenizer.eos_id();
  for (int64_t d = 0; d < n; ++d) {
    const bool v = is_val[size_t(d)];
    std::vector<int32_t>& ids = v ? val : train;
    ids.insert(ids.end(), encoded[size_t(d)].begin(), encoded[size_t(d)].end());
    ids.push_back(eos);
    (v ? info.val_bytes : info.train_bytes) += int64_t(docs[size_t(d)].size());
    (v ? info.val_documents : info.train_documents) += 1;
    std::vector<int32_t>().swap(encoded[size_t(d)]);
  }
  info.train_tokens = int64_t(train.size());
  info.val_tokens = int64_t(val.size());

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  MNEMO_CHECK(!ec, "prepare_dataset: cannot create '{}': {}", out_dir, ec.message());
  const std::filesystem::path dir(out_dir);
  write_shard((dir / "train.bin").string(), train, tokenizer.vocab_size());
  write_shard((dir / "val.bin").string(), val, tokenizer.vocab_size());

  nlohmann::json json = {{"tokenizer", tokenizer.type()},
                         {"vocab_size", tokenizer.vocab_size()},
                         {"eos_id", eos},
                         {"seed", seed},
                         {"val_fraction", val_fraction},
                         {"train_documents", info.train_documents},
                         {"val_documents", info.val_documents},
                         {"train_tokens", info.train_tokens},
                         {"val_tokens", info.val_tokens},
                         {"train_bytes", info.train_bytes},
                         {"val_bytes", info.val_bytes}};
  const std::string info_path = (dir / "info.json").string();
  {
    std::ofstream file(info_path + ".tmp", std::ios::trunc);
    MNEMO_CHECK(file.good(), "prepare_dataset: cannot write '{}.tmp'", info_path);
    file << json.dump(1) << '\n';
    MNEMO_CHECK(file.good(), "prepare_dataset: writing '{}.tmp' failed", info_path);
  }
  std::filesystem::rename(info_path + ".tmp", info_path, ec);
  MNEMO_CHECK(!ec, "prepare_dataset: cannot rename to '{}': {}", info_path, ec.message());
  return info;
}

DatasetInfo read_dataset_info(const std::string& out_dir) {
  const std::string path = (std::filesystem::path(out_dir) / "info.json").string();
  std::ifstream file(path);
  MNEMO_CHECK(file.good(), "dataset info '{}': cannot open it", path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  auto json = nlohmann::json::parse(buffer.str(), nullptr, false);
  MNEMO_CHECK(!json.is_discarded() && json.is_object(), "dataset info '{}': not a JSON object",
              path);
  auto count = [&](const char* key) {
    MNEMO_CHECK(json.contains(key) && json.at(key).is_number_integer() && json.at(key) >= 0,
                "dataset info '{}': \"{}\" missing or not a non-negative integer", path, key);
    return json.at(key).get<int64_t>();
  };
  DatasetInfo info;
  info.train_tokens = count("train_tokens");
  info.val_tokens = count("val_tokens");
  info.train_bytes = count("train_bytes");
  info.val_bytes = count("val_bytes");
  info.train_documents = count("train_documents");
  info.val_documents = count("val_documents");
  return info;
}

}  // namespace mnemo::text
