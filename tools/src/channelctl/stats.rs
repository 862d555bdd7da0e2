//! `channelctl stats`: a channel's counters, as a table or JSON.

use std::io::Write;

use millrace_client::{ChannelStats, Client};
use serde_json::{json, Map, Value};

use super::{ChannelctlError, StatsArgs};

/// The table: a header line with the channel, then one counter per line, values
/// right-aligned.
pub fn render_table(channel: &str, stats: &ChannelStats) -> String {
    let name_width = stats
        .counters
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0)
        .max("COUNTER".len());
    let value_width = stats
        .counters
        .iter()
        .map(|(_, value)| value.to_string().len())
        .max()
        .unwrap_or(0)
        .max("VALUE".len());
    let mut table = format!("channel {channel}\n");
    table.push_str(&format!(
        "{:<name_width$}  {:>value_width$}\n",
        "COUNTER", "VALUE"
    ));
    for (name, value) in &stats.counters {
        table.push_str(&format!("{name:<name_width$}  {value:>value_width$}\n"));
    }
    table
}

/// The JSON: `{"channel":"c1","counters":{"ChannelSize":42,…}}`, counters as numbers,
/// keys sorted.
pub fn render_json(channel: &str, stats: &ChannelStats) -> Value {
    let counters: Map<String, Value> = stats
        .counters
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(*value)))
        .collect();
    json!({ "channel": channel, "counters": counters })
}

/// Prints a channel's counters.
pub(super) async fn run(args: &StatsArgs) -> Result<(), ChannelctlError> {
    let server = &args.server;
    let mut client = Client::connect(server.client_options()).await?;
    let channel = server.channel.as_str();
    let stats = client.stats(channel).await?;
    let text = if args.json {
        format!("{}\n", render_json(channel, &stats))
    } else {
        render_table(channel, &stats)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(ChannelctlError::stdout)
}
