#!/bin/sh
# Build gannet's Debian and RPM packages:
#   <target>/packages/gannet_<version>_amd64.deb   (cargo-deb)
#   <target>/packages/gannet-<version>.x86_64.rpm  (cargo-generate-rpm)
# <target> is $CARGO_TARGET_DIR, or target/ in the repository.
# Installs cargo-deb and cargo-generate-rpm with `cargo install` when they
# are missing (about 10 minutes on 2 cores). Prints the two paths.
set -eu

cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
out=$target/packages
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || {
    echo "build.sh: no version in Cargo.toml" >&2
    exit 1
}

need_cargo_tool() {
    if ! cargo "$1" --version >/dev/null 2>&1; then
        echo "build.sh: installing $2 (cargo install --locked)" >&2
        nice -n 15 cargo install --locked "$2"
    fi
}
need_cargo_tool deb cargo-deb@3.8.0
need_cargo_tool generate-rpm cargo-generate-rpm@0.21.1
for tool in strip gzip; do
    command -v "$tool" >/dev/null || {
        echo "build.sh: $tool is missing (apt-get install binutils gzip)" >&2
        exit 1
    }
done

echo "build.sh: cargo build --release" >&2
nice -n 15 cargo build --release --locked --bin gannet

mkdir -p "$out"
rm -f "$out"/gannet_*.deb "$out"/gannet-*.rpm

# cargo-deb strips the binary and gzips the man page; the changelog of a
# native package must be changelog.gz, which cargo-deb cannot name.
mkdir -p "$target/release/deb"
gzip -9nc packaging/debian/changelog >"$target/release/deb/changelog.gz"
deb=$out/gannet_${version}_amd64.deb
cargo deb --no-build --locked --strip --output "$deb" >&2

# cargo-generate-rpm packages files as they are: strip and gzip first.
staging=$target/release/rpm
mkdir -p "$staging"
strip --strip-unneeded -o "$staging/gannet" "$target/release/gannet"
gzip -9nc man/gannet.1 >"$staging/gannet.1.gz"
rpm=$out/gannet-${version}.x86_64.rpm
cargo generate-rpm --output "$rpm" >&2

echo "$deb"
echo "$rpm"
