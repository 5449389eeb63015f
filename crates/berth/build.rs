//! Hands `link-order.txt` (written by `scripts/link-order`) to the linker, so the code that
//! start-up and an idle server run sits together, followed by the code serving runs, and
//! `berth serve` maps less of the binary, idle or busy. Only where rustc links with its own lld,
//! the default on x86_64 Linux (GNU ld does not know the flag); `BERTH_LINK_ORDER=off` leaves it
//! out for a build with another linker. Where the build machine's glibc is 2.36 or later it also
//! packs the relative relocations (DT_RELR), which makes the binary need glibc 2.36 where it
//! runs; `BERTH_PACK_RELOCS=off` builds one for older systems.

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=BERTH_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=BERTH_PACK_RELOCS");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || std::env::var("BERTH_LINK_ORDER").as_deref() == Ok("off") {
        return;
    }
    // Relative relocations packed (DT_RELR) rather than one 24-byte entry each: start-up reads
    // the table whole, and packed it is ~1/40 the size. Needs glibc 2.36 where the binary runs.
    if glibc_has_relr() && std::env::var("BERTH_PACK_RELOCS").as_deref() != Ok("off") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("link-order.txt");
    if !order.is_file() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    // Names a build lacks (code changed since the file was made) are expected: they are skipped.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether the build machine's C library understands packed relocations (taken to be the one the
/// binary runs with; `BERTH_PACK_RELOCS=off` when it is not).
fn glibc_has_relr() -> bool {
    let Ok(out) = std::process::Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().strip_prefix("glibc ").unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 36)
}
