// CsvLog: the per-epoch CSV of a training run (header epoch,step,train_loss,test_acc,img_per_s,elapsed_s),
// rewritten whole (temporary file, then rename) after each row, so a crash never leaves a half-written file.
#pragma once

#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <span>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/detail/atomic_file.hpp"

namespace tessera::train {

struct EpochRow {
  int epoch = 0;
  int64_t step = 0;  // optimizer steps taken so far
  double train_loss = 0.0;
  double test_accuracy = 0.0;  // percent; NaN for an epoch that was not evaluated (an empty CSV field)
  double images_per_second = 0.0;
  double elapsed_seconds = 0.0;
};

inline constexpr const char* kCsvHeader = "epoch,step,train_loss,test_acc,img_per_s,elapsed_s";

class CsvLog {
 public:
  CsvLog() = default;  // no file: rows are kept in memory only
  explicit CsvLog(std::filesystem::path path) : path_(std::move(path)) {}

  // Keeps the rows of an earlier run up to and including `last_epoch` and `last_step` (for --resume; save() then
  // writes the file without the others) and returns how many rows it left out.
  size_t load_existing(int last_epoch, int64_t last_step = std::numeric_limits<int64_t>::max()) {
    size_t dropped = 0;
    if (path_.empty() || !std::filesystem::exists(path_)) return dropped;
    std::ifstream in(path_);
    std::string line;
    TESSERA_CHECK(std::getline(in, line) && line == kCsvHeader, "CsvLog: ", path_.string(),
                  " does not start with the header ", kCsvHeader);
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      std::vector<std::string> fields;
      std::istringstream split(line);
      for (std::string field; std::getline(split, field, ',');) fields.push_back(field);
      EpochRow row;
      try {
        TESSERA_CHECK(fields.size() == 6, "expected 6 fields");
        row.epoch = std::stoi(fields[0]);
        row.step = std::stoll(fields[1]);
        row.train_loss = std::stod(fields[2]);
        row.test_accuracy = fields[3].empty() ? std::numeric_limits<double>::quiet_NaN() : std::stod(fields[3]);
        row.images_per_second = std::stod(fields[4]);
        row.elapsed_seconds = std::stod(fields[5]);
      } catch (const std::exception&) {
        ::tessera::detail::fail("CsvLog: cannot parse the line '", line, "' of ", path_.string());
      }
      if (row.epoch <= last_epoch && row.step <= last_step) rows_.push_back(row);
      else ++dropped;
    }
    return dropped;
  }

  void append(const EpochRow& row) {
    rows_.push_back(row);
    save();
  }

  // Writes the rows held to the file (atomically; nothing without a path).
  void save() const {
    if (!path_.empty()) write();
  }

  const std::vector<EpochRow>& rows() const { return rows_; }

  static std::string format(const EpochRow& r) {
    std::ostringstream os;
    os << r.epoch << ',' << r.step << ',' << std::fixed << std::setprecision(6) << r.train_loss << ','
       << std::setprecision(2);
    if (!std::isnan(r.test_accuracy)) os << r.test_accuracy;
    os << ',' << std::setprecision(1) << r.images_per_second << ',' << std::setprecision(1) << r.elapsed_seconds;
    return os.str();
  }

 private:
  void write() const {
    std::string text = std::string(kCsvHeader) + '\n';
    for (const auto& row : rows_) text += format(row) + '\n';
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(text.data()), text.size());
    io::detail::write_file_atomically(path_, {bytes}, "CsvLog");
  }

  std::filesystem::path path_;
  std::vector<EpochRow> rows_;
};

}  // namespace tessera::train
