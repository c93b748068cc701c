//! Reading a node's `GET /metrics` (the Prometheus text format) into samples
//! a test can compare: each series by its exposed name and labels exactly
//! as the node writes them, e.g. `broker_links_refused_total{reason="wrong_key"}`.
//!
//! Not a general parser: it reads the `name{labels} value` lines the nodes
//! write (no timestamps, no escaped quotes in label values) and skips
//! comments (`# HELP`, `# TYPE`, `# EOF`).

use std::collections::BTreeMap;
use std::fmt;

use crate::http;

/// One scrape: series → value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parses the text format.
    ///
    /// # Errors
    /// A line that is neither a comment nor `series value`, quoted.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut samples = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| format!("not a sample: {line:?}"))?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse::<f64>().map_err(|e| format!("bad value in {line:?}: {e}"))?,
            };
            samples.insert(series.trim().to_owned(), value);
        }
        Ok(Scrape { samples })
    }

    /// `GET /metrics` from `addr` (`host:port`), parsed.
    ///
    /// # Errors
    /// When the request fails, the answer is not 200, or the body does not parse.
    pub async fn fetch(addr: impl fmt::Display) -> Result<Scrape, String> {
        let addr = addr.to_string();
        let r = http::get(&addr, "/metrics").await?;
        if r.status != 200 {
            return Err(format!("GET http://{addr}/metrics answered {}: {}", r.status, r.body));
        }
        Scrape::parse(&r.body).map_err(|e| format!("GET http://{addr}/metrics: {e}"))
    }

    /// The value of one series, if present.
    #[must_use]
    pub fn get(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// The value of one series.
    ///
    /// # Panics
    /// When the scrape does not have it (the message lists what it has with the same name).
    #[must_use]
    pub fn value(&self, series: &str) -> f64 {
        self.get(series).unwrap_or_else(|| {
            let name = series.split('{').next().unwrap_or(series);
            let similar: Vec<&String> = self.samples.keys().filter(|k| k.starts_with(name)).collect();
            panic!("no series {series} in the scrape; with that prefix: {similar:?}")
        })
    }

    /// The sum over every series of metric `name`, whatever their labels.
    #[must_use]
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
            .map(|(_, v)| v)
            .sum()
    }

    /// `self.value(series) - before.value(series)` (a missing series counts as 0 before).
    #[must_use]
    pub fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.value(series) - before.get(series).unwrap_or(0.0)
    }

    /// Every series and its value.
    #[must_use]
    pub fn samples(&self) -> &BTreeMap<String, f64> {
        &self.samples
    }
}

impl fmt::Display for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.samples {
            writeln!(f, "{k} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP broker_links_refused Fabric links refused.\n\
        # TYPE broker_links_refused counter\n\
        broker_links_refused_total{reason=\"wrong_key\"} 2\n\
        broker_links_refused_total{reason=\"not_hello\"} 1\n\
        broker_links 3\n\
        broker_fanout_seconds_bucket{le=\"+Inf\"} 7\n\
        state_server_node_last_seen_seconds{role=\"broker\",node=\"b1\"} 0.25\n\
        # EOF\n";

    #[test]
    fn parses_series_with_labels_sums_and_deltas() {
        let s = Scrape::parse(TEXT).unwrap();
        assert_eq!(s.value("broker_links_refused_total{reason=\"wrong_key\"}"), 2.0);
        assert_eq!(s.sum("broker_links_refused_total"), 3.0);
        assert_eq!(s.sum("broker_links"), 3.0, "a prefix of another name is not summed with it");
        assert_eq!(s.value("broker_fanout_seconds_bucket{le=\"+Inf\"}"), 7.0);
        assert_eq!(s.value("state_server_node_last_seen_seconds{role=\"broker\",node=\"b1\"}"), 0.25);
        let before = Scrape::parse("broker_links 1\n").unwrap();
        assert_eq!(s.delta(&before, "broker_links"), 2.0);
        assert_eq!(s.delta(&before, "broker_links_refused_total{reason=\"not_hello\"}"), 1.0);
        assert!(Scrape::parse("garbage").is_err());
    }
}
