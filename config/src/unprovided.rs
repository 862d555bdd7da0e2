//! Flume components Millrace does not provide, and what to run instead.
//!
//! This is the one place the replacements are written down: every refusal of an
//! unknown `type` (channels here; sources, sinks, interceptors, selectors, sink
//! processors and serializers in `millrace-adapters`) appends [`instead_of`] for the
//! value it refused, and docs/adapters.md ("What we do not run") shows the same table
//! (a unit test below keeps the two in step).

/// The kinds of component a Flume `type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentRole {
    /// `AGENT.sources.NAME.type`.
    Source,
    /// `AGENT.sinks.NAME.type`.
    Sink,
    /// `AGENT.channels.NAME.type`.
    Channel,
    /// `AGENT.sources.NAME.interceptors.NAME.type`.
    Interceptor,
    /// `AGENT.sources.NAME.selector.type`.
    ChannelSelector,
    /// `AGENT.sinkgroups.NAME.processor.type`.
    SinkProcessor,
    /// `sink.serializer` of a file sink.
    Serializer,
}

/// One Flume component Millrace does not run.
#[derive(Debug)]
pub struct Unprovided {
    /// What it is.
    pub role: ComponentRole,
    /// Its name for people ("the HDFS sink").
    pub description: &'static str,
    /// The `type` values that name it: Flume's alias and class names, compared
    /// ignoring case.
    pub type_names: &'static [&'static str],
    /// What to run instead.
    pub instead: &'static str,
}

/// Where the table is documented, for messages.
pub const UNPROVIDED_DOC: &str = "docs/adapters.md, \"What we do not run\"";

const INSTEAD_OF_STORE_SINK: &str = "a kafka sink into Kafka Connect's sink connector for the \
     store, or file_roll (or the spooling-directory sink) plus an uploader";

/// The Flume components Millrace does not provide, by name.
pub const UNPROVIDED: &[Unprovided] = &[
    Unprovided {
        role: ComponentRole::Sink,
        description: "the HDFS sink",
        type_names: &["hdfs", "org.apache.flume.sink.hdfs.HDFSEventSink"],
        instead: "a kafka sink into Kafka Connect's HDFS sink connector, or the \
                  spooling-directory sink plus an uploader (hdfs dfs -put of each closed file)",
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the Hive sink",
        type_names: &["hive", "org.apache.flume.sink.hive.HiveSink"],
        instead: "a kafka sink into Kafka Connect's HDFS sink connector with its Hive \
                  integration, or the spooling-directory sink plus LOAD DATA of each closed file",
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the HBase sinks",
        type_names: &[
            "hbase",
            "hbase2",
            "asynchbase",
            "org.apache.flume.sink.hbase.HBaseSink",
            "org.apache.flume.sink.hbase2.HBase2Sink",
            "org.apache.flume.sink.hbase.AsyncHBaseSink",
        ],
        instead: "a kafka sink into Kafka Connect's HBase sink connector",
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the Elasticsearch sink",
        type_names: &[
            "elasticsearch",
            "org.apache.flume.sink.elasticsearch.ElasticSearchSink",
        ],
        instead: "a kafka sink into Kafka Connect's Elasticsearch sink connector",
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the Kite dataset sink",
        type_names: &["org.apache.flume.sink.kite.DatasetSink"],
        instead: INSTEAD_OF_STORE_SINK,
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the MorphlineSolr sink",
        type_names: &[
            "morphline_solr",
            "org.apache.flume.sink.solr.morphline.MorphlineSolrSink",
        ],
        instead: "a kafka sink into a Solr sink connector for Kafka Connect, with the \
                  morphline's field work done by a script interceptor",
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the HTTP sink",
        type_names: &["http", "org.apache.flume.sink.http.HttpSink"],
        instead: "a kafka sink into Kafka Connect's HTTP sink connector, or a client of \
                  channeld (client/) that posts what it takes",
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the IRC sink",
        type_names: &["irc", "org.apache.flume.sink.irc.IRCSink"],
        instead: "a client of channeld (client/) that takes and posts to IRC",
    },
    Unprovided {
        role: ComponentRole::Sink,
        description: "the Thrift sink",
        type_names: &["thrift", "org.apache.flume.sink.ThriftSink"],
        instead: "the avro sink (every Flume agent has an avro source)",
    },
    Unprovided {
        role: ComponentRole::Source,
        description: "the Thrift source",
        type_names: &["thrift", "org.apache.flume.source.ThriftSource"],
        instead: "the avro source (Flume's agents and RPC clients send avro)",
    },
    Unprovided {
        role: ComponentRole::Source,
        description: "the JMS source",
        type_names: &["jms", "org.apache.flume.source.jms.JMSSource"],
        instead: "a JMS source connector of Kafka Connect into Kafka, read by the kafka source",
    },
    Unprovided {
        role: ComponentRole::Source,
        description: "the Scribe source",
        type_names: &["org.apache.flume.source.scribe.ScribeSource"],
        instead: "the avro source, or syslogtcp or netcat for line senders",
    },
    Unprovided {
        role: ComponentRole::Source,
        description: "the Twitter source",
        type_names: &["org.apache.flume.source.twitter.TwitterSource"],
        instead: "an exec source running a client of the API, or a client of channeld \
                  (client/)",
    },
    Unprovided {
        role: ComponentRole::Channel,
        description: "the JDBC channel",
        type_names: &["jdbc", "org.apache.flume.channel.jdbc.JdbcChannel"],
        instead: "a file channel (durable, recovered after kill -9 and power loss)",
    },
    Unprovided {
        role: ComponentRole::Interceptor,
        description: "the morphline interceptor",
        type_names: &["org.apache.flume.sink.solr.morphline.MorphlineInterceptor$Builder"],
        instead: "the script interceptor (type = script)",
    },
    Unprovided {
        role: ComponentRole::Serializer,
        description: "the avro_event serializer",
        type_names: &[
            "avro_event",
            "org.apache.flume.serialization.FlumeEventAvroEventSerializer$Builder",
        ],
        instead: "TEXT, with the headers the reader needs put into the body by a script \
                  interceptor, or the avro sink to an agent that writes avro files",
    },
];

