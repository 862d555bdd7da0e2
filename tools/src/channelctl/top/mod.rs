//! `channelctl top`: a live view of a running channeld — channels (state, size against
//! capacity, put and take rates, commit latency, recovery), data dirs (bytes written,
//! syncs, mean sync time, free space against the guard) and adapters (state, restarts,
//! last error).
//!
//! It reads channeld's HTTP listener (`--http`, default `127.0.0.1:41451`): `/metrics`,
//! `/health` and `/status`, the endpoints the status page reads. The protocol's stats
//! request would not do: it answers for one named channel, knows nothing of data dirs
//! or adapters, and needs the auth token. Rates and interval means come from two
//! readings.
//!
//! On a terminal it redraws one screen in place (alternate screen, no scrolling) every
//! `--interval-ms`, until `q`, Esc or Ctrl-C (or SIGTERM/SIGHUP), and restores the
//! terminal. When stdout is not a terminal it prints plain `key=value` lines instead, one
//! per channel, data dir and adapter at each refresh, for logs and scripts; `--count N`
//! stops after N refreshes in either mode.

mod reading;
mod render;

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use self::reading::{channel_rates, read, ChannelRates, Reading};
use super::ChannelctlError;

/// channeld's default HTTP address (`server.http`).
pub const DEFAULT_HTTP_ADDRESS: &str = "127.0.0.1:41451";
/// Time between refreshes when `--interval-ms` is not given.
pub const DEFAULT_INTERVAL_MS: u64 = 1_000;
/// Put-rate samples kept per channel for the terminal's sparkline column.
const HISTORY_SAMPLES: usize = 24;
/// Key events buffered between refreshes; more are dropped (only `q` matters).
const KEY_QUEUE: usize = 64;

/// `channelctl top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// channeld's HTTP (metrics and health) address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP_ADDRESS)]
    pub http: String,

    /// Time between refreshes.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub interval_ms: u64,

    /// Stop after N refreshes (default: until q, Ctrl-C or a signal).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// A channel's figures with what the previous reading adds.
pub struct ChannelView<'a> {
    /// The reading.
    pub channel: &'a reading::ChannelReading,
    /// Rates and interval mean.
    pub rates: ChannelRates,
    /// Recent put rates, oldest first.
    pub history: Vec<f64>,
}

/// The state kept between refreshes.
#[derive(Default)]
struct Tracker {
    previous: Option<Reading>,
    history: HashMap<String, VecDeque<f64>>,
}

impl Tracker {
    /// Folds a new reading in; returns the views of its channels.
    fn update<'a>(&mut self, reading: &'a Reading) -> Vec<ChannelView<'a>> {
        let seconds = self.previous.as_ref().map_or(0.0, |previous| {
            reading.at.duration_since(previous.at).as_secs_f64()
        });
        let views = reading
            .channels
            .iter()
            .map(|channel| {
                let before = self.previous.as_ref().and_then(|previous| {
                    previous
                        .channels
                        .iter()
                        .find(|known| known.name == channel.name)
                });
                let rates = channel_rates(channel, before, seconds);
                let history = self.history.entry(channel.name.clone()).or_default();
                if let Some(rate) = rates.put_per_second {
                    history.push_back(rate);
                    if history.len() > HISTORY_SAMPLES {
                        history.pop_front();
                    }
                }
                ChannelView {
                    channel,
                    rates,
                    history: history.iter().copied().collect(),
                }
            })
            .collect();
        self.previous = Some(reading.clone());
        views
    }
}

/// Runs `top` until told to stop.
pub(super) async fn run(args: &TopArgs) -> Result<(), ChannelctlError> {
    let interval = Duration::from_millis(args.interval_ms);
    if std::io::stdout().is_terminal() {
        run_on_terminal(args, interval).await
    } else {
        run_plain(args, interval).await
    }
}

/// Plain lines, one block per refresh.
async fn run_plain(args: &TopArgs, interval: Duration) -> Result<(), ChannelctlError> {
    let mut tracker = Tracker::default();
    let mut refreshes = 0u64;
    let mut ticker = tokio::time::interval(interval);
    let mut stop = StopSignals::install()?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.received() => return Ok(()),
        }
        let lines = match read(&args.http).await {
            Ok(reading) => {
                let views = tracker.update(&reading);
                render::plain_lines(&reading, &views)
            }
            Err(error) => vec![render::plain_error_line(&error)],
        };
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            writeln!(stdout, "{line}").map_err(ChannelctlError::stdout)?;
        }
        stdout.flush().map_err(ChannelctlError::stdout)?;
        refreshes += 1;
        if args.count.is_some_and(|count| refreshes >= count) {
            return Ok(());
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, which end `top` (restoring the terminal first).
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hang_up: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, ChannelctlError> {
        let install = |kind| signal(kind).map_err(ChannelctlError::Signals);
        Ok(StopSignals {
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
            hang_up: install(SignalKind::hangup())?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
            _ = self.hang_up.recv() => {}
        }
    }
}

/// Raw mode and the alternate screen while it lives; the terminal as it was after.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<Self, ChannelctlError> {
        terminal::enable_raw_mode().map_err(ChannelctlError::stdout)?;
        let guard = TerminalGuard;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .map_err(ChannelctlError::stdout)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Whether a key asks to quit: q, Q, Esc, Ctrl-C (raw mode delivers it as a key).
fn quits(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
        && match key.code {
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Reads terminal events on a thread of its own (crossterm's reads block) and forwards
/// them; the thread ends with the process.
fn forward_terminal_events() -> mpsc::Receiver<Event> {
    let (sender, receiver) = mpsc::channel(KEY_QUEUE);
    std::thread::spawn(move || {
        while let Ok(event) = crossterm::event::read() {
            if sender.blocking_send(event).is_err() {
                return;
            }
        }
    });
    receiver
}

async fn run_on_terminal(args: &TopArgs, interval: Duration) -> Result<(), ChannelctlError> {
    let mut stop = StopSignals::install()?;
    let guard = TerminalGuard::enter()?;
    let mut events = forward_terminal_events();
    let mut tracker = Tracker::default();
    let mut ticker = tokio::time::interval(interval);
    let mut refreshes = 0u64;
    let mut good_frame: Vec<render::Line> = Vec::new();
    let mut frame: Vec<render::Line> = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                frame = match read(&args.http).await {
                    Ok(reading) => {
                        let views = tracker.update(&reading);
                        good_frame = render::screen(&args.http, &reading, &views);
                        good_frame.clone()
                    }
                    // The last good figures stay on screen under the error.
                    Err(error) => render::with_error(&args.http, &good_frame, &error),
                };
                refreshes += 1;
            }
            event = events.recv() => match event {
                Some(Event::Key(key)) if quits(&key) => break,
                Some(Event::Resize(..)) => {}
                Some(_) => continue,
                None => break,
            },
            () = stop.received() => break,
        }
        let (width, height) = terminal::size().map_err(ChannelctlError::stdout)?;
        render::draw(&mut std::io::stdout(), &frame, width, height)
            .map_err(ChannelctlError::stdout)?;
        if args.count.is_some_and(|count| refreshes >= count) {
            break;
        }
    }
    drop(guard);
    Ok(())
}
