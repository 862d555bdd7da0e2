//! Shared code for channelctl and channel-bench.
