//! Running planned components: each in its own task until the agent is stopped. A
//! component that fails or panics is restarted in the process with backoff
//! ([`RestartPolicy::InProcess`], channel-agent on its own), or ends the process with
//! its error ([`RestartPolicy::ExitProcess`], under channeld, whose supervisor restarts
//! the process and reports the failure on `/health`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_client::ClientOptions;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::connection::{Connection, StopHandle, StopSignal};
use crate::counters::{ComponentKind, SinkCounters, SourceCounters};
use crate::delivery::SourceDeadLetter;
use crate::plan::{client_options, ComponentPlan, SinkPlan};
use crate::pool::ServerPool;
use crate::sink_runner::{DeadLetter, SinkGroupRunner, SinkRunner, SinkUnit};
use crate::sinks::{AvroSink, ForwardSettings, ForwardSink, RollingFileSink, Sink, SinkKindPlan};
use crate::sources::ProcessorFactory;

/// First wait before restarting a failed component.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between restarts.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// How often counters are sent to channeld for its metrics.
pub const COUNTER_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// A component that ran this long before failing starts again at the first delay.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The counters of every component of this process, by Flume type and name.
#[derive(Debug, Default, Clone)]
pub struct AgentCounters {
    /// Sources.
    pub sources: BTreeMap<String, Arc<SourceCounters>>,
    /// Sinks.
    pub sinks: BTreeMap<String, Arc<SinkCounters>>,
}

impl AgentCounters {
    /// One entry per component, with Flume's counter names.
    pub fn snapshot(&self) -> Vec<ComponentSnapshot> {
        let sources = self
            .sources
            .iter()
            .map(|(name, counters)| ComponentSnapshot {
                kind: ComponentKind::Source,
                name: name.clone(),
                counters: counters.snapshot(),
            });
        let sinks = self.sinks.iter().map(|(name, counters)| ComponentSnapshot {
            kind: ComponentKind::Sink,
            name: name.clone(),
            counters: counters.snapshot(),
        });
        sources.chain(sinks).collect()
    }
}

/// One component's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSnapshot {
    /// Source or sink.
    pub kind: ComponentKind,
    /// Its name.
    pub name: String,
    /// Flume's counter names and values.
    pub counters: Vec<(&'static str, u64)>,
}

/// Where the components reach channeld.
#[derive(Debug, Clone)]
pub struct ServerAddress {
    /// `host:port` of the protocol listener.
    pub address: String,
    /// The shared token, when the server has one.
    pub auth_token: Option<String>,
}

impl ServerAddress {
    fn options(&self, component: &str) -> ClientOptions {
        client_options(&self.address, self.auth_token.as_deref(), component)
    }
}

fn build_sink(plan: &SinkPlan, server: &ServerAddress, counters: Arc<SinkCounters>) -> SinkRunner {
    let sink = match &plan.kind {
        SinkKindPlan::Logger(logger) => Sink::Logger(logger.clone()),
        SinkKindPlan::Null => Sink::Null,
        SinkKindPlan::RollingFile(settings) => {
            Sink::RollingFile(RollingFileSink::new(settings.clone()))
        }
        SinkKindPlan::Forward(target) => {
            let mut options =
                client_options(&target.address, target.auth_token.as_deref(), &plan.name);
            options.connect_timeout = target.connect_timeout;
            Sink::Forward(ForwardSink::new(ForwardSettings {
                options,
                remote_channel: target.remote_channel.clone(),
            }))
        }
        SinkKindPlan::Avro(settings) => {
            Sink::Avro(AvroSink::new(settings.clone(), Arc::clone(&counters)))
        }
        SinkKindPlan::Kafka(settings) => Sink::Kafka(Box::new(crate::sinks::KafkaSink::new(
            settings.as_ref().clone(),
            Arc::clone(&counters),
        ))),
    };
    let dead_letter = plan
        .dead_letter
        .as_ref()
        .map(|(channel, max_attempts)| DeadLetter {
            channel: channel.clone(),
            max_attempts: *max_attempts,
            connection: Connection::new(server.options(&plan.name)),
        });
    SinkRunner::new(
        plan.name.clone(),
        plan.channel.clone(),
        plan.batch_size,
        Connection::new(server.options(&plan.name)),
        sink,
        counters,
        dead_letter,
    )
}

/// Counters for every component of `plans`.
pub fn counters_for(plans: &[ComponentPlan]) -> AgentCounters {
    let mut counters = AgentCounters::default();
    let mut add_sink = |plan: &SinkPlan| {
        counters.sinks.insert(plan.name.clone(), Arc::default());
    };
    let mut sources = BTreeMap::new();
    for plan in plans {
        match plan {
            ComponentPlan::Source(source) => {
                sources.insert(source.name.clone(), Arc::default());
            }
            ComponentPlan::Sink(sink) => add_sink(sink),
            ComponentPlan::SinkGroup { sinks, .. } => sinks.iter().for_each(&mut add_sink),
        }
    }
    counters.sources = sources;
    counters
}

