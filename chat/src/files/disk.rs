//! Uploads in a directory (the default, beside the SQLite database):
//!
//! ```text
//! <root>/tmp/<random>            bytes of an upload in progress
//! <root>/blobs/<ab>/<sha256>     content-addressed bytes (identical files are kept once)
//! <root>/files/<id>              a hard link to the blob, one per upload
//! <root>/records/<id>.json       the record, written last (temp file, then rename)
//! ```
//!
//! Bytes go to a temp file while they are hashed; once complete the temp file is renamed to its
//! content address (or dropped if that content is already there) and linked under the upload's id.
//! The record is written last, so its presence means the bytes are complete; a crash earlier leaves
//! only a temp file or an unreferenced link, never a visible half file. The hard links count the
//! uploads sharing a blob: deleting an upload removes its link, and the blob once no upload is left.
//! If a blob is replaced while another upload still links the old one (two identical uploads racing
//! a delete), both keep valid bytes; only the sharing is lost.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{valid_id, FileReader, FileStore, FileWriter, Meter, NewUpload, Upload};
use crate::ids::{new_id, now_ms};
use crate::{ChatError, Result};

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> ChatError {
    move |e| ChatError::storage(op, e)
}

/// Uploads under one directory.
#[derive(Debug)]
pub struct DiskFiles {
    root: PathBuf,
}

impl DiskFiles {
    /// Opens (creating if needed) the directory tree under `root`, and clears temp files a crash left.
    pub async fn open(root: &Path) -> Result<DiskFiles> {
        for sub in ["tmp", "blobs", "files", "records"] {
            tokio::fs::create_dir_all(root.join(sub)).await.map_err(io("create upload directory"))?;
        }
        // A temp file is only ever written by a live writer of this process.
        let mut tmp = tokio::fs::read_dir(root.join("tmp")).await.map_err(io("list upload temp files"))?;
        while let Ok(Some(entry)) = tmp.next_entry().await {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
        Ok(DiskFiles { root: root.to_path_buf() })
    }

    /// The directory this store writes to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(&sha256[..2]).join(sha256)
    }

    fn link_path(&self, id: &str) -> PathBuf {
        self.root.join("files").join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("records").join(format!("{id}.json"))
    }

    async fn read_record(&self, id: &str) -> Result<Option<Upload>> {
        if !valid_id(id) {
            return Ok(None);
        }
        match tokio::fs::read(self.record_path(id)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io_json),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ChatError::storage("read upload record", e)),
        }
    }

    /// Links `tmp` (complete, hashed) under `id`, through its content address.
    async fn place(&self, tmp: &Path, sha256: &str, id: &str) -> Result<()> {
        let blob = self.blob_path(sha256);
        let link = self.link_path(id);
        if tokio::fs::hard_link(&blob, &link).await.is_ok() {
            let _ = tokio::fs::remove_file(tmp).await;
            return Ok(());
        }
        if let Some(dir) = blob.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io("create blob directory"))?;
        }
        tokio::fs::rename(tmp, &blob).await.map_err(io("store upload"))?;
        tokio::fs::hard_link(&blob, &link).await.map_err(io("link upload"))
    }
}

fn io_json(e: serde_json::Error) -> ChatError {
    ChatError::storage("decode upload record", e)
}

struct DiskWriter {
    store: DiskFiles,
    new: NewUpload,
    id: String,
    /// The temp file, until it is placed or removed.
    tmp: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    meter: Meter,
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[async_trait]
impl FileWriter for DiskWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.meter.take(chunk)?;
        let file = self.file.as_mut().ok_or(ChatError::Unavailable)?;
        file.write_all(chunk).await.map_err(io("write upload"))
    }

    async fn finish(mut self: Box<Self>) -> Result<Upload> {
        let mut file = self.file.take().ok_or(ChatError::Unavailable)?;
        file.flush().await.map_err(io("write upload"))?;
        file.sync_all().await.map_err(io("sync upload"))?;
        drop(file);
        let meter = std::mem::replace(&mut self.meter, Meter::new(0));
        let (size, sha256) = meter.finish();
        let tmp = self.tmp.clone().ok_or(ChatError::Unavailable)?;
        self.store.place(&tmp, &sha256, &self.id).await?;
        self.tmp = None;
        let upload = Upload {
            id: self.id.clone(),
            rid: self.new.rid.clone(),
            user_id: self.new.user_id.clone(),
            name: self.new.name.clone(),
            media_type: self.new.media_type.clone(),
            size,
            sha256,
            uploaded_at: now_ms(),
            store: "fs".into(),
        };
        let json = serde_json::to_vec(&upload).map_err(io_json)?;
        let record_tmp = self.store.root.join("tmp").join(format!("{}.json", self.id));
        let written = async {
            tokio::fs::write(&record_tmp, &json).await?;
            tokio::fs::rename(&record_tmp, self.store.record_path(&self.id)).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&record_tmp).await;
            let _ = self.store.delete(&self.id).await;
            return Err(ChatError::storage("write upload record", e));
        }
        Ok(upload)
    }

    async fn abort(mut self: Box<Self>) {
        self.file = None;
        if let Some(tmp) = self.tmp.take() {
            let _ = tokio::fs::remove_file(tmp).await;
        }
    }
}

#[async_trait]
impl FileStore for DiskFiles {
    async fn create(&self, new: NewUpload) -> Result<Box<dyn FileWriter>> {
        let id = new_id();
        let tmp = self.root.join("tmp").join(&id);
        let file = tokio::fs::File::create(&tmp).await.map_err(io("create upload"))?;
        let meter = Meter::new(new.max_size);
        Ok(Box::new(DiskWriter {
            store: DiskFiles { root: self.root.clone() },
            new,
            id,
            tmp: Some(tmp),
            file: Some(file),
            meter,
        }))
    }

    async fn get(&self, id: &str) -> Result<Option<Upload>> {
        self.read_record(id).await
    }

    async fn open(&self, id: &str) -> Result<Option<(Upload, FileReader)>> {
        let Some(upload) = self.read_record(id).await? else { return Ok(None) };
        match tokio::fs::File::open(self.link_path(id)).await {
            Ok(f) => Ok(Some((upload, Box::new(f)))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ChatError::storage("open upload", e)),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        if !valid_id(id) {
            return Ok(false);
        }
        let record = self.read_record(id).await?;
        let removed = match tokio::fs::remove_file(self.record_path(id)).await {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(ChatError::storage("delete upload record", e)),
        };
        let link = self.link_path(id);
        let linked = tokio::fs::metadata(&link).await.ok();
        let _ = tokio::fs::remove_file(&link).await;
        // The blob goes with its last link (a blob whose links are all gone has a link count of 1).
        let sha = record.map(|r| r.sha256).filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        if let (Some(sha), Some(meta)) = (sha, linked) {
            let blob = self.blob_path(&sha);
            if let Ok(b) = tokio::fs::metadata(&blob).await {
                if b.ino() == meta.ino() && b.nlink() <= 1 {
                    let _ = tokio::fs::remove_file(&blob).await;
                }
            }
        }
        Ok(removed)
    }
}
