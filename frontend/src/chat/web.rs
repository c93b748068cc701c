//! The browser chat client (`web/static/` of the repository), served by every frontend running the
//! chat: `GET /` is the page, `GET /web/<file>` its scripts and styles, plus the pinned
//! `socketcluster-client` browser build the page speaks the socket API through.
//!
//! The files are embedded at build time (`frontend/build.rs`), so a single binary serves the client
//! with no files beside it. `--web-dir <dir>` reads them from disk on every request instead (edit,
//! reload, no rebuild); a file missing there falls back to the embedded copy (the library is not in
//! the source tree). `--no-web` turns the routes off.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from this origin only,
//! sockets to it, images also as `data:`/`blob:`), `X-Content-Type-Options: nosniff` and an `ETag` (a
//! SHA-256 of the bytes): the files are not fingerprinted, so browsers revalidate (`no-cache`) and get
//! a 304 without the body when nothing changed.

use std::path::PathBuf;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::rest::conn::Conn;
use super::rest::{percent_decode, Reply, RestError};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The path prefix of the client's files.
pub const WEB_PREFIX: &str = "/web/";
/// The page every other file hangs off.
const INDEX: &str = "index.html";
/// Largest file `--web-dir` serves (the client's files are small; a stray large file is refused).
const MAX_DISK_FILE: u64 = 8 * 1024 * 1024;
/// Longest path segment accepted.
const MAX_SEGMENT: usize = 128;

/// Sent with every answer of these routes.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
connect-src 'self' ws: wss:; img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the client's files come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WebSource {
    /// The copy embedded at build time.
    #[default]
    Embedded,
    /// Files read from this directory on each request (development), the embedded copy as fallback.
    Dir(PathBuf),
    /// Not served (`--no-web`).
    Off,
}

/// Whether the real `socketcluster-client` was embedded (false when the build had no npm: the page
/// then says the library is missing).
#[must_use]
pub fn client_library_bundled() -> bool {
    CLIENT_LIBRARY_BUNDLED
}

/// The embedded file `name` (relative to `web/static/`) and its content type.
#[must_use]
pub fn embedded(name: &str) -> Option<(&'static [u8], &'static str)> {
    WEB_ASSETS.iter().find(|(n, _)| *n == name).map(|(_, bytes)| (*bytes, content_type(name)))
}

/// Whether `path` is one of the client's routes (`/`, `/index.html`, `/web/…`).
#[must_use]
pub fn claims(path: &str) -> bool {
    path == "/" || path == "/index.html" || path.starts_with(WEB_PREFIX)
}

/// The file a request path names, relative to `web/static/`; `None` for anything that is not a plain
/// relative path of safe segments (`..`, hidden files, backslashes, NUL, empty segments, bad escapes).
fn file_name(path: &str) -> Option<String> {
    if path == "/" || path == "/index.html" {
        return Some(INDEX.to_owned());
    }
    let rest = path.strip_prefix(WEB_PREFIX)?;
    let decoded = percent_decode(rest)?;
    let safe = |seg: &str| {
        !seg.is_empty()
            && seg.len() <= MAX_SEGMENT
            && !seg.starts_with('.')
            && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    decoded.split('/').all(safe).then_some(decoded)
}

/// The content type served for a file of the client, by its extension (embedded or on disk).
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// ETags of the embedded files, computed once.
fn embedded_etag(name: &str) -> Option<&'static str> {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| WEB_ASSETS.iter().map(|(n, bytes)| (*n, etag(bytes))).collect());
    tags.iter().find(|(n, _)| *n == name).map(|(_, t)| t.as_str())
}

/// A file to answer with.
struct Asset {
    bytes: std::borrow::Cow<'static, [u8]>,
    content_type: &'static str,
    etag: String,
}

/// Reads `name` from `dir`, if it is a regular file there (symbolic links out of `dir` are refused).
async fn from_disk(dir: &std::path::Path, name: &str) -> Option<Asset> {
    let root = tokio::fs::canonicalize(dir).await.ok()?;
    let path = tokio::fs::canonicalize(root.join(name)).await.ok()?;
    if !path.starts_with(&root) {
        return None;
    }
    let meta = tokio::fs::metadata(&path).await.ok()?;
    if !meta.is_file() || meta.len() > MAX_DISK_FILE {
        return None;
    }
    let bytes = tokio::fs::read(&path).await.ok()?;
    let etag = etag(&bytes);
    Some(Asset { bytes: bytes.into(), content_type: content_type(name), etag })
}

