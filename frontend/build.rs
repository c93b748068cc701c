//! Embeds the browser chat client (`web/static/**` plus the pinned `socketcluster-client` browser build)
//! into the binary, so every frontend serves it without files on disk.
//!
//! Writes `$OUT_DIR/web_assets.rs`: `WEB_ASSETS`, a table of `(path, bytes)` with the
//! bytes taken by `include_bytes!`, and `CLIENT_LIBRARY_BUNDLED`. The library comes from npm: the
//! package files are copied into `$OUT_DIR/web-npm` and `npm ci` runs there (never in the source tree);
//! a copy whose lock file is unchanged is reused. Without npm (or when it fails) a small placeholder
//! script is embedded instead, which makes the page say what is missing, and cargo prints a warning.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The file name the page loads the library by, and the file inside the npm package.
const LIBRARY: &str = "socketcluster-client.min.js";
/// Where the library's licence is served, beside it.
const LICENSE: &str = "socketcluster-client.LICENSE.txt";
/// `npm ci` is given this long (a build without network must not hang).
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// An ES module like the real one (which exports `create`), saying why it is not there.
const PLACEHOLDER: &str =
    "// socketcluster-client was not bundled: npm was not available when the frontend was built.\n\
export const missing = 'client library missing: build with npm available';\n\
export function create() { throw new Error(missing); }\n";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let web = manifest.join("..").join("web");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let static_dir = web.join("static");
    println!("cargo:rerun-if-changed={}", static_dir.display());
    println!("cargo:rerun-if-changed={}", web.join("package.json").display());
    println!("cargo:rerun-if-changed={}", web.join("package-lock.json").display());
    println!("cargo:rerun-if-env-changed=WEB_REQUIRE_CLIENT_LIBRARY");

    let mut files = Vec::new();
    collect(&static_dir, "", &mut files);
    files.sort();

    let (library, bundled) = match npm_library(&web, &out) {
        Ok(path) => (path, true),
        Err(why) if std::env::var_os("WEB_REQUIRE_CLIENT_LIBRARY").is_some() => {
            panic!("WEB_REQUIRE_CLIENT_LIBRARY is set and socketcluster-client could not be bundled: {why}");
        }
        Err(why) => {
            println!("cargo:warning=web client: socketcluster-client not bundled ({why}); the page will say so");
            let path = out.join("socketcluster-client.placeholder.js");
            if let Err(e) = fs::write(&path, PLACEHOLDER) {
                panic!("cannot write {}: {e}", path.display());
            }
            (path, false)
        }
    };

    // Content types are derived from the names where the files are served (`chat::web`).
    let mut table = String::from("/// Every file of the web client: (path under `/web/`, bytes).\n");
    table.push_str("pub static WEB_ASSETS: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        if name == LIBRARY {
            continue; // the bundled library wins over a file of the same name
        }
        table.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    table.push_str(&format!("    ({LIBRARY:?}, include_bytes!({:?})),\n", library.display().to_string()));
    // The library is MIT-licensed: its notice goes wherever a copy does.
    let license = library.with_file_name("LICENSE");
    if bundled && license.is_file() {
        table.push_str(&format!("    ({LICENSE:?}, include_bytes!({:?})),\n", license.display().to_string()));
    }
    table.push_str("];\n");
    table.push_str("/// Whether the real socketcluster-client is embedded (false: a placeholder, npm was missing).\n");
    table.push_str(&format!("pub const CLIENT_LIBRARY_BUNDLED: bool = {bundled};\n"));
    let target = out.join("web_assets.rs");
    if let Err(e) = fs::write(&target, table) {
        panic!("cannot write {}: {e}", target.display());
    }
}

/// Files under `dir`, as (`a/b.js` relative name, absolute path); hidden files are skipped.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        if path.is_dir() {
            collect(&path, &rel, out);
        } else {
            let abs = fs::canonicalize(&path).unwrap_or(path);
            out.push((rel, abs));
        }
    }
}

/// Runs `npm ci` on a copy of the package files in `out` (skipped when the same lock file was
/// installed before) and returns the library's path.
fn npm_library(web: &Path, out: &Path) -> Result<PathBuf, String> {
    let dir = out.join("web-npm");
    let library = dir.join("node_modules").join("socketcluster-client").join(LIBRARY);
    let lock = fs::read(web.join("package-lock.json")).map_err(|e| format!("web/package-lock.json: {e}"))?;
    let package = fs::read(web.join("package.json")).map_err(|e| format!("web/package.json: {e}"))?;
    let installed = dir.join(".installed-lock.json");
    if library.is_file() && fs::read(&installed).is_ok_and(|l| l == lock) {
        return Ok(library);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(dir.join("package.json"), &package).map_err(|e| e.to_string())?;
    fs::write(dir.join("package-lock.json"), &lock).map_err(|e| e.to_string())?;
    let mut child = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("npm not found: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > NPM_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("npm ci took longer than {} s", NPM_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for npm: {e}")),
        }
    };
    if !status.success() {
        return Err(format!("npm ci failed ({status})"));
    }
    if !library.is_file() {
        return Err(format!("npm ci did not produce {}", library.display()));
    }
    fs::write(&installed, &lock).map_err(|e| e.to_string())?;
    Ok(library)
}
