//! The operator reports channeld sends, from `millrace_ops::reports`: the same code
//! builds them for a stopped channel in `channelctl`. A live channel's inspect report
//! carries its Flume counters, named as `/metrics` names them.

use millrace_engine::inspect::LiveInspection;
use millrace_engine::ChannelStats;
use serde_json::Value;

pub(crate) use millrace_ops::reports::{replay_report, resolve_replay_point};

use crate::metrics::flume_counters;

/// The inspect report of a running channel: its scan joined with its queue, open
/// transactions and Flume counters.
pub(crate) fn live_inspect_report(inspection: &LiveInspection, stats: &ChannelStats) -> Value {
    millrace_ops::reports::live_inspect_report(inspection, &flume_counters(stats))
}
