//! Bad configurations and the exact messages they produce. Each message must name the
//! file, the line, the key and what was expected, so an operator can fix it unaided.

use std::path::Path;

use millrace_config::{
    load_agent_config, parse_agent_config, read_agent_config_text, ChannelSelector, ConfigErrors,
};

const FILE: &str = "agent.conf";

fn errors_of(text: &str) -> ConfigErrors {
    errors_of_agent(text, "a1")
}

fn errors_of_agent(text: &str, agent: &str) -> ConfigErrors {
    match parse_agent_config(text, FILE, agent, Path::new("base")) {
        Ok(config) => panic!("expected errors for:\n{text}\ngot {config:#?}"),
        Err(errors) => errors,
    }
}

/// Each row: a configuration and the one message it must produce.
#[test]
fn each_kind_of_mistake_gets_a_precise_message() {
    let table: &[(&str, &str, &str)] = &[
        (
            "unknown channel key, with a suggestion",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.capasity = 10\n",
            "agent.conf:3: a1.channels.c1.capasity: unknown key; expected a file channel key \
             (did you mean \"capacity\"?)",
        ),
        (
            "unknown channel key, far from any known key",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c1.colour = blue\n",
            "agent.conf:3: a1.channels.c1.colour: unknown key; expected a memory channel key: \
             type, capacity, transactionCapacity, keep-alive, byteCapacity, \
             byteCapacityBufferPercentage",
        ),
        (
            "bad number",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c1.capacity = ten\n",
            "agent.conf:3: a1.channels.c1.capacity: expected a positive integer, got \"ten\"",
        ),
        (
            "zero, which Flume would silently replace by the default",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.transactionCapacity = 0\n",
            "agent.conf:3: a1.channels.c1.transactionCapacity: expected a positive integer, \
             got \"0\"",
        ),
        (
            "bad boolean, which Flume would read as false",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.fsyncPerTransaction = yes\n",
            "agent.conf:3: a1.channels.c1.fsyncPerTransaction: expected true or false, got \
             \"yes\"",
        ),
        (
            "missing type, reported on the declaration",
            "a1.channels = c1\n\
             a1.channels.c1.capacity = 10\n",
            "agent.conf:1: a1.channels.c1.type: expected a channel type: memory, file, \
             spillablememory or kafka (or Flume's class name for one of them), but the key is missing",
        ),
        (
            "declared channel with no keys at all",
            "a1.channels = c1 c2\n\
             a1.channels.c1.type = memory\n",
            "agent.conf:1: a1.channels.c2.type: expected a channel type: memory, file, \
             spillablememory or kafka (or Flume's class name for one of them), but the key is missing",
        ),
        (
            "unsupported channel type",
            "a1.channels = c1\n\
             a1.channels.c1.type = jdbc\n",
            "agent.conf:2: a1.channels.c1.type: expected a channel type: memory, file, \
             spillablememory or kafka (or Flume's class name for one of them); Millrace does not \
             provide the JDBC channel: use a file channel (durable, recovered after kill -9 and \
             power loss) (docs/adapters.md, \"What we do not run\"), got \"jdbc\"",
        ),
        (
            "transactionCapacity above capacity",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c1.capacity = 10\n\
             a1.channels.c1.transactionCapacity = 11\n",
            "agent.conf:4: a1.channels.c1.transactionCapacity: expected at most capacity (10), \
             got 11",
        ),
        (
            "capacity below the default transactionCapacity",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.capacity = 500\n",
            "agent.conf:3: a1.channels.c1.capacity: expected at least transactionCapacity \
             (10000, its default), got 500",
        ),
        (
            "spillable overflow smaller than a transaction",
            "a1.channels = c1\n\
             a1.channels.c1.type = spillablememory\n\
             a1.channels.c1.overflowCapacity = 5000\n",
            "agent.conf:3: a1.channels.c1.overflowCapacity: expected at least \
             transactionCapacity (10000, its default), got 5000",
        ),
        (
            "spillable channel that can hold nothing",
            "a1.channels = c1\n\
             a1.channels.c1.type = spillablememory\n\
             a1.channels.c1.memoryCapacity = 0\n\
             a1.channels.c1.overflowCapacity = 0\n",
            "agent.conf:4: a1.channels.c1.overflowCapacity: expected memoryCapacity or \
             overflowCapacity to be positive, got 0 for both (the channel could hold nothing)",
        ),
        (
            "byteCapacity too small for one slot",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c1.byteCapacity = 100\n",
            "agent.conf:3: a1.channels.c1.byteCapacity: expected at least 125 bytes, enough \
             for the 100-byte slot Flume counts bodies in after byteCapacityBufferPercentage \
             (20%), got 100",
        ),
        (
            "maxFileSize below the smallest useful segment",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.maxFileSize = 100\n",
            "agent.conf:3: a1.channels.c1.maxFileSize: expected at least 1024 bytes (a segment \
             must hold its header and a few records), got \"100\"",
        ),
        (
            "empty dataDirs entry",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.dataDirs = /d1,,/d2\n",
            "agent.conf:3: a1.channels.c1.dataDirs: expected a comma-separated list of \
             directories without empty entries, got \"/d1,,/d2\"",
        ),
        (
            "checkpoint directory inside the data directories",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.checkpointDir = /flume/c1\n\
             a1.channels.c1.dataDirs = /flume/d1, /flume/c1/\n",
            "agent.conf:4: a1.channels.c1.dataDirs: expected a directory not already used as \
             a1.channels.c1.checkpointDir (line 3), got \"/flume/c1/\"",
        ),
        (
            "two channels sharing a directory",
            "a1.channels = c1 c2\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.dataDirs = /flume/data\n\
             a1.channels.c2.type = file\n\
             a1.channels.c2.dataDirs = /flume/data\n",
            "agent.conf:5: a1.channels.c2.dataDirs: expected a directory not already used as \
             a1.channels.c1.dataDirs (line 3), got \"/flume/data\"",
        ),
        (
            "a directory that is another channel's default",
            "a1.channels = c1 c2\n\
             a1.channels.c1.type = file\n\
             a1.channels.c2.type = file\n\
             a1.channels.c2.checkpointDir = base/c1/data\n",
            "agent.conf:4: a1.channels.c2.checkpointDir: expected a directory not already used \
             as a1.channels.c1.dataDirs (default), got \"base/c1/data\"",
        ),
        (
            "dual checkpoints without a backup directory",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.useDualCheckpoints = true\n",
            "agent.conf:3: a1.channels.c1.backupCheckpointDir: expected a directory for the \
             backup checkpoint because useDualCheckpoints = true, but the key is missing",
        ),
        (
            "backup checkpoint in the checkpoint directory",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.checkpointDir = /cp\n\
             a1.channels.c1.useDualCheckpoints = true\n\
             a1.channels.c1.backupCheckpointDir = /cp/\n",
            "agent.conf:5: a1.channels.c1.backupCheckpointDir: expected a directory not already \
             used as a1.channels.c1.checkpointDir (line 3), got \"/cp/\"",
        ),
        (
            "source writing to an unknown channel",
            "a1.channels = c1\n\
             a1.sources = r1\n\
             a1.channels.c1.type = memory\n\
             a1.sources.r1.type = netcat\n\
             a1.sources.r1.channels = c1 c2\n",
            "agent.conf:5: a1.sources.r1.channels: expected a channel listed in a1.channels \
             (c1), got \"c2\"",
        ),
        (
            "sink reading from an unknown channel",
            "a1.channels = c1\n\
             a1.sinks = k1\n\
             a1.channels.c1.type = memory\n\
             a1.sinks.k1.type = logger\n\
             a1.sinks.k1.channel = c9\n",
            "agent.conf:5: a1.sinks.k1.channel: expected a channel listed in a1.channels (c1), \
             got \"c9\"",
        ),
        (
            "sink with the plural key of sources",
            "a1.channels = c1\n\
             a1.sinks = k1\n\
             a1.channels.c1.type = memory\n\
             a1.sinks.k1.type = logger\n\
             a1.sinks.k1.channels = c1\n",
            "agent.conf:2: a1.sinks.k1.channel: expected exactly one channel name (sinks use \
             the singular key channel; channels is for sources), but the key is missing",
        ),
        (
            "sink with two channels",
            "a1.channels = c1 c2\n\
             a1.sinks = k1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c2.type = memory\n\
             a1.sinks.k1.type = logger\n\
             a1.sinks.k1.channel = c1 c2\n",
            "agent.conf:6: a1.sinks.k1.channel: expected exactly one channel name, got \"c1 c2\"",
        ),
        (
            "selector routing to a channel its source does not write to",
            "a1.channels = c1 c2\n\
             a1.sources = r1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c2.type = memory\n\
             a1.sources.r1.type = http\n\
             a1.sources.r1.channels = c1\n\
             a1.sources.r1.selector.type = multiplexing\n\
             a1.sources.r1.selector.mapping.CA = c2\n\
             a1.sources.r1.selector.default = c1\n",
            "agent.conf:8: a1.sources.r1.selector.mapping.CA: expected a channel listed in \
             a1.sources.r1.channels (c1), got \"c2\"",
        ),
        (
            "misspelt selector type",
            "a1.channels = c1\n\
             a1.sources = r1\n\
             a1.channels.c1.type = memory\n\
             a1.sources.r1.type = http\n\
             a1.sources.r1.channels = c1\n\
             a1.sources.r1.selector.type = replicatng\n",
            "agent.conf:6: a1.sources.r1.selector.type: expected replicating, multiplexing, \
             load_balancing or a channel selector class name, got \"replicatng\"",
        ),
        (
            "key set again to another value",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c1.capacity = 1000\n\
             a1.channels.c1.capacity = 2000\n",
            "agent.conf:4: a1.channels.c1.capacity: expected each key once, got \"2000\" here \
             after \"1000\" on line 3 (Flume would silently keep the last)",
        ),
        (
            "duplicate key spelt differently but equal after Java unescaping",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c1.capacity = 1000\n\
             a1.channels.c1.capa\\u0063ity = 2000\n",
            "agent.conf:4: a1.channels.c1.capacity: expected each key once, got \"2000\" here \
             after \"1000\" on line 3 (Flume would silently keep the last)",
        ),
        (
            "bad host:port",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.server.bind = localhost\n",
            "agent.conf:3: a1.server.bind: expected a host:port address such as \
             127.0.0.1:41450 (IPv6 in brackets, as [::1]:41450), got \"localhost\"",
        ),
        (
            "unbracketed IPv6 address",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.server.http = ::1:9000\n",
            "agent.conf:3: a1.server.http: expected a host:port address such as \
             127.0.0.1:41450 (IPv6 in brackets, as [::1]:41450), got \"::1:9000\"",
        ),
        (
            "both listeners on one address",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.server.http = 127.0.0.1:41450\n",
            "agent.conf:3: a1.server.http: expected server.bind and server.http to differ, got \
             127.0.0.1:41450 for both",
        ),
        (
            "unknown I/O backend",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.server.ioBackend = uring\n",
            "agent.conf:3: a1.server.ioBackend: expected auto, io_uring or pwrite, got \"uring\"",
        ),
        (
            "unknown server setting",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.server.maxConnection = 10\n",
            "agent.conf:3: a1.server.maxConnection: unknown key; expected a server setting \
             (did you mean \"maxConnections\"?)",
        ),
        (
            "undeclared channel",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c2.type = memory\n",
            "agent.conf:3: a1.channels.c2.type: expected a channel listed in a1.channels (c1), \
             got \"c2\"",
        ),
        (
            "undeclared sink when the agent lists no sinks",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.sinks.k1.type = logger\n",
            "agent.conf:3: a1.sinks.k1.type: expected a sink listed in a1.sinks, which lists \
             none, got \"k1\"",
        ),
        (
            "unknown top-level key, with a suggestion",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.sink = k1\n",
            "agent.conf:3: a1.sink: unknown key; expected a key starting a1.sources, \
             a1.channels, a1.sinks, a1.sinkgroups or a1.server (did you mean a1.sinks?)",
        ),
        (
            "component key without a setting",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             a1.channels.c1 = memory\n",
            "agent.conf:3: a1.channels.c1: unknown key; expected a key of the form \
             a1.channels.<name>.<setting>",
        ),
        (
            "key without an agent",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             channels = c1\n",
            "agent.conf:3: channels: unknown key; expected a key of the form AGENT.KEY, such as \
             a1.channels",
        ),
        (
            "component name with a dot",
            "a1.channels = c1 c.2\n\
             a1.channels.c1.type = memory\n",
            "agent.conf:1: a1.channels: expected channel names without dots (a dot ends the \
             name in keys), got \"c.2\"",
        ),
        (
            "component listed twice",
            "a1.channels = c1 c1\n\
             a1.channels.c1.type = memory\n",
            "agent.conf:1: a1.channels: expected each channel once, got \"c1\"",
        ),
        (
            "agent without channels",
            "a1.server.bind = 127.0.0.1:5000\n",
            "agent.conf: a1.channels: expected a space-separated list of channel names, but \
             the key is missing",
        ),
        (
            "malformed unicode escape (Java refuses the whole file)",
            "a1.channels = c1\n\
             a1.channels.c1.type = memory\n\
             other.note = caf\\u00e\n",
            "agent.conf:3: other.note: expected four hexadecimal digits after \\u, got \
             \"\\u00e\"",
        ),
        (
            "sink group with a sink of another group",
            "a1.channels = c1\n\
             a1.sinks = k1 k2\n\
             a1.sinkgroups = g1 g2\n\
             a1.channels.c1.type = memory\n\
             a1.sinks.k1.type = logger\n\
             a1.sinks.k1.channel = c1\n\
             a1.sinks.k2.type = logger\n\
             a1.sinks.k2.channel = c1\n\
             a1.sinkgroups.g1.sinks = k1 k2\n\
             a1.sinkgroups.g1.processor.type = failover\n\
             a1.sinkgroups.g2.sinks = k2\n\
             a1.sinkgroups.g2.processor.type = default\n",
            "agent.conf:11: a1.sinkgroups.g2.sinks: expected a sink in no other group (k2 is \
             already in g1), got \"k2\"",
        ),
        (
            "failover priorities that collide",
            "a1.channels = c1\n\
             a1.sinks = k1 k2\n\
             a1.sinkgroups = g1\n\
             a1.channels.c1.type = memory\n\
             a1.sinks.k1.type = logger\n\
             a1.sinks.k1.channel = c1\n\
             a1.sinks.k2.type = logger\n\
             a1.sinks.k2.channel = c1\n\
             a1.sinkgroups.g1.sinks = k1 k2\n\
             a1.sinkgroups.g1.processor.type = failover\n\
             a1.sinkgroups.g1.processor.priority.k1 = 5\n\
             a1.sinkgroups.g1.processor.priority.k2 = 5\n",
            "agent.conf:12: a1.sinkgroups.g1.processor.priority.k2: expected a priority no \
             other sink of the group has (k1 has 5), got \"5\"",
        ),
        (
            "default processor with two sinks",
            "a1.channels = c1\n\
             a1.sinks = k1 k2\n\
             a1.sinkgroups = g1\n\
             a1.channels.c1.type = memory\n\
             a1.sinks.k1.type = logger\n\
             a1.sinks.k1.channel = c1\n\
             a1.sinks.k2.type = logger\n\
             a1.sinks.k2.channel = c1\n\
             a1.sinkgroups.g1.sinks = k1 k2\n\
             a1.sinkgroups.g1.processor.type = default\n",
            "agent.conf:9: a1.sinkgroups.g1.sinks: expected exactly one sink for \
             processor.type = default, got 2 (failover and load_balance take several)",
        ),
        (
            "a Java keystore key provider",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.activeKey = key-0\n\
             a1.channels.c1.encryption.keyProvider = JCEKSFILE\n\
             a1.channels.c1.encryption.keyProvider.keys = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.keyFile = /keys/key-0\n",
            "agent.conf:4: a1.channels.c1.encryption.keyProvider: expected KEYFILE (Millrace \
             does not read Java keystores; give each key id its own file with \
             encryption.keyProvider.keys.<id>.keyFile (32 random bytes or 64 hex digits) or \
             encryption.keyProvider.keys.<id>.passwordFile (a password the key is derived \
             from)), got \"JCEKSFILE\"",
        ),
        (
            "a Java keystore file",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.activeKey = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.keyFile = /keys/key-0\n\
             a1.channels.c1.encryption.keyProvider.keyStoreFile = /keys/ks\n",
            "agent.conf:6: a1.channels.c1.encryption.keyProvider.keyStoreFile: expected no Java \
             keystore setting: Millrace does not read Java keystores; give each key id its own \
             file with encryption.keyProvider.keys.<id>.keyFile (32 random bytes or 64 hex \
             digits) or encryption.keyProvider.keys.<id>.passwordFile (a password the key is \
             derived from)",
        ),
        (
            "encryption without an active key",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.keyProvider.keys = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.keyFile = /keys/key-0\n",
            "agent.conf:3: a1.channels.c1.encryption.activeKey: expected the id of the key that \
             encrypts new segments, but the key is missing",
        ),
        (
            "an active key that is not listed",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.activeKey = key-1\n\
             a1.channels.c1.encryption.keyProvider.keys = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.keyFile = /keys/key-0\n",
            "agent.conf:3: a1.channels.c1.encryption.activeKey: expected a key id listed in \
             a1.channels.c1.encryption.keyProvider.keys (key-0), got \"key-1\"",
        ),
        (
            "a listed key without a file",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.activeKey = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys = key-0 key-1\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.keyFile = /keys/key-0\n",
            "agent.conf:4: a1.channels.c1.encryption.keyProvider.keys.key-1.keyFile: expected \
             the file holding key key-1 (32 random bytes or 64 hex digits), or instead \
             a1.channels.c1.encryption.keyProvider.keys.key-1.passwordFile, but the key is \
             missing",
        ),
        (
            "a key with two sources",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.activeKey = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.keyFile = /keys/key-0\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.passwordFile = /keys/pw\n",
            "agent.conf:6: a1.channels.c1.encryption.keyProvider.keys.key-0.passwordFile: \
             expected one source for key key-0, but line 5 already gives one (use either \
             keyFile or passwordFile)",
        ),
        (
            "a key id too long for a segment header",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.activeKey = k\n\
             a1.channels.c1.encryption.keyProvider.keys = k a-key-id-that-is-much-too-long-to-store\n\
             a1.channels.c1.encryption.keyProvider.keys.k.keyFile = /keys/k\n",
            "agent.conf:4: a1.channels.c1.encryption.keyProvider.keys: expected a key id of 1 to \
             32 bytes (it is stored in each segment header), got \
             \"a-key-id-that-is-much-too-long-to-store\"",
        ),
        (
            "an unknown cipher",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.activeKey = key-0\n\
             a1.channels.c1.encryption.cipherProvider = CHACHA20POLY1305\n\
             a1.channels.c1.encryption.keyProvider.keys = key-0\n\
             a1.channels.c1.encryption.keyProvider.keys.key-0.keyFile = /keys/key-0\n",
            "agent.conf:4: a1.channels.c1.encryption.cipherProvider: expected AES256GCM (or \
             Flume's AESCTRNOPADDING, which is mapped to it), got \"CHACHA20POLY1305\"",
        ),
        (
            "an unknown compression",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.compression = snappy\n",
            "agent.conf:3: a1.channels.c1.compression: expected none or lz4, got \"snappy\"",
        ),
        (
            "unknown encryption key",
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.encryption.keyProvider.keyStore = /keys/ks\n",
            "agent.conf:3: a1.channels.c1.encryption.keyProvider.keyStore: unknown key; \
             expected a file channel key (did you mean \
             \"encryption.keyProvider.keyStoreFile\"?)",
        ),
    ];
    for (case, text, expected) in table {
        let errors = errors_of(text);
        assert_eq!(
            errors.messages(),
            vec![expected.to_string()],
            "case: {case}"
        );
    }
}

