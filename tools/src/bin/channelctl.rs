//! `channelctl`: put, take, inspect and check Millrace channels. See
//! `docs/operations.md`.

use clap::Parser;
use millrace_tools::channelctl::{self, ChannelctlArgs, ChannelctlError};

fn main() {
    millrace_clidocs::write_if_requested::<ChannelctlArgs>();
    let args = ChannelctlArgs::parse();
    if let Err(error) = channelctl::run(args) {
        if !matches!(
            error,
            ChannelctlError::InvalidConfig { .. } | ChannelctlError::Finished { .. }
        ) {
            eprintln!("channelctl: {error}");
        }
        std::process::exit(error.exit_code());
    }
}
