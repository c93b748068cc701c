//! Uploads in MongoDB in the GridFS layout (bucket `uploads`), used with the MongoDB store so every
//! frontend of a cluster reads the same files.
//!
//! Documents are GridFS's: chunks `{_id, files_id, n, data}` of [`CHUNK_BYTES`] each (unique index
//! `{files_id, n}`), and one file document `{_id, length, chunkSize, uploadDate, filename, metadata}`
//! written after the last chunk. The upload id is the file's `_id`; `metadata` holds the rest of the
//! record (`rid`, `userId`, `type`, `uploadedAt`, `sha256`). A file document exists only once every
//! chunk is stored, so a reader never sees half a file; aborting deletes the chunks written so far.
//!
//! Why not the driver's `GridFsBucket`: its collections are `uploads.files` and `uploads.chunks`, and
//! `nx-27017` (the stand-in CI runs) refuses collection names containing a dot, so the bucket cannot
//! work there. This module writes the same documents itself: on a real MongoDB the collections are the
//! GridFS names, so `mongofiles` and other drivers' GridFS read the files; on a server that refuses
//! those names (found by a probe at connect), they are `uploads_files` and `uploads_chunks`.

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, oid::ObjectId, Binary, Bson, DateTime, Document};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use tokio_util::io::StreamReader;

use super::{valid_id, FileReader, FileStore, FileWriter, Meter, NewUpload, Upload};
use crate::ids::{new_id, now_ms, RoomId, UserId};
use crate::{ChatError, Result};

/// The bucket name.
pub const BUCKET: &str = "uploads";
/// Bytes per chunk: GridFS's default (255 KiB), under MongoDB's 16 MiB document limit with room to spare.
pub const CHUNK_BYTES: usize = 255 * 1024;

fn db_err(op: &'static str) -> impl FnOnce(mongodb::error::Error) -> ChatError {
    move |e| ChatError::storage(op, e)
}

/// Uploads in one database, GridFS layout.
#[derive(Clone, Debug)]
pub struct GridFiles {
    files: Collection<Document>,
    chunks: Collection<Document>,
}

impl GridFiles {
    /// Connects to `uri` and uses database `db`.
    pub async fn connect(uri: &str, db: &str) -> Result<GridFiles> {
        let client = Client::with_uri_str(uri).await.map_err(db_err("connect"))?;
        Self::new(&client.database(db)).await
    }

    /// The bucket in an open database: picks the collection names (see the module doc) and creates
    /// the indexes.
    pub async fn new(db: &Database) -> Result<GridFiles> {
        let dotted = format!("{BUCKET}.files");
        let (files, chunks) = match db.create_collection(&dotted).await {
            Ok(()) => (dotted, format!("{BUCKET}.chunks")),
            // 48: NamespaceExists.
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 48) => (dotted, format!("{BUCKET}.chunks")),
            // The server answered but refused the name (nx-27017 answers without an error code).
            Err(e) if matches!(*e.kind, ErrorKind::Command(_) | ErrorKind::InvalidResponse { .. }) => {
                tracing::warn!(error = %e, "the server refuses GridFS collection names; using uploads_files/uploads_chunks");
                (format!("{BUCKET}_files"), format!("{BUCKET}_chunks"))
            }
            Err(e) => return Err(ChatError::storage("create upload collection", e)),
        };
        let store = GridFiles { files: db.collection(&files), chunks: db.collection(&chunks) };
        let unique = IndexOptions::builder().unique(true).build();
        store
            .chunks
            .create_index(IndexModel::builder().keys(doc! { "files_id": 1, "n": 1 }).options(unique).build())
            .await
            .map_err(db_err("create upload chunk index"))?;
        store
            .files
            .create_index(IndexModel::builder().keys(doc! { "filename": 1, "uploadDate": 1 }).build())
            .await
            .map_err(db_err("create upload file index"))?;
        Ok(store)
    }

    async fn record(&self, id: &str) -> Result<Option<Upload>> {
        if !valid_id(id) {
            return Ok(None);
        }
        let doc = self.files.find_one(doc! { "_id": id }).await.map_err(db_err("read upload record"))?;
        Ok(doc.and_then(|d| to_upload(id, &d)))
    }
}

fn as_u64(b: &Bson) -> Option<u64> {
    match b {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        Bson::Double(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
        _ => None,
    }
}

/// The record in a file document.
fn to_upload(id: &str, d: &Document) -> Option<Upload> {
    let meta = d.get_document("metadata").ok()?;
    Some(Upload {
        id: id.to_owned(),
        rid: RoomId::from(meta.get_str("rid").ok()?),
        user_id: UserId::from(meta.get_str("userId").ok()?),
        name: d.get_str("filename").ok()?.to_owned(),
        media_type: meta.get_str("type").ok()?.to_owned(),
        size: as_u64(d.get("length")?)?,
        sha256: meta.get_str("sha256").ok()?.to_owned(),
        uploaded_at: meta.get("uploadedAt").and_then(as_u64).and_then(|n| i64::try_from(n).ok())?,
        store: "gridfs".into(),
    })
}

struct GridWriter {
    store: GridFiles,
    new: NewUpload,
    id: String,
    buf: Vec<u8>,
    n: u32,
    meter: Meter,
    /// Until `finish` or `abort`: chunks may exist that no file document owns.
    open: bool,
}

impl GridWriter {
    async fn flush_chunk(&mut self) -> Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        let chunk = doc! {
            "_id": ObjectId::new(), "files_id": &self.id, "n": self.n,
            "data": Binary { subtype: BinarySubtype::Generic, bytes: data },
        };
        self.chunks().insert_one(chunk).await.map_err(db_err("write upload chunk"))?;
        self.n += 1;
        Ok(())
    }

    fn chunks(&self) -> &Collection<Document> {
        &self.store.chunks
    }

    async fn remove_chunks(&self) {
        if let Err(e) = self.chunks().delete_many(doc! { "files_id": &self.id }).await {
            tracing::warn!(error = %e, id = %self.id, "could not remove the chunks of an unfinished upload");
        }
    }
}

