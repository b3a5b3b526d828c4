#!/usr/bin/env bash
# The one entry point: installs what is missing, then runs ringos.
#
#   ./ringos.sh              the main job: the demo, WASI 0.3 components built from
#                            source (tests/guests) run as VMs with `ringos run`
#   ./ringos.sh test         every test: lint, unit, conformance, QEMU end-to-end
#   ./ringos.sh ARGS...      any `ringos` command, e.g. ./ringos.sh boot --machine q35
#
# It installs only what is absent, and says so: QEMU (apt-get, as root or via
# sudo) and the Rust targets x86_64-unknown-none and wasm32-unknown-unknown
# (rustup). Rust itself must be
# there (rustup, https://rustup.rs).
set -euo pipefail
cd "$(dirname "$0")"

say() { echo "ringos.sh: $*" >&2; }

ensure_apt() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
    [ -f /usr/share/qemu/qboot.rom ] || missing+=(qemu-system-data)
    [ ${#missing[@]} -eq 0 ] && return
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { say "need root to run: apt-get install -y ${missing[*]}"; exit 125; }
        sudo=(sudo)
    fi
    say "installing ${missing[*]} with apt-get (QEMU, to boot the ringos image)"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || { say "Rust is missing: install it with rustup (https://rustup.rs), then run this again"; exit 125; }
    local targets
    targets=$(rustup target list --installed 2>/dev/null || true)
    for t in x86_64-unknown-none wasm32-unknown-unknown; do
        if ! grep -qx "$t" <<<"$targets"; then
            say "installing the Rust target $t with rustup (the guest kernel and the guest components are built for them)"
            rustup target add "$t" >&2
        fi
    done
    if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
        say "installing rustfmt and clippy with rustup (the test command checks formatting and lints)"
        rustup component add rustfmt clippy >&2
    fi
}

run_tests() {
    local t0=$SECONDS
    say "1/4 formatting and lints"
    cargo fmt --all -- --check
    cargo clippy -q --workspace --all-targets -- -D warnings
    cargo clippy -q -p ringos-boot -p ringos-kernel --target x86_64-unknown-none -- -D warnings
    # The API docs build without broken or private links.
    RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps --workspace
    RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p ringos-boot -p ringos-kernel --target x86_64-unknown-none
    say "2/4 building the guest kernel and the CLI (release)"
    cargo build -q --profile guest -p ringos-boot --target x86_64-unknown-none
    cargo build -q --release -p ringos
    say "3/4 Wasm spec conformance (hosted JIT): ../shared/conformance/core"
    local corpus=../shared/conformance/core
    [ -d "$corpus" ] || { say "missing $corpus (the conformance corpus lives in shared/ beside this repo)"; exit 1; }
    local wast_status=0
    ./target/release/ringos wast "$corpus"/*.wast > target/conformance-core.log || wast_status=$?
    grep -v ' 0 failed$' target/conformance-core.log || true   # the files with failures
    echo "conformance core: $(tail -n 1 target/conformance-core.log)"
    say "3/4 Component Model conformance (hosted): ../shared/conformance/component-model"
    ./target/release/ringos wast --known-failures tests/conformance/component-model-known-failures.txt \
        ../shared/conformance/component-model/*/*.wast > target/conformance-cm.log || wast_status=$?
    grep -E 'failed, |skipped \(skip|known failure' target/conformance-cm.log | grep -v ' 0 failed' || true
    echo "conformance component-model: $(tail -n 1 target/conformance-cm.log)"
    say "3/4 exception handling (hosted): tests/conformance/exceptions"
    ./target/release/ringos wast tests/conformance/exceptions/{throw,throw_ref,ringos-exceptions,component-exceptions}.wast \
        tests/conformance/exceptions/adapted/try_table.wast > target/conformance-exn.log || wast_status=$?
    grep -v ' 0 failed$' target/conformance-exn.log || true
    echo "conformance exceptions: $(tail -n 1 target/conformance-exn.log)"
    say "3/4 handles in stream/future elements (hosted): tests/conformance/stream-handles"
    ./target/release/ringos wast tests/conformance/stream-handles/*.wast > target/conformance-handles.log || wast_status=$?
    grep -v ' 0 failed$' target/conformance-handles.log || true
    echo "conformance stream handles: $(tail -n 1 target/conformance-handles.log)"
    say "3/4 ringos component tests (hosted): tests/conformance/components"
    ./target/release/ringos wast tests/conformance/components/*.wast > target/conformance-components.log || wast_status=$?
    grep -v ' 0 failed$' target/conformance-components.log || true
    echo "conformance components: $(tail -n 1 target/conformance-components.log)"
    say "3/4 fuzzing the Wasm JIT: .ci/fuzz (${FUZZ_SECONDS:-30} s per target)"
    local fuzz_status=0
    .ci/fuzz || fuzz_status=$?
    say "4/4 unit tests and QEMU end-to-end tests"
    local status=0
    cargo test -q --workspace 2>&1 | tee target/test.log || status=$?
    local passed failed
    # Totals: cargo's test results plus the conformance assertions.
    local logs="target/conformance-core.log target/conformance-cm.log target/conformance-exn.log target/conformance-handles.log target/conformance-components.log"
    passed=$( (grep -oE '[0-9]+ passed' target/test.log; for l in $logs; do tail -n 1 "$l" | grep -oE '[0-9]+ passed'; done) | awk '{s+=$1} END {print s+0}')
    failed=$( (grep -oE '[0-9]+ failed' target/test.log; for l in $logs; do tail -n 1 "$l" | grep -oE '[0-9]+ failed'; done) | awk '{s+=$1} END {print s+0}')
    say "done in $((SECONDS - t0)) s"
    echo "tests: ${passed} passed, ${failed} failed"
    [ "$status" -eq 0 ] && [ "$wast_status" -eq 0 ] && [ "$fuzz_status" -eq 0 ] && [ "$failed" -eq 0 ]
}

ensure_apt
ensure_rust
case "${1:-}" in
    test) run_tests ;;
    "") # The demo: a WASI 0.3 component built from source, run as a VM
        # with a scratch disk for ringos:blk.
        say "building the demo component (tests/guests/demo, wasm32 + componentize)"
        demo=$(cargo run -q --release -p ringos-tests --bin guest -- demo)
        disk=target/demo-disk.img
        rm -f "$disk" && truncate -s 16M "$disk"
        say "ringos run ${demo#"$PWD"/} --disk $disk -v   (kernel lines start with '  | ')"
        cargo run -q --release -p ringos -- run "$demo" --disk "$disk" -v
        say "the disk image, as the host sees it: $(head -c 68 "$disk")"
        say "next: ./ringos.sh run APP.wasm [--disk FILE] [-- ARGS]   (your own component; see README)" ;;
    *) exec cargo run -q --release -p ringos -- "$@" ;;
esac