/// Runs one component once, until it fails or `stop` is raised.
async fn run_once(
    plan: &ComponentPlan,
    server: &ServerAddress,
    counters: &AgentCounters,
    stop: StopSignal,
) -> Result<(), String> {
    match plan {
        ComponentPlan::Source(source) => {
            let processors = ProcessorFactory {
                channels: source.channels.clone(),
                selector: source.selector.clone(),
                pool: ServerPool::new(server.options(&source.name), source.channeld_connections),
                counters: Arc::clone(&counters.sources[&source.name]),
                interceptors: source.interceptors.clone(),
                dead_letter: source
                    .dead_letter_channel
                    .clone()
                    .map(|channel| SourceDeadLetter {
                        channel,
                        source: source.name.clone(),
                    }),
            };
            source
                .kind
                .clone()
                .run(processors, stop)
                .await
                .map_err(|error| format!("source {}: {error}", source.name))
        }
        ComponentPlan::Sink(sink) => {
            let runner = build_sink(sink, server, Arc::clone(&counters.sinks[&sink.name]));
            SinkUnit::Single(Box::new(runner))
                .run(stop)
                .await
                .map_err(|error| error.to_string())
        }
        ComponentPlan::SinkGroup {
            name,
            processor,
            sinks,
        } => {
            let runners = sinks
                .iter()
                .map(|sink| build_sink(sink, server, Arc::clone(&counters.sinks[&sink.name])))
                .collect();
            SinkUnit::Group(Box::new(SinkGroupRunner::new(
                name.clone(),
                runners,
                processor,
            )))
            .run(stop)
            .await
            .map_err(|error| error.to_string())
        }
    }
}

/// What happens to a component that fails or panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart it in this process, with a delay that doubles from 0.5 s to 30 s.
    InProcess,
    /// Stop the agent with the failure, for a supervisor that restarts processes and
    /// reports what failed (channeld).
    ExitProcess,
}

/// A component that failed under [`RestartPolicy::ExitProcess`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("component {component} failed: {error}")]
pub struct ComponentFailed {
    /// The component's name.
    pub component: String,
    /// What went wrong.
    pub error: String,
}

/// Runs `plan` until `stop` is raised. After a failure or a panic it is restarted with a
/// delay that doubles from 0.5 s to 30 s (and starts over after a minute of health), or,
/// under [`RestartPolicy::ExitProcess`], the failure is returned.
pub async fn supervise(
    plan: ComponentPlan,
    server: ServerAddress,
    counters: AgentCounters,
    mut stop: StopSignal,
    policy: RestartPolicy,
) -> Result<(), ComponentFailed> {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let started = Instant::now();
        let attempt = {
            let plan = plan.clone();
            let server = server.clone();
            let counters = counters.clone();
            let stop = stop.clone();
            tokio::spawn(async move { run_once(&plan, &server, &counters, stop).await })
        };
        let failure = match attempt.await {
            Ok(Ok(())) if stop.is_raised() => return Ok(()),
            Ok(Ok(())) => {
                // A component that ends by itself (an exec source whose command exited,
                // without `restart`) is done, as in Flume: it is not started again, and
                // the process stays up so its supervisor does not restart it either.
                info!(
                    component = plan.name(),
                    "component finished; idle until stopped"
                );
                stop.raised().await;
                return Ok(());
            }
            Ok(Err(failure)) => failure,
            Err(join_error) => format!("panicked: {join_error}"),
        };
        if policy == RestartPolicy::ExitProcess {
            error!(component = plan.name(), error = %failure, "component failed; stopping for the supervisor to restart it");
            return Err(ComponentFailed {
                component: plan.name().to_string(),
                error: failure,
            });
        }
        if started.elapsed() >= HEALTHY_RUN {
            delay = FIRST_RESTART_DELAY;
        }
        error!(component = plan.name(), error = %failure, restart_in_ms = delay.as_millis() as u64, "component failed; restarting");
        if !stop.sleep(delay).await {
            return Ok(());
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// Sends every component's counters to channeld, which publishes them on its metrics.
async fn report_counters(connection: &mut Connection, counters: &AgentCounters) {
    for snapshot in counters.snapshot() {
        let named: Vec<(String, u64)> = snapshot
            .counters
            .iter()
            .map(|(name, value)| ((*name).to_string(), *value))
            .collect();
        let outcome = match connection.client().await {
            Ok(client) => {
                client
                    .report_counters(snapshot.kind.flume_type(), &snapshot.name, named)
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            connection.forget_if_broken(&error);
            debug!(%error, "could not report counters; will try again");
            return;
        }
    }
}

/// Reports counters every [`COUNTER_REPORT_INTERVAL`] until `stop`, then once more.
async fn report_counters_until_stopped(
    server: ServerAddress,
    counters: AgentCounters,
    mut stop: StopSignal,
) {
    let mut connection = Connection::new(server.options("counters"));
    loop {
        report_counters(&mut connection, &counters).await;
        if !stop.sleep(COUNTER_REPORT_INTERVAL).await {
            break;
        }
    }
    report_counters(&mut connection, &counters).await;
}

/// Runs `plans` until `stop` is raised; returns once every component has stopped. Under
/// [`RestartPolicy::ExitProcess`] the first failure stops the others and is returned.
pub async fn run_components(
    plans: Vec<ComponentPlan>,
    server: ServerAddress,
    counters: AgentCounters,
    stop: &StopHandle,
    policy: RestartPolicy,
) -> Result<(), ComponentFailed> {
    let reporter = tokio::spawn(report_counters_until_stopped(
        server.clone(),
        counters.clone(),
        stop.signal(),
    ));
    let mut tasks = JoinSet::new();
    for plan in plans {
        info!(component = plan.name(), "starting");
        tasks.spawn(supervise(
            plan,
            server.clone(),
            counters.clone(),
            stop.signal(),
            policy,
        ));
    }
    let mut first_failure = None;
    while let Some(outcome) = tasks.join_next().await {
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                stop.stop();
                first_failure.get_or_insert(failure);
            }
            Err(error) => warn!(%error, "a component supervisor ended abnormally"),
        }
    }
    let _ = reporter.await;
    first_failure.map_or(Ok(()), Err)
}
