// CLI11 validators of the examples whose messages name the bad value, and the exit status of a usage error.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

namespace examples {

// A check that the value is a number above `low` (or at least `low`), with a message naming the bad value.
inline CLI::Validator above(double low, bool or_equal = false) {
  std::ostringstream bound;
  bound << (or_equal ? ">= " : "> ") << low;
  return CLI::Validator(
      [low, or_equal, text = bound.str()](std::string& value) -> std::string {
        double number = 0.0;
        if (!CLI::detail::lexical_cast(value, number)) return "'" + value + "' is not a number";
        if (or_equal ? number >= low : number > low) return "";
        return "must be " + text + ", got " + value;
      },
      bound.str());
}

// A check that the value is a whole number of at least 1 (CLI11's PositiveNumber prints the range up to DBL_MAX).
inline CLI::Validator positive() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        int64_t number = 0;
        if (!CLI::detail::lexical_cast(value, number)) return "'" + value + "' is not a whole number";
        return number >= 1 ? "" : "must be at least 1, got " + value;
      },
      ">= 1");
}

// A whole number from 0 to 2^64 - 1 in decimal digits, rewritten without leading zeros. Use it with ->transform():
// CLI11 alone would read "-1" as 18446744073709551615 and "010" as octal 8.
inline CLI::Validator unsigned_integer() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        const std::string range = "a whole number from 0 to " + std::to_string(std::numeric_limits<uint64_t>::max());
        uint64_t number = 0;
        const char* end = value.data() + value.size();
        const auto [stop, error] = std::from_chars(value.data(), end, number);
        if (value.empty() || value.front() < '0' || value.front() > '9' || stop != end || error != std::errc())
          return "must be " + range + ", got '" + value + "'";
        value = std::to_string(number);
        return "";
      },
      ">= 0");
}

// The exit status of a command-line usage error (an unknown flag, a missing or bad value), the same in every
// example and documented in docs/training.md: 2, as in most command-line tools. 1 is for errors while running.
inline constexpr int kUsageErrorStatus = 2;

// After CLI::App::parse threw: prints what CLI11 prints (the help for --help, else the error and a hint) and returns
// the exit status: 0 for --help, kUsageErrorStatus for every error (CLI11's own codes are 105, 106, 109...).
inline int usage_exit(const CLI::App& app, const CLI::ParseError& error) {
  return app.exit(error) == 0 ? 0 : kUsageErrorStatus;
}

}  // namespace examples
