// Includes all of tessera and nothing else: must compile warning-free under -Wall -Wextra -Werror.
#include <tessera/tessera.hpp>

int main() { return 0; }