impl Drop for GridWriter {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        // Dropped mid-way (the connection went away): remove the chunks in the background.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (chunks, id) = (self.store.chunks.clone(), self.id.clone());
            rt.spawn(async move {
                let _ = chunks.delete_many(doc! { "files_id": id }).await;
            });
        }
    }
}

#[async_trait]
impl FileWriter for GridWriter {
    async fn write(&mut self, mut chunk: &[u8]) -> Result<()> {
        self.meter.take(chunk)?;
        while !chunk.is_empty() {
            let take = (CHUNK_BYTES - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buf.len() == CHUNK_BYTES {
                self.flush_chunk().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Upload> {
        if !self.buf.is_empty() {
            if let Err(e) = self.flush_chunk().await {
                self.remove_chunks().await;
                self.open = false;
                return Err(e);
            }
        }
        let meter = std::mem::replace(&mut self.meter, Meter::new(0));
        let (size, sha256) = meter.finish();
        let uploaded_at = now_ms();
        let file = doc! {
            "_id": &self.id,
            "length": i64::try_from(size).unwrap_or(i64::MAX),
            "chunkSize": CHUNK_BYTES as i32,
            "uploadDate": DateTime::from_millis(uploaded_at),
            "filename": &self.new.name,
            "metadata": {
                "rid": self.new.rid.as_str(), "userId": self.new.user_id.as_str(), "type": &self.new.media_type,
                "uploadedAt": uploaded_at, "sha256": &sha256,
            },
        };
        let inserted = self.store.files.insert_one(file).await;
        if let Err(e) = inserted {
            self.remove_chunks().await;
            self.open = false;
            return Err(ChatError::storage("write upload record", e));
        }
        self.open = false;
        Ok(Upload {
            id: self.id.clone(),
            rid: self.new.rid.clone(),
            user_id: self.new.user_id.clone(),
            name: self.new.name.clone(),
            media_type: self.new.media_type.clone(),
            size,
            sha256,
            uploaded_at,
            store: "gridfs".into(),
        })
    }

    async fn abort(mut self: Box<Self>) {
        self.remove_chunks().await;
        self.open = false;
    }
}

#[async_trait]
impl FileStore for GridFiles {
    async fn create(&self, new: NewUpload) -> Result<Box<dyn FileWriter>> {
        let meter = Meter::new(new.max_size);
        Ok(Box::new(GridWriter {
            store: self.clone(),
            new,
            id: new_id(),
            buf: Vec::with_capacity(CHUNK_BYTES),
            n: 0,
            meter,
            open: true,
        }))
    }

    async fn get(&self, id: &str) -> Result<Option<Upload>> {
        self.record(id).await
    }

    async fn open(&self, id: &str) -> Result<Option<(Upload, FileReader)>> {
        let Some(upload) = self.record(id).await? else { return Ok(None) };
        let cursor =
            self.chunks.find(doc! { "files_id": id }).sort(doc! { "n": 1 }).await.map_err(db_err("open upload"))?;
        // Chunks must come as 0, 1, 2, … and add up to the recorded length; anything else is an error
        // mid-stream rather than wrong bytes.
        let expected = upload.size;
        let mut next_n = 0i64;
        let mut seen = 0u64;
        let bytes = cursor
            .map_err(std::io::Error::other)
            .and_then(move |d| {
                let n = d.get("n").and_then(as_u64).and_then(|n| i64::try_from(n).ok());
                let data = d.get_binary_generic("data").map(|b| bytes::Bytes::copy_from_slice(b));
                let result = match (n, data) {
                    (Some(n), Ok(data)) if n == next_n && seen + data.len() as u64 <= expected => {
                        next_n += 1;
                        seen += data.len() as u64;
                        Ok(data)
                    }
                    _ => Err(std::io::Error::other("upload chunks are missing or out of order")),
                };
                std::future::ready(result)
            })
            .boxed();
        Ok(Some((upload, Box::new(StreamReader::new(bytes)))))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        if !valid_id(id) {
            return Ok(false);
        }
        // The file document first: from then on the upload is gone for readers.
        let removed = self.files.delete_one(doc! { "_id": id }).await.map_err(db_err("delete upload"))?;
        self.chunks.delete_many(doc! { "files_id": id }).await.map_err(db_err("delete upload chunks"))?;
        Ok(removed.deleted_count > 0)
    }
}
