//! `chat`: command-line tools for the chat store: `chat import slack <export.zip>`, and
//! `chat user set-password <username> [--activate]` (how imported, password-less accounts get a
//! password).
//!
//! The archive is read and checked completely before the store is touched; a bad archive exits with
//! status 1 and a message naming the file inside the zip, and the store is unchanged. Progress goes to
//! stderr (one updating line on a terminal, a line per step otherwise), the summary to stdout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat::import::{apply, plan, slack, ImportError, Summary};
use chat::store::{ImportOutcome, ImportProgress, Store};
use clap::{Parser, Subcommand};

/// Largest archive read (the whole zip is held in memory while it is checked).
const MAX_ARCHIVE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// A terminal progress line is redrawn at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

#[derive(Parser, Debug)]
#[command(name = "chat", version, about = "Tools for the chat store (import another chat's history)")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import history from another chat system.
    #[command(subcommand)]
    Import(Import),
    /// Manage accounts directly in the store.
    #[command(subcommand)]
    User(UserCmd),
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Set an account's password (e.g. one created by an import, which has none), optionally activating it.
    /// The password is read from CHAT_USER_PASSWORD, or else from the first line of standard input.
    SetPassword {
        username: String,
        /// Also activate the account (imported accounts start deactivated).
        #[arg(long)]
        activate: bool,
        /// The chat store, as for `import slack`.
        #[arg(long, env = "CHAT_STORE", default_value = "sqlite:./data/chat.db")]
        store: String,
    },
}

