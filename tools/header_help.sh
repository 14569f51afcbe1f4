# shellcheck shell=bash
# Sourced, not run, by the shell tools whose --help is their header comment. gpu_check.sh
# keeps its own copy of the line: it travels alone in the GPU bundle.

# header_help SCRIPT: SCRIPT's header comment (from line 2 to the first line that is not a
# comment), without the leading "# ".
header_help() {
  sed -n '2,/^[^#]/{/^#/p}' "$1" | sed 's/^# \{0,1\}//'
}
