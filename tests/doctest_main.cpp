// The test runner's main: doctest's own, so every binary takes --test-case, --list-test-cases,
// --success and the rest.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