#[test]
fn a_missing_agent_lists_the_agents_present() {
    let text = "a1.channels = c1\na1.channels.c1.type = memory\nother.channels = x\n";
    let errors = errors_of_agent(text, "a2");
    assert_eq!(
        errors.messages(),
        vec!["agent.conf: agent \"a2\" not found; the file describes: a1, other"]
    );
    let errors = errors_of_agent("# nothing here\n", "a1");
    assert_eq!(
        errors.messages(),
        vec!["agent.conf: agent \"a1\" not found; the file describes no agents"]
    );
}

#[test]
fn every_error_in_a_file_is_reported_in_line_order() {
    let text = "\
a1.channels = c1 c2
a1.sources = r1
a1.channels.c1.type = memory
a1.channels.c1.capacity = -1
a1.channels.c1.keep-alive = 3s
a1.channels.c2.type = fiel
a1.sources.r1.type = netcat
a1.sources.r1.channels = c3
a1.server.maxFrameBytes = 0
a1.server.bind = 127.0.0.1:41450
a1.server.bind = 127.0.0.1:41460
";
    let errors = errors_of(text);
    assert_eq!(
        errors.messages(),
        vec![
            "agent.conf:4: a1.channels.c1.capacity: expected a positive integer, got \"-1\"",
            "agent.conf:5: a1.channels.c1.keep-alive: expected a non-negative whole number of \
             seconds, got \"3s\"",
            "agent.conf:6: a1.channels.c2.type: expected a channel type: memory, file, \
             spillablememory or kafka (or Flume's class name for one of them); Millrace runs no Java \
             classes: use a file, memory, spillablememory or kafka channel (docs/adapters.md, \
             \"What we do not run\"), got \"fiel\"",
            "agent.conf:8: a1.sources.r1.channels: expected a channel listed in a1.channels (c1 \
             c2), got \"c3\"",
            "agent.conf:9: a1.server.maxFrameBytes: expected a positive integer, got \"0\"",
            "agent.conf:11: a1.server.bind: expected each key once, got \"127.0.0.1:41460\" \
             here after \"127.0.0.1:41450\" on line 10 (Flume would silently keep the last)",
        ]
    );
}

