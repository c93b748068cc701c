//! The browser client's files, served by a chat frontend: the page with its security headers, assets
//! with their content types, revalidation by ETag, refusals of unknown and escaping paths, `--web-dir`
//! and `--no-web`, and the bundled `socketcluster-client`.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use frontend::chat::web::WebSource;
use support::chat::{start_with, ChatNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

/// A chat node serving `web`; no admin account, as no test here logs in.
async fn start(web: WebSource) -> ChatNode {
    start_with(|cc| {
        cc.bootstrap_admin = None;
        cc.web = web;
    })
    .await
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` with `extra` header lines and reads the whole answer (the server closes).
async fn send(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = r.parse(&buf).unwrap() else { panic!("incomplete answer") };
    let hs = r
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    Resp { status: r.code.unwrap(), headers: hs, body: buf[len..].to_vec() }
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, "GET", path, "").await
}

#[tokio::test]
async fn the_page_is_served_at_the_root_with_a_strict_content_security_policy() {
    let n = start(WebSource::Embedded).await;
    let r = get(n.node.json, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self' ws: wss:"), "{csp}");
    assert!(csp.contains("img-src 'self' data: blob:"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let page = r.text();
    assert!(page.contains("id=\"login-form\""), "the login form is on the page");
    assert!(page.contains("socketcluster-client.min.js"), "the page loads the bundled library");
    // The same page by name, and the WebSocket path and health check still the node's.
    assert_eq!(get(n.node.json, "/index.html").await.body, r.body);
    assert_eq!(get(n.node.json, "/health").await.status, 200);
    n.node.stop().await;
}

#[tokio::test]
async fn assets_have_their_content_type_and_an_etag_that_answers_304() {
    let n = start(WebSource::Embedded).await;
    let css = get(n.node.json, "/web/style.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let js = get(n.node.json, "/web/app.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(js.header("cache-control").is_some());
    let etag = js.header("etag").expect("an ETag").to_owned();
    assert_ne!(Some(etag.as_str()), css.header("etag"), "different files, different tags");

    let again = send(n.node.json, "GET", "/web/app.js", &format!("If-None-Match: {etag}\r\n")).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty(), "a 304 has no body");
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let stale = send(n.node.json, "GET", "/web/app.js", "If-None-Match: \"0000\"\r\n").await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, js.body);

    let head = send(n.node.json, "HEAD", "/web/app.js", "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sends no body");
    assert_eq!(head.header("content-length"), Some(js.body.len().to_string().as_str()));
    assert_eq!(send(n.node.json, "POST", "/web/app.js", "Content-Length: 0\r\n").await.status, 405);
    n.node.stop().await;
}

#[tokio::test]
async fn unknown_files_and_paths_out_of_the_folder_are_404() {
    let n = start(WebSource::Embedded).await;
    for path in [
        "/web/nope.js",
        "/web/../Cargo.toml",
        "/web/%2e%2e/%2e%2e/Cargo.toml",
        "/web/..%2f..%2fCargo.toml",
        "/web/.hidden",
        "/web/",
        "/web//etc/passwd",
        "/web/a%00.js",
    ] {
        let r = get(n.node.json, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("[workspace]"), "{path} leaked a file");
    }
    n.node.stop().await;
}

#[tokio::test]
async fn a_web_dir_serves_files_from_disk_and_refuses_links_out_of_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><p>from disk</p>").unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log('disk')").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link.txt")).unwrap();
    let n = start(WebSource::Dir(dir.path().to_owned())).await;
    assert!(get(n.node.json, "/").await.text().contains("from disk"));
    assert_eq!(get(n.node.json, "/web/app.js").await.text(), "console.log('disk')");
    // Edited on disk: the next request has the new bytes, and the old tag no longer matches.
    let tag = get(n.node.json, "/web/app.js").await.header("etag").unwrap().to_owned();
    std::fs::write(dir.path().join("app.js"), "console.log('edited')").unwrap();
    let r = send(n.node.json, "GET", "/web/app.js", &format!("If-None-Match: {tag}\r\n")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "console.log('edited')"));
    assert_eq!(get(n.node.json, "/web/link.txt").await.status, 404, "a link out of the folder");
    // Files that are not in the folder come from the embedded copy (the library is never in the tree).
    assert_eq!(get(n.node.json, "/web/socketcluster-client.min.js").await.status, 200);
    n.node.stop().await;
}

#[tokio::test]
async fn no_web_leaves_the_routes_unclaimed() {
    let n = start(WebSource::Off).await;
    assert_eq!(get(n.node.json, "/").await.status, 404);
    assert_eq!(get(n.node.json, "/web/app.js").await.status, 404);
    n.node.stop().await;
}

#[tokio::test]
async fn the_socketcluster_client_browser_build_is_embedded() {
    let n = start(WebSource::Embedded).await;
    let r = get(n.node.json, "/web/socketcluster-client.min.js").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    let npm = std::process::Command::new("npm").arg("--version").output().is_ok_and(|o| o.status.success());
    if npm {
        assert!(frontend::chat::web::client_library_bundled(), "npm is here, so the build must bundle the library");
        assert!(r.body.len() > 50_000, "the real library, not the placeholder ({} bytes)", r.body.len());
        assert!(r.text().contains("create"), "the ES module build, which exports create()");
        let license = get(n.node.json, "/web/socketcluster-client.LICENSE.txt").await;
        assert_eq!(license.status, 200);
        assert!(license.text().contains("MIT License"), "the library's licence ships beside it");
    } else {
        eprintln!("npm missing: the placeholder is served");
        assert!(r.text().contains("client library missing"));
    }
    n.node.stop().await;
}
