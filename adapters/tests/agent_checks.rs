//! The checks that span components (`millrace_adapters::check`), on configuration text:
//! batch sizes against the channels' transactions, ports against channeld's listeners
//! and each other. The end-to-end tests in `tests/tests/validate.rs` run the same checks
//! through `channelctl validate` and a starting channeld.

use std::path::Path;

use millrace_adapters::check::{check_reading, CheckOptions, CheckedAgent, ListenerOverrides};
use millrace_adapters::plan::ComponentPlan;
use millrace_adapters::sources::SourceKind;
use millrace_config::{read_agent_config_text, ConfigErrors};

const FILE: &str = "agent.conf";

fn check(text: &str, options: &CheckOptions) -> Result<CheckedAgent, ConfigErrors> {
    let reading = read_agent_config_text(text, FILE, "a1", Path::new("data"));
    check_reading(reading, FILE, options)
}

fn messages(errors: &ConfigErrors) -> Vec<String> {
    errors.errors.iter().map(ToString::to_string).collect()
}

/// The batch size each batching source was planned with, by name.
fn planned_batch_sizes(checked: &CheckedAgent) -> Vec<(String, usize)> {
    checked
        .components
        .iter()
        .filter_map(|component| match component {
            ComponentPlan::Source(source) => {
                let batch_size = match &source.kind {
                    SourceKind::SpoolDir(settings) => settings.batch_size,
                    SourceKind::Exec(settings) => settings.batch_size,
                    SourceKind::SyslogTcp(settings) | SourceKind::SyslogUdp(settings) => {
                        settings.batch_size
                    }
                    SourceKind::Taildir(settings) => settings.batch_size,
                    SourceKind::Seq(settings) => settings.batch_size,
                    SourceKind::MultiportSyslogTcp(settings) => settings.syslog.batch_size,
                    SourceKind::Kafka(settings) => settings.batch_size,
                    SourceKind::Netcat(_)
                    | SourceKind::NetcatUdp(_)
                    | SourceKind::Http(_)
                    | SourceKind::Avro(_) => return None,
                };
                Some((source.name.clone(), batch_size))
            }
            _ => None,
        })
        .collect()
}

const TWO_SMALL_CHANNELS: &str = "\
a1.channels = c10 c50
a1.channels.c10.type = memory
a1.channels.c10.transactionCapacity = 10
a1.channels.c50.type = spillablememory
a1.channels.c50.checkpointDir = c50/checkpoint
a1.channels.c50.dataDirs = c50/data
a1.channels.c50.transactionCapacity = 50
";

#[test]
fn a_default_batch_is_lowered_to_the_smallest_transaction_capacity_of_its_channels() {
    let text = format!(
        "{TWO_SMALL_CHANNELS}\
         a1.sources = syslog spool exec
         a1.sources.syslog.type = syslogudp
         a1.sources.syslog.port = 5140
         a1.sources.syslog.channels = c50 c10
         a1.sources.spool.type = spooldir
         a1.sources.spool.spoolDir = /var/spool/in
         a1.sources.spool.channels = c50
         a1.sources.exec.type = exec
         a1.sources.exec.command = tail -F /var/log/messages
         a1.sources.exec.channels = c50
"
    );
    let checked = check(&text, &CheckOptions::default()).unwrap();
    assert_eq!(
        planned_batch_sizes(&checked),
        [
            ("syslog".to_string(), 10),
            ("spool".to_string(), 50),
            ("exec".to_string(), 20),
        ],
        "exec's default of 20 fits"
    );
}

#[test]
fn a_batch_set_to_the_transaction_capacity_is_kept_and_one_above_is_refused_once() {
    let text = format!(
        "{TWO_SMALL_CHANNELS}\
a1.sources = fits over
a1.sources.fits.type = exec
a1.sources.fits.command = true
a1.sources.fits.channels = c10
a1.sources.fits.batchSize = 10
a1.sources.over.type = spooldir
a1.sources.over.spoolDir = /var/spool/in
a1.sources.over.channels = c10 c50
a1.sources.over.batchSize = 60
"
    );
    let errors = check(&text, &CheckOptions::default()).unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "agent.conf:16: a1.sources.over.batchSize: expected at most 10, the \
          transactionCapacity of channel c10 (a1.channels.c10.transactionCapacity on line 3), \
          got 60: the channel refuses a larger transaction"
        ],
        "reported once, against the smallest channel"
    );
}

#[test]
fn a_channel_default_transaction_capacity_is_named_as_such() {
    let text = "\
a1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
a1.sources = r1
a1.sources.r1.type = syslogtcp
a1.sources.r1.port = 5140
a1.sources.r1.channels = c1
a1.sources.r1.batchSize = 500
";
    let errors = check(text, &CheckOptions::default()).unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "agent.conf:8: a1.sources.r1.batchSize: expected at most 100, the \
          transactionCapacity of channel c1 (a1.channels.c1.transactionCapacity, not set: the \
          memory channel default), got 500: the channel refuses a larger transaction"
        ]
    );
}

const SOURCE_ON_41460: &str = "\
a1.channels = c1
a1.channels.c1.type = memory
a1.sources = r1
a1.sources.r1.type = http
a1.sources.r1.channels = c1
a1.sources.r1.port = 41460
";

#[test]
fn ports_are_compared_with_the_listeners_as_channelds_flags_move_them() {
    let moved = CheckOptions {
        listeners: Some(ListenerOverrides {
            bind: Some("0.0.0.0:41460".parse().unwrap()),
            http: None,
        }),
        files: false,
    };
    let errors = check(SOURCE_ON_41460, &moved).unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "agent.conf:6: a1.sources.r1.port: expected a TCP port no other listener of agent a1 \
          uses, got 41460 (on 0.0.0.0), where channeld's protocol listener (--bind \
          0.0.0.0:41460) already listens"
        ]
    );
    assert!(
        check(SOURCE_ON_41460, &CheckOptions::everything()).is_ok(),
        "the file's own server.bind is the default 41450"
    );
    let skipped = CheckOptions {
        listeners: None,
        files: false,
    };
    let config_with_collision = format!("{SOURCE_ON_41460}a1.server.bind = 127.0.0.1:41460\n");
    assert!(
        check(&config_with_collision, &skipped).is_ok(),
        "channel-agent running components leaves ports to the components"
    );
}

#[test]
fn a_listener_whose_own_key_is_wrong_is_not_compared() {
    // Without the mistake the HTTP listener would be on 41451; the default standing in
    // for the refused value is not what the user meant, so no collision is reported.
    let text = "\
a1.channels = c1
a1.channels.c1.type = memory
a1.server.http = 127.0.0.1:4145l
a1.sources = r1
a1.sources.r1.type = netcat
a1.sources.r1.channels = c1
a1.sources.r1.port = 41451
";
    let errors = check(text, &CheckOptions::everything()).unwrap_err();
    let messages = messages(&errors);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("agent.conf:3: a1.server.http: expected"),
        "{messages:?}"
    );
}
