#!/usr/bin/env bash
# Builds the Debian package `millrace` with cargo-deb (docs/operations.md, "Debian
# package"): channeld, channelctl, channel-agent and channel-bench, the systemd unit,
# /etc/millrace/millrace.conf, man pages and bash/zsh/fish completions generated from the
# binaries themselves, and the maintainer scripts that create the millrace user and
# /var/lib/millrace.
#
#   deploy/debian/build-deb.sh [OUT_DIR]
#
# By default it builds release binaries first. MILLRACE_DEB_BINARIES=DIR packages the
# binaries already in DIR instead (the package test passes its own build's, so CI does
# not compile everything a second time). MILLRACE_DEB_FAST=1 compresses quickly.
# Needs cargo-deb (`cargo install cargo-deb --locked`). Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/../.."
workspace=$PWD
out_dir=${1:-$workspace/target/debian}
target_dir=${CARGO_TARGET_DIR:-$workspace/target}
binaries=(channeld channelctl channel-agent channel-bench)

if [ -n "${MILLRACE_DEB_BINARIES:-}" ]; then
    binary_dir=$MILLRACE_DEB_BINARIES
else
    cargo build --release --bins -p millrace-server -p millrace-tools -p millrace-adapters >&2
    binary_dir=$target_dir/release
fi

# cargo-deb reads the assets from <its target dir>/release/ (server/Cargo.toml,
# [package.metadata.deb]); a staging target dir lets them come from any build.
stage=$(mktemp -d "$target_dir/deb-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/release/cli-docs"
for binary in "${binaries[@]}"; do
    cp "$binary_dir/$binary" "$stage/release/$binary"
    MILLRACE_CLI_DOCS_DIR="$stage/release/cli-docs" "$binary_dir/$binary"
done
gzip -9n "$stage"/release/cli-docs/man/*.1

compression=()
if [ -n "${MILLRACE_DEB_FAST:-}" ]; then
    compression=(--fast)
fi
mkdir -p "$out_dir"
CARGO_TARGET_DIR=$stage cargo deb -p millrace-server --no-build "${compression[@]}" \
    --output "$out_dir" >&2
ls -t "$out_dir"/millrace_*.deb | head -n 1
