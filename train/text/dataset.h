// Dataset preparation: documents -> train.bin / val.bin token shards + info.json.
//
// The split is by document, so no document is cut between train and val: the document
// indices are shuffled with a seeded Fisher-Yates shuffle (splitmix64, so the split is the
// same on every platform and standard library), the first n_val of them go to val, the rest
// to train, and each split keeps the documents in their original order. n_val =
// round(val_fraction * documents), at least 1 when val_fraction > 0 and at most documents - 1.
// Each document is encoded and followed by eos, so document boundaries stay visible to the
// model. Documents are encoded in parallel (OpenMP); the output does not depend on threads.
//
// info.json: {"tokenizer": "bpe", "vocab_size": N, "eos_id": N - 1, "seed": s,
//             "val_fraction": f, "train_documents": .., "val_documents": .., "train_tokens": ..,
//             "val_tokens": .., "train_bytes": .., "val_bytes": ..}
// tokens count eos; bytes are the raw text bytes (without eos), so that
// bits per byte = (nats per token / ln 2) * tokens / bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/text/tokenizer.h"

namespace mnemo::text {

struct DatasetInfo {
  int64_t train_tokens = 0, val_tokens = 0;  // including one eos per document
  int64_t train_bytes = 0, val_bytes = 0;    // text bytes, excluding eos
  int64_t train_documents = 0, val_documents = 0;
};

// The split alone: is_val[d] says whether document d goes to val (rules above).
// Throws if val_fraction is outside [0, 1) or there are too few documents to split.
std::vector<bool> split_documents_by_seed(int64_t num_documents, double val_fraction,
                                          uint64_t seed);

// Writes out_dir/{train.bin, val.bin, info.json} (out_dir is created if missing).
// val.bin is written (possibly empty) even when val_fraction is 0.
DatasetInfo prepare_dataset(const std::vector<std::string>& docs, const Tokenizer& tokenizer,
                            double val_fraction, uint64_t seed, const std::string& out_dir);

// Reads back the counts of out_dir/info.json (errors name the file).
DatasetInfo read_dataset_info(const std::string& out_dir);

}  // namespace mnemo::text
