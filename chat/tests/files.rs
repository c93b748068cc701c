//! The upload stores: bytes in, the same bytes out, the limit enforced mid-stream with nothing left
//! behind. The disk store always runs (temp dir); GridFS runs when `MONGODB_URI` is set (CI starts
//! `nx-27017`), like the conformance suite.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use chat::files::disk::DiskFiles;
use chat::files::gridfs::GridFiles;
use chat::files::{FileStore, NewUpload};
use chat::ids::{RoomId, UserId};
use chat::ChatError;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// Deterministic pseudo-random bytes (xorshift), so files are not trivially compressible or repeated.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_upload(name: &str, max: u64) -> NewUpload {
    NewUpload::new(RoomId::from("room1"), UserId::from("user1"), name, Some("application/pdf"), max).unwrap()
}

async fn put(store: &dyn FileStore, name: &str, data: &[u8], chunk: usize) -> chat::files::Upload {
    let mut w = store.create(new_upload(name, 1 << 30)).await.unwrap();
    for c in data.chunks(chunk) {
        w.write(c).await.unwrap();
    }
    w.finish().await.unwrap()
}

async fn read_all(store: &dyn FileStore, id: &str) -> Vec<u8> {
    let (_, mut r) = store.open(id).await.unwrap().expect("stored");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The round trip every backend must pass: bytes and record back, an unknown id is none, a delete
/// removes it.
async fn round_trip(store: &dyn FileStore) {
    let data = bytes(7, 3 * 1024 * 1024 + 17);
    let up = put(store, "../report.pdf", &data, 64 * 1024 + 3).await;
    assert_eq!(up.name, "report.pdf");
    assert_eq!(up.size, data.len() as u64);
    assert_eq!(up.sha256, hex(&Sha256::digest(&data)));
    assert_eq!(up.media_type, "application/pdf");
    assert_eq!(store.get(&up.id).await.unwrap().unwrap(), up);
    let back = read_all(store, &up.id).await;
    assert!(back == data, "bytes differ");
    assert!(store.get("NoSuchUpload00000").await.unwrap().is_none());
    assert!(store.get("../../etc/passwd").await.unwrap().is_none());
    assert!(store.delete(&up.id).await.unwrap());
    assert!(store.get(&up.id).await.unwrap().is_none());
    assert!(store.open(&up.id).await.unwrap().is_none());
}

/// Passing the limit refuses the chunk; abort leaves no record. The limit is above one GridFS chunk,
/// so chunks are stored before the refusal.
async fn over_the_limit(store: &dyn FileStore) {
    let mut w = store.create(new_upload("big.bin", 600_000)).await.unwrap();
    let data = bytes(3, 900_000);
    let mut refused = None;
    for c in data.chunks(30_000) {
        if let Err(e) = w.write(c).await {
            refused = Some(e);
            break;
        }
    }
    assert!(matches!(refused, Some(ChatError::TooLong { field: "file", limit: 600_000, .. })), "{refused:?}");
    w.abort().await;
}

#[tokio::test]
async fn disk_files_round_trip_and_share_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskFiles::open(dir.path()).await.unwrap();
    round_trip(&store).await;
    assert!(files_under(dir.path()).is_empty(), "delete left {:?}", files_under(dir.path()));

    // Two uploads of the same bytes share one blob; it goes with the last of them.
    let data = bytes(11, 200_000);
    let a = put(&store, "a.bin", &data, 10_000).await;
    let b = put(&store, "b.bin", &data, 7_000).await;
    assert_ne!(a.id, b.id);
    let blobs = files_under(&dir.path().join("blobs"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert!(store.delete(&a.id).await.unwrap());
    assert!(read_all(&store, &b.id).await == data, "the other upload keeps its bytes");
    assert!(store.delete(&b.id).await.unwrap());
    assert!(files_under(dir.path()).is_empty(), "left {:?}", files_under(dir.path()));
}

#[tokio::test]
async fn a_disk_upload_over_the_limit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskFiles::open(dir.path()).await.unwrap();
    over_the_limit(&store).await;
    assert!(files_under(dir.path()).is_empty(), "left {:?}", files_under(dir.path()));
    // A writer dropped mid-way (connection lost) removes its temp file too.
    let mut w = store.create(new_upload("x.bin", 1000)).await.unwrap();
    w.write(b"partial").await.unwrap();
    drop(w);
    assert!(files_under(dir.path()).is_empty(), "left {:?}", files_under(dir.path()));
}

/// `None` (and a printed note) when `MONGODB_URI` is not set.
async fn gridfs() -> Option<(GridFiles, mongodb::Database)> {
    let Ok(uri) = std::env::var("MONGODB_URI") else {
        eprintln!("note: MONGODB_URI is not set; skipping the GridFS test");
        return None;
    };
    let name = format!("chat_files_{}", chat::ids::new_id());
    let client = mongodb::Client::with_uri_str(&uri).await.expect("connect to MONGODB_URI");
    let db = client.database(&name);
    Some((GridFiles::new(&db).await.expect("GridFS collections"), db))
}

/// Documents in the bucket's collection `kind` (`files` or `chunks`), whichever naming the server took.
async fn count(db: &mongodb::Database, kind: &str) -> u64 {
    let names = db.list_collection_names().await.unwrap();
    let name = names
        .iter()
        .find(|n| **n == format!("uploads.{kind}") || **n == format!("uploads_{kind}"))
        .unwrap_or_else(|| panic!("no uploads {kind} collection in {names:?}"));
    db.collection::<mongodb::bson::Document>(name).count_documents(mongodb::bson::doc! {}).await.unwrap()
}

#[tokio::test]
async fn gridfs_files_round_trip() {
    let Some((store, db)) = gridfs().await else { return };
    round_trip(&store).await;
    assert_eq!(count(&db, "chunks").await, 0, "delete removes the chunks");
}

#[tokio::test]
async fn a_gridfs_upload_over_the_limit_leaves_nothing_behind() {
    let Some((store, db)) = gridfs().await else { return };
    over_the_limit(&store).await;
    assert_eq!(count(&db, "chunks").await, 0, "abort removes the chunks");
    assert_eq!(count(&db, "files").await, 0);
}
