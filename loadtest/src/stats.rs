//! Latency histograms (µs, `hdrhistogram`), their summary in milliseconds,
//! and their transport between processes (V2 + deflate, base64).

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram keeps exactly: one hour, in µs.
const MAX_US: u64 = 3_600_000_000;

/// An empty latency histogram (1 µs .. 1 h, 3 significant digits).
#[must_use]
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

/// Records one latency in µs (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// A histogram as base64 text for a JSON line.
#[must_use]
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    if V2DeflateSerializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Adds an encoded histogram into `into`; a bad encoding adds nothing.
pub fn merge_encoded(into: &mut Histogram<u64>, text: &str) {
    if text.is_empty() {
        return;
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) else { return };
    let Ok(h): Result<Histogram<u64>, _> = Deserializer::new().deserialize(&mut bytes.as_slice()) else { return };
    let _ = into.add(&h);
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_trip_between_processes() {
        let mut h = hist();
        for v in 1..=1000 {
            record(&mut h, v * 10);
        }
        let mut back = hist();
        merge_encoded(&mut back, &encode(&h));
        assert_eq!(Latency::of(&back), Latency::of(&h));
        assert_eq!(back.len(), 1000);
    }
}
