// Stand-in found before the real nlohmann/json.hpp: tessera::core's headers must not need it (tests/package/poison).
#error "a header that tessera::core covers includes <nlohmann/json.hpp>, which only tessera::tessera provides"
