// CLI11 validators of the examples whose messages name the bad value.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
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

}  // namespace examples
