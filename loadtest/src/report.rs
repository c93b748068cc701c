//! One JSON report per run (parameters, machine, results, the timeline and
//! its markers) and the plot beside it, in an output directory named from
//! the scenario and its parameters.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::progress::{Marker, Point};
use crate::sys::Machine;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// What was measured (`ours`, `scc`, …), from `--label`.
    pub label: String,
    pub started_unix: u64,
    /// The command line, so a run can be repeated.
    pub argv: Vec<String>,
    pub params: Value,
    pub machine: Machine,
    pub results: Value,
    pub timeline: Vec<Point>,
    pub markers: Vec<Marker>,
    /// Where the report and plot were written (set by [`Report::write`]).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

impl Report {
    /// Writes `report.json` and `plot.svg` into `dir` (created).
    ///
    /// # Errors
    /// When the directory or a file cannot be written.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.dir = Some(dir.to_path_buf());
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(dir.join("report.json"), json).with_context(|| format!("writing {}", dir.display()))?;
        if !self.timeline.is_empty() {
            let title = format!("{} ({}), {} cores", self.scenario, self.label, self.machine.cores);
            crate::plot::draw(&dir.join("plot.svg"), &title, &self.timeline, &self.markers)?;
        }
        Ok(())
    }
}

/// `target/loadtest/<scenario>-<label>-<name>-<unix time>`.
#[must_use]
pub fn default_dir(scenario: &str, label: &str, name: &str) -> PathBuf {
    PathBuf::from("target/loadtest").join(format!("{scenario}-{label}-{name}-{}", crate::sys::unix_secs()))
}
