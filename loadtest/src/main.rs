//! `loadtest` binary: raises the open-files limit, builds one Tokio runtime
//! and runs the command line (see `loadtest --help`).

use anyhow::Result;

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let (soft, hard) = loadtest::sys::raise_nofile();
    let is_worker = argv.iter().any(|a| a == "--worker");
    let threads = argv
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(if is_worker { 1 } else { loadtest::sys::cores() });
    if !is_worker && soft < 20_000 {
        eprintln!("note: open-files limit {soft} (hard {hard}); each process holds fewer sockets than that");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    let report = match rt.block_on(loadtest::run(argv)) {
        Ok(r) => r,
        // `--help`, `--version` and usage errors: clap prints them itself, with its own exit code.
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(clap_error) => clap_error.exit(),
            Err(e) => return Err(e),
        },
    };
    if let Some(r) = report {
        if let Some(dir) = &r.dir {
            eprintln!("report: {}/report.json  plot: {}/plot.svg", dir.display(), dir.display());
        }
        println!("{}", serde_json::to_string_pretty(&r.results)?);
    }
    // Sockets still held by detached tasks must not delay the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
