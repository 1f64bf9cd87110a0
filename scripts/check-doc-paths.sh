#!/usr/bin/env bash
# Checks that every repository path named in the docs and in code comments exists, and that
# no doc or comment cites an issue number or a path outside the repository. Exit 0 when all
# is well, 1 with one line per problem otherwise ("FILE:LINE: PATH does not exist").
#
#   scripts/check-doc-paths.sh [ROOT]      (default: the repository this script is in)
#
# What it reads: the Markdown files (all of their text), and the comments of the sources,
# CMake files and scripts (after `//` in C++/CUDA, after `#` elsewhere) of every file git
# tracks. A path is a token that starts with one of the repository's top-level folders
# (core/, autograd/, cuda/, nn/, memory/, optim/, train/, tests/, bench/, configs/, docs/,
# scripts/, cmake/, .ci/) or is a root file (README.md, CMakeLists.txt), preceded by the start
# of a line, a space, a bracket, a quote or a backtick. Globs (rules_*.cpp) must match at
# least one file; braces (text_step.{h,cpp}) are expanded; tokens with placeholders
# (<family>, FOLDER, step-XXXXXXXX) are skipped. scripts/test.sh runs it first, so CI fails on a stale path.
set -uo pipefail

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root" || exit 2

roots='core|autograd|cuda|nn|memory|optim|train|tests|bench|configs|docs|scripts|cmake|\.ci'
token_re="(^|[[:space:]\`'\"(\\[])((${roots})/[A-Za-z0-9_.*/{},+<>-]*|README\.md|CMakeLists\.txt)"

# The text worth checking in one file: all of a Markdown file, the comments of the rest.
comments_of() {
  case "$1" in
    *.md) cat -- "$1" ;;
    *.h | *.hpp | *.cpp | *.cc | *.cu | *.cuh)
      # Text after // (not inside a string such as "http://"): good enough for this tree.
      sed -n 's@^\([^"]*\)//\(.*\)$@\2@p; t; s@.*@@p' -- "$1" ;;
    *.sh | *.py | *.cmake | *CMakeLists.txt | *.in | run)
      sed -n 's@^[^"#]*#\(.*\)$@\1@p; t; s@.*@@p' -- "$1" ;;
    *) ;;
  esac
}

exists() {
  local path=$1
  # Placeholders are not paths: <family>, FOLDER, step-XXXXXXXX.
  [[ "$path" == *'<'* || "$path" =~ (^|/|-)[A-Z_]{3,}(/|\.|$) ]] && return 0
  local expanded
  if [[ "$path" == *'{'*'}'* ]]; then
    # shellcheck disable=SC2086
    expanded=$(eval "printf '%s\n' $path" 2>/dev/null) || return 1
  else
    expanded=$path
  fi
  while IFS= read -r p; do
    [[ -z "$p" ]] && continue
    if [[ "$p" == *'*'* ]]; then
      compgen -G "$p" >/dev/null || return 1
    else
      [[ -e "$p" ]] || return 1
    fi
  done <<<"$expanded"
  return 0
}

problems=0
while IFS= read -r file; do
  [[ -f "$file" ]] || continue
  lineno=0
  while IFS= read -r line; do
    lineno=$((lineno + 1))
    [[ -z "$line" ]] && continue
    if [[ "$line" =~ [Ii]ssue\ ?#?[0-9]+ ]]; then
      echo "$file:$lineno: cites an issue number (${BASH_REMATCH[0]}): say what the thing is"
      problems=$((problems + 1))
    fi
    if [[ "$line" == *'shared/notes'* || "$line" == *'../shared/'* || "$line" == *'/work/'* ||
          "$line" =~ (^|[^/a-z])(DESIGN|STYLE|GPU)\.md ]]; then
      echo "$file:$lineno: names a path outside the repository"
      problems=$((problems + 1))
    fi
    rest=$line
    while [[ "$rest" =~ $token_re ]]; do
      token=${BASH_REMATCH[2]}
      rest=${rest#*"${BASH_REMATCH[0]}"}
      # Trailing punctuation of the sentence, and a trailing slash of a folder.
      while [[ "$token" =~ [.,:\;]$ ]]; do token=${token%?}; done
      token=${token%/}
      [[ -z "$token" ]] && continue
      if ! exists "$token"; then
        echo "$file:$lineno: $token does not exist"
        problems=$((problems + 1))
      fi
    done
  done < <(comments_of "$file")
done < <(git ls-files)

if ((problems > 0)); then
  echo "check-doc-paths: $problems problem(s)"
  exit 1
fi
echo "check-doc-paths: every path named in docs and comments exists"
