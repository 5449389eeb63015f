//! Behaviour every [`BlobStore`] backend must show; each backend's tests call [`run_all`].

use std::io;

use berth_spec::{Algorithm, Digest, Digester};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use crate::{BlobStore, ByteStream, StoreError};

fn body(chunks: &[&[u8]]) -> ByteStream {
    let owned: Vec<io::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(owned).boxed()
}

async fn collect(s: ByteStream) -> Vec<u8> {
    s.try_fold(Vec::new(), |mut acc, c| async move {
        acc.extend_from_slice(&c);
        Ok(acc)
    })
    .await
    .unwrap()
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub async fn run_all(store: &dyn BlobStore) {
    chunked_upload_commit_and_read(store).await;
    append_is_all_or_nothing(store).await;
    offsets_are_enforced(store).await;
    ranges(store).await;
    large_blobs_read_back_whole(store).await;
    missing_things(store).await;
    commit_of_existing_blob_is_idempotent(store).await;
    listing_finds_committed_blobs(store).await;
}

async fn chunked_upload_commit_and_read(store: &dyn BlobStore) {
    let id = unique("up");
    store.create_upload(&id).await.unwrap();
    assert_eq!(store.upload_len(&id).await.unwrap(), Some(0));
    let mut hasher = Digester::new(Algorithm::Sha256);
    let n = store.append(&id, 0, body(&[b"hello ", b"wor"]), &mut |c| hasher.update(c)).await.unwrap();
    assert_eq!(n, 9);
    let n = store.append(&id, 9, body(&[b"ld"]), &mut |c| hasher.update(c)).await.unwrap();
    assert_eq!(n, 11);
    let digest = hasher.finish();
    assert_eq!(digest, Digest::sha256_of(b"hello world"));
    assert_eq!(collect(store.read_upload(&id).await.unwrap()).await, b"hello world");
    assert_eq!(store.stat(&digest).await.unwrap(), None, "not visible before commit");
    store.commit(&id, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
    assert_eq!(store.upload_len(&id).await.unwrap(), None, "upload is consumed by commit");
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, b"hello world");
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    store.delete(&digest).await.unwrap();
}

async fn append_is_all_or_nothing(store: &dyn BlobStore) {
    let id = unique("broken");
    store.create_upload(&id).await.unwrap();
    store.append(&id, 0, body(&[b"abc"]), &mut |_| {}).await.unwrap();
    let failing: ByteStream =
        stream::iter(vec![Ok(Bytes::from_static(b"def")), Err(io::Error::other("client went away"))]).boxed();
    let err = store.append(&id, 3, failing, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, StoreError::Body(_)), "{err:?}");
    assert_eq!(store.upload_len(&id).await.unwrap(), Some(3));

    // A body that fails after far more than any write buffer: what was written is cut back too.
    let piece = Bytes::from(vec![7u8; 100_000]);
    let mut pieces: Vec<io::Result<Bytes>> = (0..12).map(|_| Ok(piece.clone())).collect();
    pieces.push(Err(io::Error::other("client went away")));
    let err = store.append(&id, 3, stream::iter(pieces).boxed(), &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, StoreError::Body(_)), "{err:?}");
    assert_eq!(store.upload_len(&id).await.unwrap(), Some(3));
    assert_eq!(collect(store.read_upload(&id).await.unwrap()).await, b"abc");

    // And a large body of odd-sized chunks arrives whole and in order.
    let chunks: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; 33_333 + usize::from(i)])).collect();
    let expected: Vec<u8> = b"abc".iter().copied().chain(chunks.iter().flat_map(|c| c.iter().copied())).collect();
    let mut seen = 3u64;
    let body: ByteStream = stream::iter(chunks.into_iter().map(Ok)).boxed();
    let len = store.append(&id, 3, body, &mut |c| seen += c.len() as u64).await.unwrap();
    assert_eq!((len, seen), (expected.len() as u64, expected.len() as u64));
    assert_eq!(collect(store.read_upload(&id).await.unwrap()).await, expected);
    store.abort(&id).await.unwrap();
    assert_eq!(store.upload_len(&id).await.unwrap(), None);
    store.abort(&id).await.unwrap();
}

async fn offsets_are_enforced(store: &dyn BlobStore) {
    let id = unique("offset");
    store.create_upload(&id).await.unwrap();
    store.append(&id, 0, body(&[b"abc"]), &mut |_| {}).await.unwrap();
    let err = store.append(&id, 5, body(&[b"x"]), &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, StoreError::OffsetMismatch { current: 3 }), "{err:?}");
    assert_eq!(store.upload_len(&id).await.unwrap(), Some(3));
    store.abort(&id).await.unwrap();
}

