//! `channelctl put`: stdin lines to committed events.

use std::io::Write;

use millrace_client::{Client, Event};
use millrace_protocol::{encoded_event_bytes, single_event_frame_bytes, NO_HEADERS};
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

/// Refuses a body that no take could ever return: an `Events` frame carrying it alone
/// would exceed the frames this server sends (its `maxFrameBytes`), which is also the
/// most `channelctl take` and the client library accept. Put anyway, it would sit at
/// the head of the channel and fail every take with `FRAME_TOO_LARGE`.
fn check_takeable(
    body: &[u8],
    line: u64,
    server_max_frame_bytes: u32,
) -> Result<(), ChannelctlError> {
    let event_bytes =
        encoded_event_bytes(NO_HEADERS, body.len()).map_err(millrace_client::ClientError::from)?;
    let frame_bytes = single_event_frame_bytes(event_bytes);
    if frame_bytes > u64::from(server_max_frame_bytes) {
        return Err(ChannelctlError::EventNeverTakeable {
            line,
            body_bytes: body.len() as u64,
            frame_bytes,
            max_frame_bytes: server_max_frame_bytes,
        });
    }
    Ok(())
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
    let server_max_frame_bytes = client.receive_max_frame_bytes();
    let channel = args.server.channel.as_str();
    let batch_events = args.batch as usize;
    let mut line_number = 0u64;
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
        line_number += 1;
        let body = body_of(line);
        check_takeable(&body, line_number, server_max_frame_bytes)?;
        batch.push(Event::new(body));
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
    fn a_body_whose_events_frame_would_exceed_the_server_limit_is_refused() {
        let limit = 262_144u32;
        // An Events frame of one header-less event: 9 (header) + 4 (count) + 2 + 4 + body.
        let largest_body = limit as usize - 19;
        assert!(check_takeable(&vec![b'x'; largest_body], 1, limit).is_ok());
        let refused = check_takeable(&vec![b'x'; largest_body + 1], 7, limit).unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("line 7"), "{message}");
        assert!(message.contains("262144"), "{message}");
    }

    #[test]
    fn line_endings_are_not_part_of_the_body() {
        assert_eq!(body_of(b"one\n".to_vec()), b"one");
        assert_eq!(body_of(b"two\r\n".to_vec()), b"two");
        assert_eq!(body_of(b"last".to_vec()), b"last");
        assert_eq!(body_of(b"\n".to_vec()), b"");
    }
}
