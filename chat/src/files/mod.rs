//! Uploaded files (§1.9): their bytes and their record, behind one [`FileStore`] trait with two
//! backends, [`disk`] (content-addressed files beside the SQLite database, the default) and [`gridfs`]
//! (MongoDB's GridFS, used with the MongoDB store so every frontend of a cluster sees the same files).
//!
//! Bytes are pushed through a [`FileWriter`] chunk by chunk as they arrive from the network, so a file
//! is never held in memory whatever its size. The writer counts and hashes (SHA-256) what passes; past
//! the size limit it refuses the chunk, and `abort` removes everything written so far. A record becomes
//! visible only once its bytes are complete (`finish`), so a reader never sees half a file.
//!
//! The record lives with the bytes (a JSON file beside them, or the GridFS file document's
//! `metadata`), which keeps the [`crate::store::Store`] trait unchanged; who may read or write a file
//! is decided by the caller from the record's `rid` (room membership), never here.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{Millis, RoomId, UserId};
use crate::settings::Settings;
use crate::{ChatError, Result};

pub mod disk;
pub mod gridfs;

/// Longest file name kept (bytes); longer names are cut at a character boundary.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest media type accepted.
pub const MAX_MEDIA_TYPE_BYTES: usize = 127;
/// Media type of a file whose type the client did not say.
pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// A stored upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    pub id: String,
    pub rid: RoomId,
    pub user_id: UserId,
    pub name: String,
    /// Media type (lower-case, no parameters).
    #[serde(rename = "type")]
    pub media_type: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub uploaded_at: Millis,
    /// Backend: `fs` or `gridfs`.
    pub store: String,
}

/// What an upload is before its bytes arrive.
#[derive(Clone, Debug)]
pub struct NewUpload {
    pub rid: RoomId,
    pub user_id: UserId,
    pub name: String,
    pub media_type: String,
    /// Refuse the bytes past this many (`FileUpload_MaxFileSize`).
    pub max_size: u64,
}

impl NewUpload {
    /// A new upload with its name and media type cleaned up (see [`clean_name`], [`clean_media_type`]).
    pub fn new(rid: RoomId, user_id: UserId, name: &str, media_type: Option<&str>, max_size: u64) -> Result<Self> {
        let media_type = clean_media_type(media_type)?;
        Ok(NewUpload { rid, user_id, name: clean_name(name), media_type, max_size })
    }
}

/// The bytes of a stored file, read in order.
pub type FileReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Receives an upload's bytes. Call exactly one of `finish` and `abort`; a writer dropped without
/// either removes what it wrote as far as it can without waiting (disk: at once; GridFS: in the
/// background, by the driver).
#[async_trait]
pub trait FileWriter: Send {
    /// Appends a chunk; `TooLong { field: "file" }` once the total passes the limit (nothing of the
    /// chunk is kept, and the writer must then be aborted).
    async fn write(&mut self, chunk: &[u8]) -> Result<()>;
    /// Makes the file and its record durable and visible.
    async fn finish(self: Box<Self>) -> Result<Upload>;
    /// Removes everything written.
    async fn abort(self: Box<Self>);
}

/// Where uploads are kept.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Starts an upload with a fresh id.
    async fn create(&self, new: NewUpload) -> Result<Box<dyn FileWriter>>;
    /// A complete upload's record.
    async fn get(&self, id: &str) -> Result<Option<Upload>>;
    /// A complete upload's record and bytes.
    async fn open(&self, id: &str) -> Result<Option<(Upload, FileReader)>>;
    /// Removes an upload (record and bytes); false if there was none.
    async fn delete(&self, id: &str) -> Result<bool>;
}

/// Opens the file store that goes with a chat store URL: for `sqlite:<path>`, the directory `uploads`
/// beside the database file; for `mongodb://…`, the GridFS bucket `uploads` of the same database.
/// `dir` overrides both with a directory.
pub async fn open(store_url: &str, dir: Option<&std::path::Path>) -> Result<std::sync::Arc<dyn FileStore>> {
    if let Some(dir) = dir {
        return Ok(std::sync::Arc::new(disk::DiskFiles::open(dir).await?));
    }
    if let Some(path) = store_url.strip_prefix("sqlite:") {
        let path = std::path::Path::new(path.strip_prefix("//").unwrap_or(path));
        let parent = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        return Ok(std::sync::Arc::new(disk::DiskFiles::open(&parent.join("uploads")).await?));
    }
    if store_url.starts_with("mongodb://") || store_url.starts_with("mongodb+srv://") {
        let db = crate::store::mongo_database_name(store_url).unwrap_or("chat");
        return Ok(std::sync::Arc::new(gridfs::GridFiles::connect(store_url, db).await?));
    }
    Err(ChatError::Invalid { field: "store", reason: "expected sqlite:<path> or mongodb://…" })
}