async fn find(source: &WebSource, name: &str) -> Option<Asset> {
    if let WebSource::Dir(dir) = source {
        if let Some(asset) = from_disk(dir, name).await {
            return Some(asset);
        }
    }
    let (bytes, content_type) = embedded(name)?;
    Some(Asset { bytes: bytes.into(), content_type, etag: embedded_etag(name)?.to_owned() })
}

/// Whether an `If-None-Match` value matches `etag` (a list, `*`, weak tags compared weakly as RFC 9110 says).
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Answers one request for the client's routes.
pub async fn serve(source: &WebSource, conn: &mut Conn) -> Result<Reply, RestError> {
    let not_found = || RestError::http(404, "error-not-found", "no such file");
    if *source == WebSource::Off {
        return Err(not_found());
    }
    let head_only = match conn.head.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(RestError::http(405, "error-method-not-allowed", "GET or HEAD only")),
    };
    let name = file_name(&conn.head.path).ok_or_else(not_found)?;
    let asset = find(source, &name).await.ok_or_else(not_found)?;
    let mut headers = vec![
        ("Content-Type", asset.content_type.to_owned()),
        ("Cache-Control", "no-cache".to_owned()),
        ("ETag", asset.etag.clone()),
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY.to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        ("Referrer-Policy", "no-referrer".to_owned()),
        ("X-Frame-Options", "DENY".to_owned()),
    ];
    let fresh = conn.head.header("if-none-match").is_some_and(|v| matches(v, &asset.etag));
    let status = if fresh { 304 } else { 200 };
    if fresh {
        headers.retain(|(n, _)| *n != "Content-Type");
    }
    conn.respond_bytes(status, &headers, &asset.bytes, !head_only && !fresh)
        .await
        .map_err(|e| RestError::http(500, "error-write", format!("writing the file failed: {e}")))?;
    Ok(Reply::Sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_name_a_file() {
        assert_eq!(file_name("/").as_deref(), Some("index.html"));
        assert_eq!(file_name("/web/app.js").as_deref(), Some("app.js"));
        assert_eq!(file_name("/web/sub/x.css").as_deref(), Some("sub/x.css"));
        for bad in [
            "/web/../Cargo.toml",
            "/web/%2e%2e/secret",
            "/web/a/../../b",
            "/web/.hidden",
            "/web/",
            "/web//x",
            "/web/a%00b",
            "/web/a%5cb",
            "/web/%zz",
            "/other",
        ] {
            assert_eq!(file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        assert!(matches("\"a\"", "\"a\""));
        assert!(matches("\"b\", W/\"a\"", "\"a\""));
        assert!(matches("*", "\"a\""));
        assert!(!matches("\"b\"", "\"a\""));
    }

    /// Every `./x.js` a module imports (statically or with `import()`), and every `/web/…` file the page
    /// links, is embedded — except `admin.js`, which another part of the project provides and whose
    /// absence the page handles ("Administration is not available").
    #[test]
    fn every_file_the_client_refers_to_is_embedded() {
        let mut missing = Vec::new();
        for (name, bytes) in WEB_ASSETS.iter().filter(|(n, _)| n.ends_with(".js") || *n == INDEX) {
            if *name == "socketcluster-client.min.js" {
                continue;
            }
            let text = String::from_utf8_lossy(bytes);
            for quote in ['\'', '"'] {
                for prefix in ["./", "/web/"] {
                    let needle = format!("{quote}{prefix}");
                    for (at, _) in text.match_indices(&needle) {
                        let rest = &text[at + needle.len()..];
                        let Some(end) = rest.find(quote) else { continue };
                        let file = &rest[..end];
                        if (file.ends_with(".js") || file.ends_with(".css"))
                            && file != "admin.js"
                            && embedded(file).is_none()
                        {
                            missing.push(format!("{name} → {file}"));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "referred to but not embedded: {missing:?}");
    }

    #[test]
    fn the_page_and_the_library_are_embedded() {
        assert!(embedded("index.html").is_some_and(|(_, ct)| ct.starts_with("text/html")));
        assert!(embedded("socketcluster-client.min.js").is_some());
    }
}
