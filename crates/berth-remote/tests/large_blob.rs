//! A 64 MiB blob up (8 MiB PATCH chunks) and down through docker-registry with the client's
//! memory bounded: generated and checked piece by piece, never held whole. Alone in its test
//! binary so the process's peak memory is its own.

mod common;

use berth_remote::Credentials;
use std::process::{Command, Stdio};

use berth_spec::Digest;
use bytes::Bytes;
use common::image::pseudo_random;
use common::{client_with_chunks, docker_registry, name, peak_rss};
use futures::StreamExt;

const MIB: usize = 1024 * 1024;
const PIECES: usize = 64;

/// The blob is one random MiB 64 times, so generating it costs nothing.
fn generated(piece: Bytes) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    futures::stream::iter(0..PIECES).map(move |_| Ok(piece.clone()))
}

/// The digest of the blob by coreutils' `sha256sum`: a debug build of sha2 takes seconds for it.
fn sha256sum(piece: &Bytes) -> Digest {
    use std::io::Write;
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..PIECES {
        stdin.write_all(piece).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let hex = String::from_utf8(output.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap()).parse().unwrap()
}

#[tokio::test]
async fn a_64_mib_blob_streams_up_and_down_in_bounded_memory() {
    let test = "a_64_mib_blob_streams_up_and_down_in_bounded_memory";
    if !common::have("sha256sum", test) {
        return;
    }
    let Some(registry) = docker_registry(None, test) else { return };
    let piece = Bytes::from(pseudo_random("large", MIB));
    let digest = sha256sum(&piece);
    let size = (PIECES * MIB) as u64;
    let remote = client_with_chunks(8 * MIB as u64).remote(registry.url.parse().unwrap(), Credentials::Anonymous);
    let repo = name("large/blob");
    remote.ping().await.unwrap();
    let baseline = peak_rss();

    remote.push_blob(&repo, &digest, size, generated(piece), None).await.expect("push 64 MiB");
    assert_eq!(remote.head_blob(&repo, &digest).await.unwrap(), Some(size));

    let mut stream = remote.get_blob(&repo, &digest, None).await.unwrap();
    assert_eq!(stream.content_length(), Some(size));
    // The stream verifies the digest itself: it would end in an error, not cleanly.
    let mut received = 0;
    while let Some(piece) = stream.next().await {
        received += piece.expect("the blob streams and verifies").len() as u64;
    }
    assert_eq!(received, size);

    let growth = peak_rss().saturating_sub(baseline);
    println!("peak memory grew by {} KiB for a 64 MiB blob up and down", growth / 1024);
    assert!(growth < 24 * MIB as u64, "peak memory grew by {} MiB", growth / MIB as u64);
}
