//! `channelctl put`: stdin lines to committed events.

use std::io::Write;

use millrace_client::{Client, Event};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{ChannelctlError, PutArgs};

/// One body per line: the line without its `\n` (and without a `\r` before it, so files
/// with Windows line endings put the same bodies).
fn body_of(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    line
}

async fn commit(
    client: &mut Client,
    channel: &str,
    batch: &mut Vec<Event>,
    committed_total: &mut u64,
) -> Result<(), ChannelctlError> {
    client.put_and_commit(channel, batch).await?;
    *committed_total += batch.len() as u64;
    batch.clear();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "committed {committed_total}")
        .and_then(|()| stdout.flush())
        .map_err(ChannelctlError::stdout)
}

pub(super) async fn run(args: &PutArgs) -> Result<(), ChannelctlError> {
    let mut client = Client::connect(args.server.client_options()).await?;
    let channel = args.server.channel.as_str();
    let batch_events = args.batch as usize;
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut batch = Vec::with_capacity(batch_events);
    let mut committed_total = 0u64;
    loop {
        let mut line = Vec::new();
        let read = stdin
            .read_until(b'\n', &mut line)
            .await
            .map_err(ChannelctlError::stdin)?;
        if read == 0 {
            break;
        }
        batch.push(Event::new(body_of(line)));
        if batch.len() == batch_events {
            commit(&mut client, channel, &mut batch, &mut committed_total).await?;
        }
    }
    if !batch.is_empty() {
        commit(&mut client, channel, &mut batch, &mut committed_total).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_not_part_of_the_body() {
        assert_eq!(body_of(b"one\n".to_vec()), b"one");
        assert_eq!(body_of(b"two\r\n".to_vec()), b"two");
        assert_eq!(body_of(b"last".to_vec()), b"last");
        assert_eq!(body_of(b"\n".to_vec()), b"");
    }
}
