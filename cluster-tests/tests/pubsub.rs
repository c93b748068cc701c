//! Pub/sub across frontends: a message published on one frontend reaches a
//! subscriber on another, through the channel's owning broker, exactly once.

use std::time::Duration;

use testkit::{Cluster, LoadGen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_published_on_one_frontend_reaches_a_subscriber_on_another_exactly_once_on_1000_channels() {
    let cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let table = cluster.slot_table().await;

    let load = LoadGen::builder()
        .channels(1000)
        .rate(5_000)
        .duration(Duration::from_secs(3))
        .publishers(2)
        .subscribers(2)
        .subscriber_frontends(vec![0])
        .publisher_frontends(vec![1])
        .start(&cluster)
        .await;
    // Both brokers carry a share of the channels, so both fabric paths are used.
    for id in ["b0", "b1"] {
        let owned = load.channels_owned_by(&table, id).len();
        assert!(owned > 300, "broker {id} owns only {owned} of 1000 channels in {table:?}");
    }
    let report = load.finish().await;
    println!("pubsub across frontends: {report}");
    report.assert_exact();
    assert!(report.published >= 10_000, "too little was published to mean anything: {report}");
}
