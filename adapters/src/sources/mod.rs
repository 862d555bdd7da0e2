//! Sources: read events from the outside and put them on their channels.
//!
//! Every source hands its events to a [`ChannelProcessor`] and only acknowledges its
//! input (an `OK` line, a renamed file, an HTTP 200) once the puts are committed.

pub mod netcat;
pub mod spooldir;

use std::sync::Arc;

use millrace_client::ClientOptions;
use millrace_server::config::ChannelSelector;
use thiserror::Error;

use crate::connection::{Connection, StopSignal};
use crate::counters::SourceCounters;
use crate::delivery::{ChannelProcessor, DeliveryError};
use crate::file_problem::FileProblem;
use crate::interceptors::Interceptor;

pub use netcat::NetcatSettings;
pub use spooldir::SpoolDirSettings;

/// Why a source stopped.
#[derive(Debug, Error)]
pub enum SourceError {
    /// Its listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port`.
        address: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be read, written or renamed.
    #[error("{0}")]
    File(#[from] FileProblem),
    /// An assumption of the source was broken (a spooled file changed while being
    /// read, a name reused); it stops so an operator can look.
    #[error("FATAL: {0}. Restart or reconfigure the source to continue processing.")]
    Violation(String),
    /// The channel refused events for what they are.
    #[error("{0}")]
    Delivery(#[from] DeliveryError),
    /// The command of an `exec` source could not be started.
    #[error("cannot run {command:?}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// Makes [`ChannelProcessor`]s for a source: one per client connection it serves.
#[derive(Debug, Clone)]
pub struct ProcessorFactory {
    /// The source's channels, in its `channels` order.
    pub channels: Vec<String>,
    /// Its selector.
    pub selector: ChannelSelector,
    /// How to reach channeld.
    pub options: ClientOptions,
    /// The source's counters.
    pub counters: Arc<SourceCounters>,
    /// Its interceptors, in order.
    pub interceptors: Vec<Interceptor>,
}

impl ProcessorFactory {
    /// A processor with its own connection to channeld.
    pub fn build(&self) -> ChannelProcessor {
        ChannelProcessor::new(
            self.channels.clone(),
            self.selector.clone(),
            Connection::new(self.options.clone()),
            Arc::clone(&self.counters),
        )
        .with_interceptors(self.interceptors.clone())
    }
}

/// One configured source.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// `netcat`.
    Netcat(NetcatSettings),
    /// `spooldir`.
    SpoolDir(SpoolDirSettings),
}

impl SourceKind {
    /// Runs the source until `stop` is raised or it fails.
    pub async fn run(
        self,
        processors: ProcessorFactory,
        stop: StopSignal,
    ) -> Result<(), SourceError> {
        let counters = Arc::clone(&processors.counters);
        match self {
            SourceKind::Netcat(settings) => netcat::run(settings, processors, counters, stop).await,
            SourceKind::SpoolDir(settings) => {
                spooldir::run(settings, processors.build(), counters, stop).await
            }
        }
    }
}
