# Registers every doctest case of a test binary as its own ctest test, so that
# `ctest -R "gradcheck: rms_norm"` runs exactly that case (tests/CMakeLists.txt).
#
# Why not doctest's own doctest_discover_tests: its script splits the case list with CMake
# list semantics, so a case name with "[" (e.g. "randint covers [lo, hi)") or ";" corrupts
# the generated file and ctest then runs nothing at all. Here the names are escaped before
# any list operation and written as bracket arguments.
#
# Two halves, like CMake's gtest_discover_tests:
#   mnemo_doctest_cases(TARGET)  at configure time: after each build of TARGET, run this
#                                file as a script to list its cases into a ctest file.
#   cmake -P DoctestCases.cmake  at build time (EXECUTABLE, WORKING_DIR, CTEST_FILE set):
#                                run `EXECUTABLE --list-test-cases`, write add_test lines.
#
# A case that cannot run here exits 77 (tests/support/skip.h, tests/doctest_main.cpp), which
# SKIP_RETURN_CODE makes ctest report as "Skipped". Cases carrying doctest's skip decorator
# are listed too (--no-skip), so that they show up as skipped rather than not at all.

if(CMAKE_SCRIPT_MODE_FILE)
  execute_process(COMMAND "${EXECUTABLE}" --list-test-cases --no-skip=true --no-version=true
                  OUTPUT_VARIABLE listing RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${EXECUTABLE} --list-test-cases failed (${status}):\n${listing}")
  endif()
  # Escape the characters CMake lists treat specially, then split into lines.
  string(REPLACE "[" "<mnemo-lb>" listing "${listing}")
  string(REPLACE "]" "<mnemo-rb>" listing "${listing}")
  string(REPLACE ";" "<mnemo-sc>" listing "${listing}")
  string(REPLACE "\n" ";" lines "${listing}")
  set(script "")
  foreach(line IN LISTS lines)
    if(line STREQUAL "" OR line MATCHES "^=+$" OR line MATCHES "^<mnemo-lb>doctest<mnemo-rb> ")
      continue()
    endif()
    string(REPLACE "<mnemo-lb>" "[" name "${line}")
    string(REPLACE "<mnemo-rb>" "]" name "${name}")
    string(REPLACE "<mnemo-sc>" ";" name "${name}")
    string(REPLACE "," "\\," filter "${name}")  # doctest splits filters at commas
    string(APPEND script
           "add_test([==[${name}]==] [==[${EXECUTABLE}]==] [==[--test-case=${filter}]==])\n"
           "set_tests_properties([==[${name}]==] PROPERTIES WORKING_DIRECTORY "
           "[==[${WORKING_DIR}]==] SKIP_RETURN_CODE 77)\n")
  endforeach()
  file(WRITE "${CTEST_FILE}" "${script}")
  return()
endif()

function(mnemo_doctest_cases target)
  set(cases_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_cases.cmake")
  set(include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_include.cmake")
  add_custom_command(
    TARGET ${target} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -D EXECUTABLE=$<TARGET_FILE:${target}>
            -D WORKING_DIR=${CMAKE_CURRENT_BINARY_DIR} -D CTEST_FILE=${cases_file}
            -P ${CMAKE_CURRENT_FUNCTION_LIST_FILE}
    BYPRODUCTS ${cases_file}
    VERBATIM)
  # ctest reads this; before the first successful build there is no case list yet.
  file(WRITE ${include_file}
       "if(EXISTS \"${cases_file}\")\n"
       "  include(\"${cases_file}\")\n"
       "else()\n"
       "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
       "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${include_file})
endfunction()
