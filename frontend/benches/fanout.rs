//! Fan-out benchmark: one publisher, 1,000 local subscribers on one channel,
//! over real WebSockets on loopback, node and clients in this process.
//!
//! Half the subscribers speak JSON and half MessagePack, so the run also
//! shows that each publish is encoded exactly once per codec. For each
//! publish rate it reports delivered messages per second, latency
//! percentiles (publish sent → subscriber decoded) and encodes per publish.
//!
//! `cargo bench -p frontend --bench fanout`; tune with FANOUT_SUBSCRIBERS,
//! FANOUT_RATES (publishes/s, comma-separated), FANOUT_SECONDS.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frontend::{App, Config, Frontend};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::Codec;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Shared {
    start: Instant,
    delivered: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let subscribers: usize = env_or("FANOUT_SUBSCRIBERS", 1000);
    let seconds: u64 = env_or("FANOUT_SECONDS", 3);
    let rates: Vec<u64> = std::env::var("FANOUT_RATES")
        .unwrap_or_else(|_| "50,100,200,400".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();

    let mut config = Config::for_test();
    config.ping_interval = Duration::from_secs(8);
    config.ping_timeout = Duration::from_secs(30);
    // One publisher sends far more than a client's default budget.
    config.limits.inbound_rate = 1_000_000;
    let fe = Frontend::bind(config, App::default()).await.unwrap();
    let addrs = [fe.addr(Codec::Json).unwrap(), fe.addr(Codec::MinBin).unwrap()];
    let node = fe.node();
    let shutdown = CancellationToken::new();
    tokio::spawn(fe.run(shutdown.clone()));

    let shared = Arc::new(Shared {
        start: Instant::now(),
        delivered: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()),
    });
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(subscribers);
    for i in 0..subscribers {
        let codec = if i % 2 == 0 { Codec::Json } else { Codec::MinBin };
        tokio::spawn(subscriber(addrs[codec.index()], codec, shared.clone(), ready_tx.clone()));
    }
    for _ in 0..subscribers {
        ready_rx.recv().await.unwrap();
    }
    println!(
        "fanout: {subscribers} subscribers on one channel ({} JSON, {} MessagePack), {} cores",
        subscribers.div_ceil(2),
        subscribers / 2,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let url = format!("ws://{}/socketcluster/", addrs[0]);
    let (mut publisher, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    publisher.send(Message::text(r##"{"event":"#handshake","data":{},"cid":1}"##)).await.unwrap();
    publisher.next().await.unwrap().unwrap();

    println!(
        "{:>10} {:>10} {:>14} {:>9} {:>9} {:>9} {:>16}",
        "pub/s", "published", "delivered/s", "p50 ms", "p99 ms", "max ms", "encodes/publish"
    );
    for rate in rates {
        shared.hist.lock().unwrap().reset();
        let delivered_before = shared.delivered.load(Ordering::Relaxed);
        let encodes_before = node.stats.publish_encodes.load(Ordering::Relaxed);
        let total = rate * seconds;
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        for _ in 0..total {
            tick.tick().await;
            let sent = shared.start.elapsed().as_micros() as u64;
            let frame = format!(r##"{{"event":"#publish","data":{{"channel":"bench","data":{sent}}}}}"##);
            publisher.send(Message::text(frame)).await.unwrap();
        }
        // Wait (bounded) for every delivery of this step.
        let expected = delivered_before + total * subscribers as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let delivered = shared.delivered.load(Ordering::Relaxed) - delivered_before;
        let encodes = node.stats.publish_encodes.load(Ordering::Relaxed) - encodes_before;
        let h = shared.hist.lock().unwrap().clone();
        println!(
            "{:>10} {:>10} {:>14.0} {:>9.2} {:>9.2} {:>9.2} {:>16.2}",
            rate,
            total,
            delivered as f64 / elapsed,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            encodes as f64 / total as f64,
        );
        if delivered < total * subscribers as u64 {
            println!(
                "           lost {} deliveries (slow consumers closed: {})",
                total * subscribers as u64 - delivered,
                node.stats.refused(frontend::stats::Refusal::SlowConsumer)
            );
        }
    }
    shutdown.cancel();
}

async fn subscriber(
    addr: std::net::SocketAddr,
    codec: Codec,
    shared: Arc<Shared>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let url = format!("ws://{addr}/socketcluster/");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hs = json!({"event": "#handshake", "data": {}, "cid": 1});
    let sub = json!({"event": "#subscribe", "data": {"channel": "bench"}, "cid": 2});
    for p in [hs, sub] {
        let m = match codec {
            Codec::Json => Message::text(p.to_string()),
            Codec::MinBin => Message::Binary(Bytes::from(min_bin(&p))),
        };
        ws.send(m).await.unwrap();
    }
    let mut acked = 0;
    while acked < 2 {
        if let Some(Ok(Message::Text(_) | Message::Binary(_))) = ws.next().await {
            acked += 1;
        }
    }
    ready.send(()).await.unwrap();
    let mut local = Vec::with_capacity(64);
    while let Some(Ok(msg)) = ws.next().await {
        let now = shared.start.elapsed().as_micros() as u64;
        local.clear();
        match msg {
            Message::Text(t) if t.is_empty() => {
                let _ = ws.send(Message::text("")).await;
                continue;
            }
            Message::Text(t) => collect_json(serde_json::from_str(&t).unwrap(), &mut local),
            Message::Binary(b) => collect_bin(rmpv::decode::read_value(&mut &b[..]).unwrap(), &mut local),
            _ => continue,
        }
        shared.delivered.fetch_add(local.len() as u64, Ordering::Relaxed);
        let mut h = shared.hist.lock().unwrap();
        for sent in &local {
            let _ = h.record(now.saturating_sub(*sent).max(1));
        }
    }
}

fn collect_json(v: Value, out: &mut Vec<u64>) {
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| collect_json(i, out)),
        v => out.extend(v["data"]["data"].as_u64()),
    }
}

fn collect_bin(v: rmpv::Value, out: &mut Vec<u64>) {
    match v {
        rmpv::Value::Array(items) => items.into_iter().for_each(|i| collect_bin(i, out)),
        rmpv::Value::Map(m) => {
            for (k, v) in m {
                if k.as_str() == Some("p") {
                    out.extend(v[1].as_u64());
                }
            }
        }
        _ => {}
    }
}

/// `{e:[event,data,cid]}` in MessagePack, as sc-codec-min-bin writes it.
fn min_bin(p: &Value) -> Vec<u8> {
    let conv = |v: &Value| rmpv::ext::to_value(v).unwrap();
    let packet = rmpv::Value::Map(vec![(
        "e".into(),
        rmpv::Value::Array(vec![conv(&p["event"]), conv(&p["data"]), conv(&p["cid"])]),
    )]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &packet).unwrap();
    out
}
