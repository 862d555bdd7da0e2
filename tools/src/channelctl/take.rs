//! `channelctl take`: events to stdout lines, committed once written.

use std::io::Write;
use std::time::Duration;

use millrace_client::Client;

use super::{ChannelctlError, TakeArgs};

pub(super) async fn run(args: &TakeArgs) -> Result<(), ChannelctlError> {
    let mut client = Client::connect(args.server.client_options()).await?;
    let channel = args.server.channel.as_str();
    let wait = Duration::from_millis(u64::from(args.wait_ms));
    let mut taken_total = 0u64;
    loop {
        let wanted = match args.max {
            Some(max) => (max - taken_total).min(u64::from(args.batch)) as u32,
            None => args.batch,
        };
        client.begin(channel).await?;
        let events = client.take(wanted, wait).await?;
        if events.is_empty() {
            client.rollback().await?;
            if args.follow {
                continue;
            }
            return Ok(());
        }
        {
            let mut stdout = std::io::stdout().lock();
            for event in &events {
                stdout
                    .write_all(&event.body)
                    .and_then(|()| stdout.write_all(b"\n"))
                    .map_err(ChannelctlError::stdout)?;
            }
            // The events are committed (removed from the channel) only once they have
            // left this process.
            stdout.flush().map_err(ChannelctlError::stdout)?;
        }
        client.commit().await?;
        taken_total += events.len() as u64;
        if args.max.is_some_and(|max| taken_total >= max) {
            return Ok(());
        }
    }
}
