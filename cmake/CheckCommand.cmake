# Runs one command and checks its exit code and output; used by ctest for the CLI tests
# (tests/CMakeLists.txt), where add_test alone can only check "exit code is 0". Lists use %%
# as separator because ; would be split by ctest and | is regex alternation.
#
#   cmake -DCOMMAND="prog%%arg1%%arg2"    the command, arguments separated by %%
#         -DEXPECT_EXIT=2                 required exit code
#         [-DSTDOUT_REGEX=...]            regexes (separated by %%) that stdout must each match
#         [-DSTDERR_REGEX=...]            regexes (separated by %%) that stderr must each match
#         [-DSTDERR_LINES=1]              exact number of lines on stderr
#         -P CheckCommand.cmake
string(REPLACE "%%" ";" _command "${COMMAND}")
execute_process(COMMAND ${_command} RESULT_VARIABLE _exit OUTPUT_VARIABLE _stdout
                ERROR_VARIABLE _stderr)
message("$ ${_command}\n--- stdout ---\n${_stdout}--- stderr ---\n${_stderr}--- exit ${_exit}")

set(_failures "")
if(NOT _exit STREQUAL "${EXPECT_EXIT}")
  string(APPEND _failures "exit code ${_exit}, expected ${EXPECT_EXIT}\n")
endif()
foreach(_stream stdout stderr)
  string(TOUPPER ${_stream} _upper)
  if(DEFINED ${_upper}_REGEX)
    string(REPLACE "%%" ";" _regexes "${${_upper}_REGEX}")
    foreach(_regex ${_regexes})
      if(NOT "${_${_stream}}" MATCHES "${_regex}")
        string(APPEND _failures "${_stream} does not match '${_regex}'\n")
      endif()
    endforeach()
  endif()
endforeach()
if(DEFINED STDERR_LINES)
  string(REGEX MATCHALL "\n" _newlines "${_stderr}")
  list(LENGTH _newlines _lines)
  if(NOT _lines EQUAL STDERR_LINES)
    string(APPEND _failures "stderr has ${_lines} lines, expected ${STDERR_LINES}\n")
  endif()
endif()
if(_failures)
  message(FATAL_ERROR "${_failures}")
endif()