/// A client's file name made safe to store and to echo in a `Content-Disposition`: the last path
/// component only, no control characters or quotes, at most [`MAX_FILE_NAME_BYTES`]; `file` when
/// nothing is left.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out = String::new();
    for c in base.chars().filter(|c| !c.is_control() && *c != '"') {
        if out.len() + c.len_utf8() > MAX_FILE_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim().trim_start_matches('.');
    if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `type/subtype` in lower case without parameters; [`DEFAULT_MEDIA_TYPE`] when absent.
pub fn clean_media_type(t: Option<&str>) -> Result<String> {
    let Some(t) = t.map(|t| t.split(';').next().unwrap_or_default().trim()).filter(|t| !t.is_empty()) else {
        return Ok(DEFAULT_MEDIA_TYPE.to_owned());
    };
    let valid = t.len() <= MAX_MEDIA_TYPE_BYTES
        && t.split_once('/').is_some_and(|(a, b)| {
            let token =
                |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c));
            token(a) && token(b)
        });
    if !valid {
        return Err(ChatError::Invalid { field: "type", reason: "not a media type" });
    }
    Ok(t.to_ascii_lowercase())
}

/// Whether `media_type` may be uploaded: not on `FileUpload_MediaTypeBlackList`, and on
/// `FileUpload_MediaTypeWhiteList` when that is not empty. Both are comma-separated lists of types or
/// `type/*` wildcards, as in Rocket.Chat.
pub fn media_type_allowed(settings: &Settings, media_type: &str) -> bool {
    let matches = |list: &str| {
        list.split(',').map(str::trim).filter(|p| !p.is_empty()).any(|p| {
            let p = p.to_ascii_lowercase();
            match p.strip_suffix("/*") {
                Some(prefix) => media_type.split_once('/').is_some_and(|(a, _)| a == prefix),
                None => p == media_type,
            }
        })
    };
    let white = settings.file_upload_media_type_white_list.trim();
    !matches(&settings.file_upload_media_type_black_list) && (white.is_empty() || matches(white))
}

/// Counts and hashes the bytes of one upload and enforces its size limit; shared by the backends.
pub(crate) struct Meter {
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl Meter {
    pub(crate) fn new(limit: u64) -> Self {
        Meter { hasher: Sha256::new(), size: 0, limit }
    }

    /// Accounts for `chunk`, or refuses it if it would pass the limit.
    pub(crate) fn take(&mut self, chunk: &[u8]) -> Result<()> {
        let size = self.size.saturating_add(chunk.len() as u64);
        if size > self.limit {
            return Err(ChatError::TooLong {
                field: "file",
                limit: usize::try_from(self.limit).unwrap_or(usize::MAX),
                got: usize::try_from(size).unwrap_or(usize::MAX),
            });
        }
        self.hasher.update(chunk);
        self.size = size;
        Ok(())
    }

    /// Size and hex SHA-256.
    pub(crate) fn finish(self) -> (u64, String) {
        let digest = self.hasher.finalize();
        (self.size, digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Checks an upload id from a client before it reaches a path or a query.
pub(crate) fn valid_id(id: &str) -> bool {
    crate::ids::validate_id("fileId", id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_control_characters_and_quotes() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\a\\report \"final\".pdf"), "report final.pdf");
        assert_eq!(clean_name("a\r\nb.txt"), "ab.txt");
        assert_eq!(clean_name(""), "file");
        assert_eq!(clean_name("..."), "file");
        assert_eq!(clean_name(&"é".repeat(300)).len(), 254);
    }

    #[test]
    fn media_types_are_normalised_or_refused() {
        assert_eq!(clean_media_type(Some("Image/PNG; charset=x")).unwrap(), "image/png");
        assert_eq!(clean_media_type(None).unwrap(), DEFAULT_MEDIA_TYPE);
        assert!(clean_media_type(Some("png")).is_err());
        assert!(clean_media_type(Some("text/ht ml")).is_err());
    }

    #[test]
    fn black_and_white_lists_with_wildcards() {
        let mut s = Settings::default();
        assert!(!media_type_allowed(&s, "image/svg+xml"), "RC blocks SVG by default");
        assert!(media_type_allowed(&s, "image/png"));
        s.file_upload_media_type_white_list = "image/*, application/pdf".into();
        assert!(media_type_allowed(&s, "image/png"));
        assert!(media_type_allowed(&s, "application/pdf"));
        assert!(!media_type_allowed(&s, "application/zip"));
        assert!(!media_type_allowed(&s, "image/svg+xml"), "the black list wins");
    }

    #[test]
    fn the_meter_refuses_the_chunk_that_passes_the_limit() {
        let mut m = Meter::new(5);
        m.take(b"abc").unwrap();
        assert!(matches!(m.take(b"def"), Err(ChatError::TooLong { field: "file", .. })));
        m.take(b"de").unwrap();
        let (size, sha) = m.finish();
        assert_eq!(size, 5);
        assert_eq!(sha, "36bbe50ed96841d10443bcb670d6554f0a34b761be67ec9c4a8ad2c0c44ca42c");
    }
}