#[derive(Subcommand, Debug)]
enum Import {
    /// Import a Slack workspace export (the zip from "Settings → Import/Export data → Export").
    ///
    /// Creates the Slack users as deactivated accounts without a password (`chat user set-password
    /// <name> --activate` or an admin's setUserActiveStatus activates them; a Slack user whose e-mail
    /// matches an existing account is linked to it instead), public channels, private
    /// groups, DMs and multi-person DMs (as private groups) with their members, and the messages with
    /// their original times and authors, threads, reactions, edit marks and links to shared files (the
    /// files themselves are not downloaded). Imported history counts as read.
    ///
    /// Running it again with the same or a later export adds only what is new. The whole archive is
    /// checked before anything is written: a malformed archive changes nothing. With SQLite the import
    /// is one transaction; with MongoDB an interrupted import is completed by running it again.
    #[command(verbatim_doc_comment)]
    Slack {
        /// The export zip.
        archive: PathBuf,
        /// The chat store: `sqlite:<path>` (or just a path to a .db file) or `mongodb://host:port/<db>`.
        /// The default is the store `scripts/cluster` and the frontend's `--chat` use when started from
        /// the repository root.
        #[arg(long, env = "CHAT_STORE", default_value = "sqlite:./data/chat.db")]
        store: String,
        /// Check the archive and print what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write in transactions of at most this many messages instead of one for the whole import,
        /// so frontends running on the same SQLite file can write in between (they wait at most 5 s
        /// for the lock). The archive is still checked completely first, but a failure while writing
        /// then leaves the earlier parts written: run the same import again to complete it.
        #[arg(long, value_name = "MESSAGES")]
        chunk: Option<usize>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chat: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (archive, store, dry_run) = match args.command {
        Command::Import(Import::Slack { archive, store, dry_run, chunk }) => (archive, store, (dry_run, chunk)),
        Command::User(UserCmd::SetPassword { username, activate, store }) => {
            return match runtime.block_on(set_password(&username, activate, &store_url(&store))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("chat: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let (dry_run, chunk) = dry_run;
    match runtime.block_on(import_slack(archive, store_url(&store), dry_run, chunk)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: import failed: {e} [{}]", e.id());
            if matches!(e, ImportError::Store(_)) {
                eprintln!(
                    "chat: SQLite rolled the import back (with --chunk, only the part being written); \
                     run the same import again to complete it (nothing is imported twice)"
                );
            } else {
                eprintln!("chat: nothing was written (the store is unchanged)");
            }
            ExitCode::FAILURE
        }
    }
}

async fn set_password(username: &str, activate: bool, store_url: &str) -> Result<(), String> {
    let password = match std::env::var("CHAT_USER_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| format!("reading the password from stdin: {e}"))?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let hash = chat::auth::hash_password(&password).map_err(|e| format!("password refused: {e}"))?;
    let store = chat::store::open(store_url).await.map_err(|e| format!("store: {e}"))?;
    let user = store
        .user_by_username(username)
        .await
        .map_err(|e| format!("store: {e}"))?
        .ok_or_else(|| format!("no user {username:?} in {}", redact(store_url)))?;
    store.set_password_hash(&user.id, &hash).await.map_err(|e| format!("store: {e}"))?;
    if activate && !user.active {
        store.set_user_active(&user.id, true).await.map_err(|e| format!("store: {e}"))?;
    }
    let state = if activate || user.active { "active" } else { "still deactivated" };
    println!("password set for {} ({state})", user.username);
    Ok(())
}

/// A bare path means SQLite.
fn store_url(s: &str) -> String {
    if s.starts_with("sqlite:") || s.starts_with("mongodb://") || s.starts_with("mongodb+srv://") {
        s.to_owned()
    } else {
        format!("sqlite:{s}")
    }
}

async fn import_slack(
    path: PathBuf,
    store_url: String,
    dry_run: bool,
    chunk: Option<usize>,
) -> Result<(), ImportError> {
    let started = Instant::now();
    let progress = Progress::new();
    let shown = path.display().to_string();
    let io = |e: std::io::Error| ImportError::Io { path: shown.clone(), reason: e.to_string() };
    let size = std::fs::metadata(&path).map_err(io)?.len();
    if size > MAX_ARCHIVE_BYTES {
        return Err(ImportError::Io { path: shown, reason: "larger than 4 GiB".into() });
    }
    progress.step(&format!("reading {shown} ({} KiB)", size / 1024));
    let bytes = std::fs::read(&path).map_err(io)?;
    let archive =
        slack::parse(&bytes, &mut |done, total| progress.update("checking archive", done as u64, total as u64))?;
    drop(bytes);
    progress.step(&format!(
        "archive ok: {} users, {} conversations, {} messages in {} daily files",
        archive.users.len(),
        archive.conversations.len(),
        archive.message_count(),
        archive.message_files
    ));

    if dry_run {
        let sqlite_missing = store_url
            .strip_prefix("sqlite:")
            .map(|p| !std::path::Path::new(p.strip_prefix("//").unwrap_or(p)).exists())
            .unwrap_or(false);
        let store = if sqlite_missing { None } else { Some(chat::store::open(&store_url).await?) };
        progress.step("planning against the store (read only)");
        let plan = apply::dry_run(store.as_deref(), &archive).await?;
        progress.finish();
        println!("dry run: nothing was written. The import would bring at most:");
        print!("{}", plan.summary(None));
        return Ok(());
    }

    let store: Arc<dyn Store> = chat::store::open(&store_url).await?;
    progress.step(&format!("importing into {}: looking up what the store already has", redact(&store_url)));
    let existing = apply::resolve(&*store, &archive).await?;
    let mut plan = plan::plan(&archive, &existing);
    drop(archive);
    let batch = std::mem::take(&mut plan.batch);
    let total = batch.messages.len() as u64;
    progress.step(&format!(
        "writing {} users, {} rooms, {} memberships, {total} messages (those not already present)",
        batch.users.len(),
        batch.rooms.len(),
        batch.members.len()
    ));
    let parts = match chunk {
        Some(n) => batch.split(n),
        None => vec![batch],
    };
    let mut outcome = ImportOutcome::default();
    let mut offset = 0;
    for part in parts {
        let p = progress.clone();
        let size = part.messages.len() as u64;
        let callback: ImportProgress = Arc::new(move |done| p.update("writing", offset + done, total));
        outcome.merge(store.import(part, callback).await?);
        offset += size;
    }
    let summary: Summary = plan.summary(Some(&outcome));
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    print!("{summary}");
    println!(
        "took {secs:.1} s ({:.0} messages/s)",
        if secs > 0.0 { summary.messages.imported as f64 / secs } else { 0.0 }
    );
    if summary.users.imported > 0 {
        println!(
            "imported users are deactivated and have no password: `chat user set-password <username> --activate` \
             gives one a password and activates it (an admin can also activate with setUserActiveStatus)"
        );
    }
    Ok(())
}

/// `mongodb://user:secret@host` → `mongodb://user:***@host`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Progress on stderr: one redrawn line on a terminal (at most every [`REDRAW_EVERY`]), plain lines
/// per step otherwise.
#[derive(Clone)]
struct Progress {
    tty: bool,
    started: Instant,
    last: Arc<Mutex<Option<Instant>>>,
}

impl Progress {
    fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), started: Instant::now(), last: Arc::new(Mutex::new(None)) }
    }

    fn step(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "[{:>6.1} s] {text}", self.started.elapsed().as_secs_f64());
    }

    fn update(&self, what: &str, done: u64, total: u64) {
        if !self.tty {
            return;
        }
        let Ok(mut last) = self.last.lock() else { return };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REDRAW_EVERY) && done < total {
            return;
        }
        *last = Some(now);
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{what}: {pct:>3}% ({done}/{total})");
    }

    fn finish(&self) {
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
        self.step("done");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_strings_are_those_of_the_frontend_or_a_path() {
        assert_eq!(store_url("sqlite:./data/chat.db"), "sqlite:./data/chat.db");
        assert_eq!(store_url("/tmp/x.db"), "sqlite:/tmp/x.db");
        assert_eq!(store_url("mongodb://h:1/chat"), "mongodb://h:1/chat");
    }

    #[test]
    fn passwords_in_store_urls_are_not_printed() {
        assert_eq!(redact("mongodb://u:secret@h:1/db"), "mongodb://u:***@h:1/db");
        assert_eq!(redact("sqlite:./data/chat.db"), "sqlite:./data/chat.db");
    }

    #[test]
    fn the_command_line_parses() {
        Args::command_for_test();
        let a = Args::try_parse_from(["chat", "import", "slack", "x.zip", "--dry-run"]).unwrap();
        assert!(matches!(a.command, Command::Import(Import::Slack { dry_run: true, .. })));
        let a = Args::try_parse_from(["chat", "user", "set-password", "ann", "--activate"]).unwrap();
        assert!(matches!(a.command, Command::User(UserCmd::SetPassword { activate: true, .. })));
    }

    impl Args {
        fn command_for_test() {
            <Args as clap::CommandFactory>::command().debug_assert();
        }
    }
}