/// What to run instead of a Java class Millrace does not know, per role.
pub fn instead_of_custom_class(role: ComponentRole) -> &'static str {
    match role {
        ComponentRole::Source => {
            "a client of channeld (client/) that puts events, or an exec source running the \
             producer"
        }
        ComponentRole::Sink => {
            "a client of channeld (client/) that takes events, or a kafka sink into a Kafka \
             Connect sink connector"
        }
        ComponentRole::Channel => "a file, memory, spillablememory or kafka channel",
        ComponentRole::Interceptor => "the script interceptor (type = script)",
        ComponentRole::ChannelSelector => {
            "the multiplexing selector on a header set by a script interceptor"
        }
        ComponentRole::SinkProcessor => "the failover or load_balance sink processor",
        ComponentRole::Serializer => {
            "TEXT, with the body shaped by a script interceptor before it is stored"
        }
    }
}

/// The row of [`UNPROVIDED`] that `type_name` names for `role`, if any.
pub fn unprovided(role: ComponentRole, type_name: &str) -> Option<&'static Unprovided> {
    UNPROVIDED.iter().find(|row| {
        row.role == role
            && row
                .type_names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(type_name))
    })
}

/// The sentence a refusal of `type_name` as a `role` ends with: what Millrace does not
/// run and what to run instead, pointing at the table.
pub fn instead_of(role: ComponentRole, type_name: &str) -> String {
    match unprovided(role, type_name) {
        Some(row) => format!(
            "Millrace does not provide {}: use {} ({UNPROVIDED_DOC})",
            row.description, row.instead
        ),
        None => format!(
            "Millrace runs no Java classes: use {} ({UNPROVIDED_DOC})",
            instead_of_custom_class(role)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flume_name_is_found_ignoring_case() {
        for row in UNPROVIDED {
            for name in row.type_names {
                let found = unprovided(row.role, &name.to_ascii_uppercase())
                    .expect("every listed name is found");
                assert_eq!(found.description, row.description);
            }
        }
    }

    #[test]
    fn a_name_is_only_found_for_its_own_role() {
        assert_eq!(
            unprovided(ComponentRole::Sink, "hdfs").map(|row| row.description),
            Some("the HDFS sink")
        );
        assert!(unprovided(ComponentRole::Source, "hdfs").is_none());
        assert_eq!(
            unprovided(ComponentRole::Source, "thrift").map(|row| row.description),
            Some("the Thrift source")
        );
    }

    #[test]
    fn an_unknown_class_gets_the_replacement_for_its_role() {
        let message = instead_of(
            ComponentRole::Interceptor,
            "com.example.MyInterceptor$Builder",
        );
        assert!(message.contains("runs no Java classes"), "{message}");
        assert!(message.contains("script interceptor"), "{message}");
        assert!(message.contains(UNPROVIDED_DOC), "{message}");
    }

    /// docs/adapters.md shows the table: each row's first type name and its replacement
    /// appear there, so the documentation and the messages say the same.
    #[test]
    fn the_documented_table_has_every_row_and_its_replacement() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/adapters.md");
        let doc = std::fs::read_to_string(path).expect("docs/adapters.md is readable");
        let section = doc
            .split("## What we do not run")
            .nth(1)
            .expect("docs/adapters.md has a section \"What we do not run\"");
        let section = section.split("\n## ").next().unwrap_or(section);
        let flat = section.split_whitespace().collect::<Vec<_>>().join(" ");
        for row in UNPROVIDED {
            let name = format!("`{}`", row.type_names[0]);
            assert!(flat.contains(&name), "the table lacks {name}");
            let instead = row.instead.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(&instead),
                "the table lacks the replacement for {name}: {instead}"
            );
        }
        for role in [
            ComponentRole::Source,
            ComponentRole::Sink,
            ComponentRole::Channel,
            ComponentRole::Interceptor,
            ComponentRole::ChannelSelector,
            ComponentRole::SinkProcessor,
            ComponentRole::Serializer,
        ] {
            let instead = instead_of_custom_class(role)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                flat.contains(&instead),
                "the table lacks the replacement for custom {role:?} classes: {instead}"
            );
        }
    }
}