async fn ranges(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let id = unique("range");
    store.create_upload(&id).await.unwrap();
    store.append(&id, 0, body(&[&data]), &mut |_| {}).await.unwrap();
    store.commit(&id, &digest).await.unwrap();
    assert_eq!(collect(store.read(&digest, Some(10..20)).await.unwrap()).await, &data[10..20]);
    assert_eq!(collect(store.read(&digest, Some(990..1000)).await.unwrap()).await, &data[990..]);
    assert!(matches!(store.read(&digest, Some(10..2000)).await, Err(StoreError::RangeNotSatisfiable { size: 1000 })));
    store.delete(&digest).await.unwrap();
}

/// Megabytes in odd-sized chunks over two appends, the second at an offset no block boundary
/// falls on: every read of the blob, whole or in part, first or later, gives the same bytes.
async fn large_blobs_read_back_whole(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..3_500_333u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let id = unique("large");
    store.create_upload(&id).await.unwrap();
    let split = 1_500_001;
    for (offset, part, chunk) in [(0, &data[..split], 7_919), (split, &data[split..], 65_536)] {
        let chunks: Vec<io::Result<Bytes>> = part.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let len = store.append(&id, offset as u64, stream::iter(chunks).boxed(), &mut |_| {}).await.unwrap();
        assert_eq!(len, (offset + part.len()) as u64);
    }
    assert_eq!(collect(store.read_upload(&id).await.unwrap()).await, data);
    store.commit(&id, &digest).await.unwrap();
    for range in [Some(5_000..3_000_000), None, None, Some(1_048_576..3_500_333), Some(3_499_000..3_500_333)] {
        let expected = range.clone().map_or(&data[..], |r| &data[r.start as usize..r.end as usize]);
        let read = collect(store.read(&digest, range.clone()).await.unwrap()).await;
        assert!(read == expected, "the bytes of {range:?} read back as they were written");
    }
    store.delete(&digest).await.unwrap();
}

async fn missing_things(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"never stored");
    assert!(matches!(store.read(&digest, None).await, Err(StoreError::BlobNotFound(_))));
    assert!(matches!(store.append("nope", 0, body(&[b"x"]), &mut |_| {}).await, Err(StoreError::UploadNotFound(_))));
    assert!(matches!(store.commit("nope", &digest).await, Err(StoreError::UploadNotFound(_))));
    assert!(store.upload_len("../../etc").await.is_err(), "path tricks in upload ids are refused");
}

async fn commit_of_existing_blob_is_idempotent(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"same");
    for _ in 0..2 {
        let id = unique("dup");
        store.create_upload(&id).await.unwrap();
        store.append(&id, 0, body(&[b"same"]), &mut |_| {}).await.unwrap();
        store.commit(&id, &digest).await.unwrap();
        assert_eq!(store.upload_len(&id).await.unwrap(), None);
    }
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, b"same");
    store.delete(&digest).await.unwrap();
}

async fn listing_finds_committed_blobs(store: &dyn BlobStore) {
    let contents = [unique("listed-a"), unique("listed-bb")];
    let mut digests = Vec::new();
    for content in &contents {
        let digest = Digest::sha256_of(content.as_bytes());
        let id = unique("list");
        store.create_upload(&id).await.unwrap();
        store.append(&id, 0, body(&[content.as_bytes()]), &mut |_| {}).await.unwrap();
        store.commit(&id, &digest).await.unwrap();
        digests.push(digest);
    }
    let staged = unique("staged-only");
    store.create_upload(&staged).await.unwrap();
    store.append(&staged, 0, body(&[staged.as_bytes()]), &mut |_| {}).await.unwrap();

    let listed: Vec<(Digest, u64)> = store.list_blobs().try_collect().await.unwrap();
    for (digest, content) in digests.iter().zip(&contents) {
        assert!(listed.contains(&(digest.clone(), content.len() as u64)), "{digest} is listed with its size");
    }
    assert!(!listed.iter().any(|(d, _)| *d == Digest::sha256_of(staged.as_bytes())), "uploads are not blobs");

    store.delete(&digests[0]).await.unwrap();
    let listed: Vec<(Digest, u64)> = store.list_blobs().try_collect().await.unwrap();
    assert!(!listed.iter().any(|(d, _)| *d == digests[0]), "deleted blobs are not listed");
    assert!(listed.iter().any(|(d, _)| *d == digests[1]));
    store.delete(&digests[1]).await.unwrap();
    store.abort(&staged).await.unwrap();
}
