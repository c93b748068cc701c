//! `loadtest`: load scenarios against any SocketCluster-protocol endpoint
//! (our frontends, or socketcluster-server / SCC), measured with
//! `hdrhistogram`, reported as JSON with an SVG plot.
//!
//! Layout: [`scenario`] holds one module per clap subcommand; [`workers`]
//! spreads a scenario over generator processes; [`client`] is the lean
//! protocol client; [`stamp`] is the message payload; [`progress`],
//! [`report`] and [`plot`] are the output; [`sys`] reads the machine.

pub mod client;
pub mod plot;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod stamp;
pub mod stats;
pub mod sys;
pub mod table;
pub mod workers;

pub use report::Report;
pub use scenario::run;
