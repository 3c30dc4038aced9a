#!/usr/bin/env bash
# Builds target/debian/sinkhole_VERSION_ARCH.deb: the release binary, the man pages and
# shell completions generated from it, then `cargo deb` with the metadata in Cargo.toml.
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked
out=target/dist
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
./target/release/sinkhole man --out "$out/man" >/dev/null
./target/release/sinkhole completions bash > "$out/completions/sinkhole"
./target/release/sinkhole completions zsh > "$out/completions/_sinkhole"
./target/release/sinkhole completions fish > "$out/completions/sinkhole.fish"
cargo deb --no-build --locked --strip "$@"
