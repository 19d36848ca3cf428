#!/bin/sh
# Prints the source line of check number N of a program: which-check.sh prog.S N
# (checks are the unindented TEST_* and NEXT_TEST lines, in order).
grep -nE '^(TEST_[A-Z0-9_]+|NEXT_TEST)([[:space:]]|$)' "$1" | sed -n "$2p"