#[test]
fn other_agents_keys_are_not_judged() {
    let text = "\
a1.channels = c1
a1.channels.c1.type = memory
a2.channels = c1
a2.channels.c1.type = nonsense
a2.channels.c1.capacity = 1
a2.channels.c1.capacity = 2
a2.whatever = x
";
    let config = parse_agent_config(text, FILE, "a1", Path::new("base")).unwrap();
    assert_eq!(config.channels.len(), 1);
    assert_eq!(config.warnings, vec![]);
}

#[test]
fn warnings_travel_with_the_errors() {
    let text = "\
a1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.maxFileSize = 2146435071
a1.channels.c1.capacity = none
";
    let errors = errors_of(text);
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(errors.warnings.len(), 1);
    assert_eq!(errors.warnings[0].line, 3);
}

#[test]
fn unreadable_and_non_utf8_files_are_named() {
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("missing.conf");
    let errors = load_agent_config(&missing, "a1", Path::new("base")).unwrap_err();
    let message = errors.messages().join("\n");
    assert!(
        message.starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{message}"
    );

    let latin1 = directory.path().join("latin1.conf");
    std::fs::write(
        &latin1,
        b"a1.channels = c1\na1.channels.c1.type = caf\xe9\n",
    )
    .unwrap();
    let errors = load_agent_config(&latin1, "a1", Path::new("base")).unwrap_err();
    assert_eq!(
        errors.messages(),
        vec![format!(
            "{}:2: expected UTF-8 text, got byte 0xE9 at offset 42 (save the file as UTF-8)",
            latin1.display()
        )]
    );
}

