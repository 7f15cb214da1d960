#!/usr/bin/env bash
# Prints the first docker CLI on PATH that builds with BuildKit: one with the buildx plugin, or Debian's
# docker.io (20.10-22.x), whose CLI has BuildKit built in. A newer CLI without buildx (installed elsewhere,
# e.g. /usr/local/bin) would otherwise shadow docker.io's and fail every build. Prints "docker" if none does.
for d in $(which -a docker 2>/dev/null); do
    "$d" buildx version >/dev/null 2>&1 && { echo "$d"; exit 0; }
    case "$("$d" version -f '{{.Client.Version}}' 2>/dev/null)" in
        1[0-9].* | 2[0-2].*) echo "$d"; exit 0 ;;
    esac
done
echo docker
