// write_file_atomically: writes byte chunks to a temporary file beside the destination, flushes it to disk and
// renames it over the destination, so a reader sees either the old file or the complete new one;
// remove_stale_temporaries: clears the temporary files a killed writer left.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "tessera/core/error.hpp"

namespace tessera::io::detail {

// A name in the destination's folder that no other writer is using: "<name>.tmp-<16 hex digits>".
inline std::filesystem::path temporary_path_beside(const std::filesystem::path& destination) {
  std::random_device entropy;
  const uint64_t tag = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(tag));
  std::filesystem::path temporary = destination;
  temporary += ".tmp-";
  temporary += hex;
  return temporary;
}

// Removes what a killed write_file_atomically leaves behind: the files beside `destination` named like
// temporary_path_beside's ("<name>.tmp-" and 16 hex digits), nothing else. Returns the paths removed. Call it only
// where no other process writes `destination` at the same time (a program's start, say).
inline std::vector<std::filesystem::path> remove_stale_temporaries(const std::filesystem::path& destination) {
  namespace fs = std::filesystem;
  std::vector<fs::path> removed;
  if (destination.empty() || !destination.has_filename()) return removed;
  const fs::path folder = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
  const std::string prefix = destination.filename().string() + ".tmp-";
  std::error_code error;  // a folder that cannot be listed, or a file that cannot be removed, is left as it is
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.size() != prefix.size() + 16 || !name.starts_with(prefix)) continue;
    if (name.find_first_not_of("0123456789abcdef", prefix.size()) != std::string::npos) continue;
    std::error_code status_error, remove_error;
    if (!fs::is_regular_file(fs::symlink_status(it->path(), status_error))) continue;
    if (fs::remove(it->path(), remove_error)) removed.push_back(it->path());
  }
  return removed;
}

// Writes the concatenation of `chunks` to `destination`. On any failure the temporary file is removed, the
// destination is left as it was, and tessera::Error names `op`, the destination and the cause.
inline void write_file_atomically(const std::filesystem::path& destination,
                                  const std::vector<std::span<const std::byte>>& chunks, const char* op) {
  namespace fs = std::filesystem;
  const fs::path folder = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
  std::error_code status_error;
  TESSERA_CHECK(fs::is_directory(folder, status_error), op, ": cannot write '", destination.string(), "': folder '",
                folder.string(), "' does not exist");
  TESSERA_CHECK(!fs::is_directory(destination, status_error), op, ": cannot write '", destination.string(),
                "': it is a directory");

  const fs::path temporary = temporary_path_beside(destination);
  // "x": fail rather than reuse a file that appeared under the same name.
  std::FILE* file = std::fopen(temporary.c_str(), "wbx");
  TESSERA_CHECK(file != nullptr, op, ": cannot create temporary file '", temporary.string(), "' to write '",
                destination.string(), "': ", std::strerror(errno));

  std::string failure;
  for (const auto& chunk : chunks) {
    if (chunk.empty()) continue;
    if (std::fwrite(chunk.data(), 1, chunk.size(), file) != chunk.size()) {
      failure = std::string("write failed: ") + std::strerror(errno);
      break;
    }
  }
  if (failure.empty() && std::fflush(file) != 0) failure = std::string("flush failed: ") + std::strerror(errno);
#if defined(__unix__) || defined(__APPLE__)
  if (failure.empty() && ::fsync(::fileno(file)) != 0) failure = std::string("fsync failed: ") + std::strerror(errno);
#endif
  if (std::fclose(file) != 0 && failure.empty()) failure = std::string("close failed: ") + std::strerror(errno);

  if (failure.empty()) {
    std::error_code rename_error;
    fs::rename(temporary, destination, rename_error);
    if (!rename_error) return;
    failure = "rename failed: " + rename_error.message();
  }
  std::error_code remove_error;
  fs::remove(temporary, remove_error);
  ::tessera::detail::fail(op, ": cannot write '", destination.string(), "': ", failure);
}

}  // namespace tessera::io::detail