#[test]
fn a_key_repeated_with_the_same_value_is_read_once_with_a_warning() {
    let text = "\
a1.channels = c1
a1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
a1.channels.c1.capacity = 1000
";
    let config = parse_agent_config(text, FILE, "a1", Path::new("base")).unwrap();
    assert_eq!(config.channels.len(), 1);
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "agent.conf:2: a1.channels: set again to the same value as on line 1; the \
             repetition changes nothing",
            "agent.conf:5: a1.channels.c1.capacity: set again to the same value as on line 4; \
             the repetition changes nothing",
        ]
    );
}

#[test]
fn a_reading_with_errors_holds_every_component_that_could_be_read() {
    let text = "\
a1.channels = c1 c2 c3
a1.sources = r1 r2
a1.sinks = k1 k2
a1.channels.c1.type = memory
a1.channels.c1.capasity = 10
a1.channels.c2.type = memory
a1.channels.c3.type = memory
a1.channels.c3.capacity = ten
a1.sources.r1.type = netcat
a1.sources.r1.channels = c2 c9
a1.sources.r1.selector.optional = c9
a1.sources.r1.prot = 44444
a1.sources.r2.channels = c2
a1.sinks.k1.type = hdfs
a1.sinks.k1.channel = c9
a1.sinks.k2.type = logger
a1.sinks.k2.channel = c2
";
    let reading = read_agent_config_text(text, FILE, "a1", Path::new("base"));
    let messages: Vec<String> = reading.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "agent.conf:2: a1.sources.r2.type: expected a source type (an alias such as netcat \
             or spooldir, or a class name), but the key is missing",
            "agent.conf:5: a1.channels.c1.capasity: unknown key; expected a memory channel key \
             (did you mean \"capacity\"?)",
            "agent.conf:8: a1.channels.c3.capacity: expected a positive integer, got \"ten\"",
            "agent.conf:10: a1.sources.r1.channels: expected a channel listed in a1.channels (c1 \
             c2 c3), got \"c9\"",
            "agent.conf:15: a1.sinks.k1.channel: expected a channel listed in a1.channels (c1 \
             c2 c3), got \"c9\"",
        ],
        "the selector is not judged against a channel list with a mistake in it"
    );
    let config = &reading.config;
    let channels: Vec<&str> = config
        .channels
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        channels,
        ["c1", "c2"],
        "an unknown key has no effect on c1; c3's capacity could not be read"
    );
    assert_eq!(config.sources.len(), 1, "r2 has no type");
    let r1 = &config.sources[0];
    assert_eq!(r1.channels, ["c2"]);
    assert_eq!(
        r1.selector,
        ChannelSelector::Replicating {
            optional: Vec::new()
        }
    );
    assert_eq!(
        r1.settings.len(),
        1,
        "prot is kept for the adapter to judge"
    );
    let sinks: Vec<(&str, &str)> = config
        .sinks
        .iter()
        .map(|sink| (sink.name.as_str(), sink.channel.as_str()))
        .collect();
    assert_eq!(sinks, [("k1", "c9"), ("k2", "c2")]);
    assert_eq!(config.line_of("a1.sinks.k1.type"), Some(14));
    assert_eq!(config.line_of("a1.sinks.k9.type"), None);
    assert!(reading.clone().into_result().is_err());
}

#[test]
fn an_unknown_channel_key_does_not_hide_the_rules_between_the_others() {
    let text = "\
a1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capasity = 1000
a1.channels.c1.transactionCapacity = 500
";
    assert_eq!(
        errors_of(text).messages(),
        [
            "agent.conf:3: a1.channels.c1.capasity: unknown key; expected a memory channel key \
             (did you mean \"capacity\"?)",
            "agent.conf:4: a1.channels.c1.transactionCapacity: expected at most capacity \
             (100), got 500",
        ]
    );
}

#[test]
fn a_valid_reading_is_the_strict_result() {
    let text = "a1.channels = c1\na1.channels.c1.type = memory\n";
    let reading = read_agent_config_text(text, FILE, "a1", Path::new("base"));
    assert_eq!(reading.errors, vec![]);
    assert_eq!(
        reading.into_result().unwrap(),
        parse_agent_config(text, FILE, "a1", Path::new("base")).unwrap()
    );
}
